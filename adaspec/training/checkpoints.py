"""Crash-safe checkpoints: commit markers for Trainer checkpoints, atomic final saves, resume."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from adaspec.config import ConfigBase, save_config

COMMIT_MARKER = "CHECKPOINT_COMPLETE"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class CheckpointCommitMixin:
    """Writes a marker into each Trainer checkpoint once everything in it has been saved.

    When the trainer has a ``resolved_config`` attribute, that config is saved in the checkpoint
    too (before the marker).

    A checkpoint without the marker was cut short (a crash, a pre-empted job) and is never resumed
    from: :func:`latest_complete_checkpoint` skips it.
    """

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)  # type: ignore[misc]
        if self.args.should_save:  # type: ignore[attr-defined]
            folder = (
                Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            )  # type: ignore[attr-defined]
            if folder.is_dir():
                config = getattr(self, "resolved_config", None)
                if config is not None:
                    save_config(config, folder)
                (folder / COMMIT_MARKER).write_text(str(self.state.global_step))  # type: ignore[attr-defined]


def latest_complete_checkpoint(directory: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder under ``directory`` that carries the commit marker."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = []
    for child in directory.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and child.is_dir() and (child / COMMIT_MARKER).exists():
            found.append((int(match.group(1)), child))
    return str(max(found)[1]) if found else None


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
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    if config is not None:
        save_config(config, tmp)
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old)
    else:
        os.replace(tmp, directory)
    return directory


def is_complete_model_dir(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a finished model save (config and weights)."""
    directory = Path(directory)
    return (directory / "config.json").exists() and any(directory.glob("*.safetensors"))
