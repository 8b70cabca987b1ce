"""What keeps a rerun from corrupting an output folder: config drift checks and a folder lock.

**Config drift.** Every stage folder and Trainer checkpoint holds the resolved config it was
trained with (``adaspec_config.yaml``). Before a run skips a finished stage or resumes an
interrupted one, :func:`find_drift` compares the settings that decide the stage's result with the
current config. Settings that do not change the result never block:

* ``output_dir``, ``teacher_cache`` and ``teacher_cache_kind`` (exact either way), the whole
  ``evaluation`` section, and the ``sweep`` section's seeds, recipes and baseline;
* in every ``optim`` section: ``logging_steps``, ``save_steps``, ``save_total_limit``,
  ``report_to``, ``disable_tqdm``, ``dataloader_num_workers`` and ``gradient_checkpointing``;
* the held-out data: ``data.eval_source``, ``data.eval_split``, ``data.max_eval_examples`` and
  ``data.num_synthetic_eval``;
* for the reference, ``reference.loss.k`` (forced to 1); for a draft, ``draft.budget.modes`` and
  ``draft.budget.compute_matched_baseline`` (which drafts exist, not how one is trained), and
  ``draft.budget.token_scaling`` except for the ``equal_tokens`` drafts.

Everything else counts, including the settings of the stages a stage is built on (a draft depends
on the target, the shared initialisation and the reference).

**Lock.** :class:`OutputLock` holds an exclusive ``flock`` on ``output_dir/.adaspec.lock`` for the
life of a run, so a second run on the same folder stops at once. The kernel drops the lock when
its holder dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from adaspec.config import ConfigError

logger = logging.getLogger(__name__)

LOCK_FILE = ".adaspec.lock"
CONFIG_FILE = "adaspec_config.yaml"
NEUTRAL_OPTIM = (
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "report_to",
    "disable_tqdm",
    "dataloader_num_workers",
    "gradient_checkpointing",
)
NEUTRAL_DATA = ("eval_source", "eval_split", "max_eval_examples", "num_synthetic_eval")
_MISSING = "<absent>"


def _optim(section: dict | None) -> dict | None:
    if section is None:
        return None
    return {k: v for k, v in section.items() if k not in NEUTRAL_OPTIM}


def stage_settings(config: Any, stage: str) -> dict[str, Any]:
    """The settings that decide the result of ``stage``, as a flat ``{dotted.key: value}`` dict.

    Args:
        config: A :class:`adaspec.pipeline_config.PipelineConfig`.
        stage: ``target``, ``draft_init``, ``reference`` or a draft run name
            (``adaspec-equal_steps``, ``distillspec-equal_tokens``, ...).
    """
    d = config.to_dict()
    base = {
        "seed": d["seed"],
        "tokenizer": d["tokenizer"],
        "data": {k: v for k, v in d["data"].items() if k not in NEUTRAL_DATA},
    }
    target = dict(d["target"], optim=_optim(d["target"]["optim"]) if d["target"]["train"] else None)
    init = {
        "draft_model": d["draft_model"],
        "draft_pretrain": _optim(d["draft_pretrain"]),
        "draft_init": d.get("draft_init"),
    }
    reference = {
        "optim": _optim(d["reference"]["optim"]),
        "loss": {k: v for k, v in d["reference"]["loss"].items() if k != "k"},
    }
    sections: dict[str, Any] = dict(base)
    if stage == "target":
        sections["target"] = target
    elif stage == "draft_init":
        sections.update(init)
    else:
        sections.update(init, target=target, reference=reference)
        if stage != "reference":
            draft: dict[str, Any] = {
                "loss": d["draft"]["loss"],
                "optim": _optim(d["draft"]["optim"]),
            }
            if stage.endswith("equal_tokens"):
                draft["budget"] = {"token_scaling": d["draft"]["budget"]["token_scaling"]}
            if stage.startswith("sweep-"):  # a recipe's loss is built from these too
                sweep = d["sweep"]
                draft["sweep"] = {k: sweep[k] for k in ("late_phase_fraction", "k_linear_fraction")}
            sections["draft"] = draft
    flat: dict[str, Any] = {}
    _flatten("", sections, flat)
    return flat


def tokenizer_settings(config: Any) -> dict[str, Any]:
    """The settings that decide which tokenizer a run builds (see ``prepare_tokenizer``)."""
    d = config.to_dict()
    flat: dict[str, Any] = {}
    sections: dict[str, Any] = {"tokenizer": d["tokenizer"]}
    if d["tokenizer"]["name_or_path"] is None:
        sections["target.model.name_or_path"] = d["target"]["model"]["name_or_path"]
        if sections["target.model.name_or_path"] is None:  # a BPE trained on the training texts
            sections["data"] = {k: v for k, v in d["data"].items() if k not in NEUTRAL_DATA}
    _flatten("", sections, flat)
    return flat


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, item, out)
    else:
        out[prefix] = value


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for every key whose value differs between two settings dicts."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if a != b:
            lines.append(f"{key}: {a!r} -> {b!r}")
    return lines


def saved_config(folder: str | os.PathLike) -> Any | None:
    """The :class:`PipelineConfig` saved in a model or checkpoint folder (``None`` if absent)."""
    from adaspec.pipeline_config import PipelineConfig

    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        config = PipelineConfig.from_dict(raw)
    except (ConfigError, yaml.YAMLError) as err:
        raise ConfigError(
            f"{path} cannot be read by this version ({err}): use a new output_dir, or rerun with "
            "--no-resume to retrain every stage"
        ) from err
    return config


def find_drift(config: Any, stage: str, folder: str | os.PathLike) -> list[str]:
    """Changed settings of ``stage`` between the config saved in ``folder`` and ``config``."""
    old = saved_config(folder)
    if old is None:
        logger.warning("%s holds no %s: cannot check its settings", folder, CONFIG_FILE)
        return []
    return changed_settings(stage_settings(old, stage), stage_settings(config, stage))


def drifted_stages(
    config: Any, output_dir: str | os.PathLike, stages: list[str]
) -> dict[str, tuple[str, list[str]]]:
    """The trained ``stages`` under ``output_dir`` whose settings differ from ``config``.

    A stage is compared through its final model folder when that is complete, else through its
    newest committed checkpoint; stages with neither are not trained yet.

    Returns:
        Stage name -> (the folder compared, its changed settings), for the stages that changed.
    """
    from adaspec.training.checkpoints import is_complete_model_dir, latest_complete_checkpoint

    drift = {}
    for name in stages:
        folder = Path(output_dir) / name
        saved: str | None = str(folder)
        if not is_complete_model_dir(folder):
            saved = latest_complete_checkpoint(folder.with_name(name + "-checkpoints"))
        if saved is None:
            continue
        changes = find_drift(config, name, saved)
        if changes:
            drift[name] = (saved, changes)
    return drift


def drift_error(output_dir: str | os.PathLike, drift: dict[str, tuple[str, list[str]]]) -> str:
    """The message refusing a rerun whose config changed settings of trained stages."""
    lines = [f"{output_dir} holds stages trained with other settings than this config:"]
    for stage, (where, changes) in drift.items():
        lines.append(f"  {stage} ({where}):")
        lines.extend(f"    {change}" for change in changes)
    lines.append(
        "Skipping or resuming them would mix settings. Use a new output_dir, or rerun with "
        "--retrain-changed to retrain these stages from scratch (--no-resume retrains every stage)."
    )
    return "\n".join(lines)


class OutputDirInUse(RuntimeError):
    """Another live process holds the output folder's lock."""


class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``folder/.adaspec.lock`` (released on close or death).

    Args:
        folder: The output folder (created if needed).

    Raises:
        OutputDirInUse: Naming the folder and the holder's pid, when another run holds it.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise OutputDirInUse(
                f"output_dir {self.folder} is in use by another adaspec run (pid {holder}): wait "
                "for it to finish, or give this run another output_dir"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
