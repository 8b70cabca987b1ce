"""Native head checkpoints: ``config.json`` (head settings + target config) + ``model.safetensors``.

The target's embeddings and lm_head are never saved with a head; reattach them after loading
(``head.attach(target)``). For serving engines use :mod:`adaspec_eagle.export` instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig

from adaspec._base.atomic import write_text_atomic
from adaspec_eagle.heads import Eagle1Head, Eagle3Head, build_head

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def target_config_from_dict(data: dict[str, Any]) -> Any:
    """Rebuild a transformers config from its ``to_dict()``."""
    data = dict(data)
    model_type = data.pop("model_type")
    return AutoConfig.for_model(model_type, **data)


def save_head(
    head: Eagle1Head | Eagle3Head,
    directory: str | os.PathLike,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (atomically) and return the directory.

    Args:
        head: The head (its settings and, unless ``state_dict`` is given, its weights).
        directory: Output folder.
        state_dict: Weights to write instead of ``head.state_dict()`` (e.g. a DeepSpeed
            consolidated state dict); a ``head.`` prefix is stripped.

    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = {"adaspec_eagle": head.head_config(), "target_config": head.config.to_dict()}
    if state_dict is None:
        state_dict = head.state_dict()
    state = {k.removeprefix("head."): v.detach().contiguous().cpu() for k, v in state_dict.items()}
    tmp = directory / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "kind": head.kind})
    os.replace(tmp, directory / WEIGHTS_NAME)
    write_text_atomic(directory / CONFIG_NAME, json.dumps(cfg, indent=2, default=str))
    return directory


def load_head(
    directory: str | os.PathLike,
    target: torch.nn.Module | None = None,
    attn_implementation: str | None = None,
) -> Eagle1Head | Eagle3Head:
    """Load a head saved by :func:`save_head`; attach ``target`` when given.

    Raises:
        FileNotFoundError: If the directory lacks ``config.json`` or ``model.safetensors``.
        ValueError: If ``config.json`` is not a native head config (an exported layout).
        OSError: If ``model.safetensors`` is truncated or corrupt.

    """
    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} not found: not an adaspec_eagle head")
    cfg = json.loads((directory / CONFIG_NAME).read_text())
    if "adaspec_eagle" not in cfg:
        raise ValueError(
            f"{directory / CONFIG_NAME} is not an adaspec_eagle head config (no 'adaspec_eagle' "
            "key); for exported SGLang/vLLM or EAGLE layouts use adaspec_eagle.export.load_*"
        )
    if "target_config" not in cfg:
        raise ValueError(
            f"{directory} is an exported serving layout ({cfg.get('architectures')}), not a native "
            "adaspec_eagle head checkpoint: load it with adaspec_eagle.export.load_export"
        )
    head_cfg = dict(cfg["adaspec_eagle"])
    kind = head_cfg.pop("kind")
    tcfg = target_config_from_dict(cfg["target_config"])
    try:
        state = load_file(str(directory / WEIGHTS_NAME))
    except Exception as err:
        if type(err).__name__ != "SafetensorError":
            raise
        raise OSError(
            f"{directory / WEIGHTS_NAME}: the safetensors weights are truncated or corrupt "
            f"({err}); the save was probably interrupted: save the head again"
        ) from err
    if kind == "eagle3" and "attention_bias" not in head_cfg:  # written before the setting
        head_cfg["attention_bias"] = any(
            k.startswith(("midlayer.self_attn.", "midlayer.attention.")) and k.endswith(".bias")
            for k in state
        )
    head = build_head(tcfg, kind, attn_implementation=attn_implementation, **head_cfg)
    head.load_state_dict(state, strict=True)
    if target is not None:
        head.attach(target)
    return head
