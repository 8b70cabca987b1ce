"""Crash-safe checkpoints: commit markers for Trainer checkpoints, atomic final saves, resume.

A Trainer checkpoint is *committed* once :data:`COMMIT_MARKER` is written into it, after every
other file. Only committed checkpoints are resumed from, and older checkpoints are rotated away
only after the new one is committed, so a kill at any moment leaves at least one committed
checkpoint (once the first one exists).

Resuming loads the weights with the model's own checkpoint key mapping (transformers 5 saves
GPT-NeoX's ``lm_head`` as ``embed_out``) and refuses a checkpoint with missing or unexpected keys,
where ``Trainer._load_from_checkpoint`` would load with ``strict=False`` and silently keep the
initial weights of whatever it did not recognise.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from adaspec._base.atomic import atomic_folder, write_text_atomic
from adaspec.config import ConfigBase, save_config

logger = logging.getLogger(__name__)

COMMIT_MARKER = "CHECKPOINT_COMPLETE"
STATS_FILE = "adaspec_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class CheckpointCommitMixin:
    """Commits each Trainer checkpoint with a marker, rotates only committed ones, resumes strictly.

    When the trainer has a ``resolved_config`` attribute, that config is saved in the checkpoint
    too (before the marker); so is the tokenizer's fingerprint and the running count of
    gradient-carrying tokens (restored on resume).

    A checkpoint without the marker was cut short (a crash, a pre-empted job) and is never resumed
    from: :func:`latest_complete_checkpoint` skips it.
    """

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        args = self.args  # type: ignore[attr-defined]
        limit = args.save_total_limit
        args.save_total_limit = None  # rotate below, once the new checkpoint is committed
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        finally:
            args.save_total_limit = limit
        if not args.should_save:
            return
        run_dir = Path(self._get_output_dir(trial=trial))  # type: ignore[attr-defined]
        folder = run_dir / f"checkpoint-{self.state.global_step}"  # type: ignore[attr-defined]
        if not folder.is_dir():
            return
        config = getattr(self, "resolved_config", None)
        if config is not None:
            save_config(config, folder)
        tokenizer = getattr(self, "processing_class", None)
        if tokenizer is not None:
            from adaspec.tokenizer_io import write_fingerprint

            write_fingerprint(tokenizer, folder)
        stats = {"gradient_tokens": getattr(self, "_gradient_tokens", None)}
        write_text_atomic(folder / STATS_FILE, json.dumps(stats))
        write_text_atomic(folder / COMMIT_MARKER, str(self.state.global_step))  # type: ignore[attr-defined]
        if limit is not None:
            rotate_committed_checkpoints(run_dir, limit)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        if getattr(self, "is_fsdp_enabled", False) or not _weight_files(resume_from_checkpoint):
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]
        else:
            load_checkpoint_weights(
                model if model is not None else self.model, resume_from_checkpoint
            )  # type: ignore[attr-defined]
        stats_file = Path(resume_from_checkpoint) / STATS_FILE
        if stats_file.exists() and hasattr(self, "_record_stats"):
            tokens = json.loads(stats_file.read_text()).get("gradient_tokens")
            if tokens is not None:
                self._gradient_tokens = float(tokens)


def _checkpoints(directory: Path) -> list[tuple[int, Path]]:
    found = []
    if directory.is_dir():
        for child in directory.iterdir():
            match = _CHECKPOINT_RE.match(child.name)
            if match and child.is_dir():
                found.append((int(match.group(1)), child))
    return sorted(found)


def latest_complete_checkpoint(directory: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder under ``directory`` that carries the commit marker."""
    found = [c for c in _checkpoints(Path(directory)) if (c[1] / COMMIT_MARKER).exists()]
    return str(found[-1][1]) if found else None


def rotate_committed_checkpoints(directory: str | os.PathLike, limit: int) -> list[Path]:
    """Delete all but the newest ``limit`` committed checkpoints, and unfinished older ones.

    A checkpoint without the marker is deleted only when a newer committed one exists, so the
    checkpoint being written (and the last committed one) are never touched.

    Returns:
        The deleted folders.
    """
    every = _checkpoints(Path(directory))
    committed = [c for c in every if (c[1] / COMMIT_MARKER).exists()]
    if not committed:
        return []
    keep = {path for _, path in committed[-max(limit, 1) :]}
    newest = committed[-1][0]
    deleted = []
    for step, path in every:
        if path in keep or step > newest:
            continue
        (path / COMMIT_MARKER).unlink(missing_ok=True)  # uncommit first: a kill mid-delete is safe
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
    return deleted


def checkpoint_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The ``trainer_state.json`` of a Trainer checkpoint (empty when absent)."""
    path = Path(checkpoint) / "trainer_state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _weight_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    single = folder / "model.safetensors"
    if single.exists():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / name for name in shards]
    return []


def load_checkpoint_weights(model: Any, folder: str | os.PathLike) -> None:
    """Load a ``save_pretrained`` safetensors checkpoint into ``model`` in place, strictly.

    Checkpoint keys are renamed with the model's own conversion mapping (the one
    ``from_pretrained`` applies, e.g. GPT-NeoX's ``embed_out`` -> ``lm_head``); weights tied to
    a loaded weight may be absent.

    Raises:
        FileNotFoundError: If ``folder`` holds no safetensors weights.
        ValueError: Naming the missing and unexpected keys, or a key needing a weight converter.
    """
    import safetensors.torch
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    files = _weight_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder} holds no model.safetensors: not a resumable checkpoint")
    mapping = get_model_conversion_mapping(model)
    renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
    converters = [m for m in mapping if isinstance(m, WeightConverter)]
    expected = model.state_dict()
    state: dict[str, Any] = {}
    for file in files:
        for key, tensor in safetensors.torch.load_file(str(file), device="cpu").items():
            name, pattern = rename_source_key(
                key, renamings, converters, model.base_model_prefix, expected
            )
            if pattern is not None:
                raise ValueError(
                    f"{file}: key {key!r} needs the weight converter {pattern!r}, which resuming "
                    "does not support: restart the stage without resuming (--no-resume)"
                )
            state[name if name in expected or key not in expected else key] = tensor
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    missing = sorted(set(expected) - set(state) - tied)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {folder} does not match the {type(model).__name__} being trained: "
            f"missing keys {missing}, unexpected keys {unexpected}; it was written by another "
            "model: point output_dir elsewhere, or delete that checkpoint folder to retrain"
        )
    model.load_state_dict(state, strict=False)


def save_final(
    model: Any,
    directory: str | os.PathLike,
    tokenizer: Any = None,
    config: ConfigBase | None = None,
) -> Path:
    """Save ``model`` (and tokenizer, resolved config) to ``directory`` atomically.

    Everything is written to a sibling temporary folder first, then renamed into place, so a
    reader never sees a half-written model.
    """
    with atomic_folder(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            from adaspec.tokenizer_io import write_fingerprint

            tokenizer.save_pretrained(tmp)
            write_fingerprint(tokenizer, tmp)
        if config is not None:
            save_config(config, tmp)
    return Path(directory)


def is_complete_model_dir(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a finished model save (config and weights)."""
    directory = Path(directory)
    return (directory / "config.json").exists() and any(directory.glob("*.safetensors"))
