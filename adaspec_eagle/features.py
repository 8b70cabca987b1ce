"""Target features for head training: captured online, or dumped to disk and read back.

* Online: :func:`capture_features` runs the frozen target inside the training step (no grad) with
  ``output_hidden_states=True`` plus a forward pre-hook on the lm_head (its input is the feature
  EAGLE-1 regresses and the logits are computed from). No modeling file is touched.
* Offline: :func:`dump_features` writes sharded safetensors (``shard-00000.safetensors``, ...)
  and ``index.json``; it prints the disk it needs before starting (tokens x stored layers x H x
  dtype bytes), and a rerun skips every shard the index lists as finished.
  :class:`OfflineFeatures` reads them back as a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from adaspec_eagle.masks import collate

INDEX_NAME = "index.json"
FORMAT = "adaspec_eagle.features/1"


@dataclass
class TargetFeatures:
    """What a head trains on for one batch.

    Attributes:
        input_ids: Tokens [B, T].
        attention_mask: Padding mask [B, T].
        loss_mask: 1 on response tokens [B, T].
        hidden: lm_head input of the target [B, T, H].
        aux: Concatenated target layers for EAGLE-3 [B, T, kH], or None.
        logits: Target logits [B, T, V] (``lm_head(hidden)``), or None when not computed.

    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    hidden: torch.Tensor
    aux: torch.Tensor | None
    logits: torch.Tensor | None


@torch.no_grad()
def capture_features(
    target: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    loss_mask: torch.Tensor | None = None,
    aux_layers: Sequence[int] | None = None,
) -> TargetFeatures:
    """Run the frozen target once and collect what the heads need.

    Args:
        target: The target causal LM.
        input_ids: Tokens [B, T].
        attention_mask: Padding mask [B, T] (1 = token).
        loss_mask: Response mask [B, T]; all ones when None.
        aux_layers: Indices into ``output_hidden_states`` to concatenate (EAGLE-3), or None.

    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    store: dict[str, torch.Tensor] = {}
    lm_head = target.get_output_embeddings()
    hook = lm_head.register_forward_pre_hook(lambda _m, args: store.__setitem__("h", args[0]))
    try:
        out = target(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=aux_layers is not None,
            use_cache=False,
        )
    finally:
        hook.remove()
    aux = None
    if aux_layers is not None:
        aux = torch.cat([out.hidden_states[i] for i in aux_layers], dim=-1)
    return TargetFeatures(
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=loss_mask if loss_mask is not None else torch.ones_like(input_ids),
        hidden=store["h"],
        aux=aux,
        logits=out.logits,
    )


@torch.no_grad()
def features_from_batch(
    target: nn.Module,
    batch: dict[str, torch.Tensor],
    aux_layers: Sequence[int] | None,
    with_logits: bool = True,
) -> TargetFeatures:
    """Online or offline features: dumped ``hidden``/``aux`` when present, else run the target.

    Offline logits are recomputed as ``lm_head(hidden)`` (EAGLE does the same), so dumps never
    store V-wide tensors; ``with_logits=False`` skips that (``logits`` is None) for a loss that
    takes them at a few rows itself (:mod:`adaspec_eagle.rows`).
    """
    if "hidden" not in batch:
        return capture_features(
            target, batch["input_ids"], batch["attention_mask"], batch["loss_mask"], aux_layers
        )
    lm_head = target.get_output_embeddings()
    hidden = batch["hidden"].to(lm_head.weight.dtype)
    aux = batch.get("aux")
    if aux_layers is not None and aux is None:
        raise ValueError("the dumped features have no 'aux' layers: dump with the EAGLE-3 layers")
    return TargetFeatures(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        loss_mask=batch["loss_mask"],
        hidden=hidden,
        aux=aux,
        logits=lm_head(hidden) if with_logits else None,
    )


def disk_bytes(num_tokens: int, num_layers: int, hidden_size: int, dtype: torch.dtype) -> int:
    """Disk a dump needs: tokens x stored layers x H x dtype bytes (+ 16 bytes/token of ids)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return num_tokens * (num_layers * hidden_size * itemsize + 16)


def _fingerprint(meta: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


@torch.no_grad()
def dump_features(
    target: nn.Module,
    examples: Sequence[dict[str, list[int]]],
    out_dir: str | os.PathLike,
    aux_layers: Sequence[int] | None = None,
    shard_size: int = 256,
    batch_size: int = 8,
    dtype: torch.dtype = torch.bfloat16,
    log: Callable[[str], None] = print,
) -> Path:
    """Dump target features of tokenized examples to sharded safetensors, resumably.

    Args:
        target: The frozen target.
        examples: Dicts with ``input_ids``, ``attention_mask``, ``loss_mask`` lists
            (:func:`adaspec_eagle.masks.tokenize_for_heads`).
        out_dir: Output folder (``index.json`` + ``shard-*.safetensors``).
        aux_layers: EAGLE-3 layer indices to store besides the lm_head input, or None.
        shard_size: Examples per shard.
        batch_size: Examples per target forward.
        dtype: Storage dtype of the features.
        log: Where progress and the disk estimate go.

    Returns:
        Path of ``index.json``.

    Raises:
        ValueError: If ``out_dir`` holds a dump made with different settings or data.

    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hidden_size = target.get_output_embeddings().weight.shape[1]
    n_layers = 1 + len(aux_layers or [])
    meta = {
        "num_examples": len(examples),
        "shard_size": shard_size,
        "aux_layers": list(aux_layers) if aux_layers is not None else None,
        "dtype": str(dtype).replace("torch.", ""),
        "hidden_size": int(hidden_size),
        "data": _fingerprint({"ids": [e["input_ids"] for e in examples]}),
    }
    index_path = out / INDEX_NAME
    index = {"format": FORMAT, **meta, "fingerprint": _fingerprint(meta), "shards": {}}
    if index_path.exists():
        old = json.loads(index_path.read_text())
        if old.get("fingerprint") != index["fingerprint"]:
            raise ValueError(
                f"{out} holds a feature dump made with other settings or data "
                f"({ {k: old.get(k) for k in meta} }); use a new folder or delete it"
            )
        index["shards"] = old.get("shards", {})
    total = sum(len(e["input_ids"]) for e in examples)
    need = disk_bytes(total, n_layers, hidden_size, dtype)
    log(
        f"feature dump: {len(examples)} examples, {total} tokens x {n_layers} layers x "
        f"H={hidden_size} x {index['dtype']} -> about {need / 2**30:.3f} GiB in {out}"
    )
    n_shards = (len(examples) + shard_size - 1) // shard_size
    for s in range(n_shards):
        name = f"shard-{s:05d}.safetensors"
        if name in index["shards"] and (out / name).is_file():
            log(f"  {name}: already done, skipped")
            continue
        lo, hi = s * shard_size, min(len(examples), (s + 1) * shard_size)
        tensors: dict[str, torch.Tensor] = {}
        tokens = 0
        for b in range(lo, hi, batch_size):
            chunk = examples[b : min(hi, b + batch_size)]
            batch = collate(chunk)
            device = target.get_output_embeddings().weight.device
            feats = capture_features(
                target,
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["loss_mask"].to(device),
                aux_layers,
            )
            for j, ex in enumerate(chunk):
                n = len(ex["input_ids"])
                i = b + j
                tokens += n
                tensors[f"{i}.input_ids"] = batch["input_ids"][j, :n].clone()
                tensors[f"{i}.loss_mask"] = batch["loss_mask"][j, :n].clone()
                tensors[f"{i}.hidden"] = feats.hidden[j, :n].to(dtype).cpu().contiguous()
                if feats.aux is not None:
                    tensors[f"{i}.aux"] = feats.aux[j, :n].to(dtype).cpu().contiguous()
        tmp = out / (name + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        os.replace(tmp, out / name)
        index["shards"][name] = {"start": lo, "end": hi, "num_tokens": tokens}
        _write_json(index_path, index)
        log(f"  {name}: examples {lo}..{hi - 1}, {tokens} tokens")
    index["complete"] = len(index["shards"]) == n_shards
    _write_json(index_path, index)
    return index_path


class OfflineFeatures(torch.utils.data.Dataset):
    """Dumped features as a dataset.

    Items are dicts of ``input_ids``, ``attention_mask``, ``loss_mask``, ``hidden`` and ``aux``
    tensors; batch them with :func:`adaspec_eagle.masks.collate`.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)
        index_path = self.dir / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path} not found: run dump_features first")
        self.index = json.loads(index_path.read_text())
        if not self.index.get("complete"):
            raise ValueError(f"{self.dir}: the dump is unfinished; rerun dump_features to resume")
        self._where: list[str] = [""] * self.index["num_examples"]
        for name, info in self.index["shards"].items():
            for i in range(info["start"], info["end"]):
                self._where[i] = name
        self._handles: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        name = self._where[i]
        if name not in self._handles:
            self._handles[name] = safe_open(str(self.dir / name), framework="pt")
        f = self._handles[name]
        item = {key: f.get_tensor(f"{i}.{key}") for key in ("input_ids", "loss_mask", "hidden")}
        if f"{i}.aux" in f.keys():
            item["aux"] = f.get_tensor(f"{i}.aux")
        item["attention_mask"] = torch.ones_like(item["input_ids"])
        return item
