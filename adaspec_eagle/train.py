"""Train EAGLE heads: a reference head with EAGLE's loss, then a head with AdaSPEC's filtered loss.

``run_train(config)`` trains (1) the reference head with the plain EAGLE loss, (2) the AdaSPEC
head with the same budget, its token loss filtered by ΔL against the reference head (``k``).
Each run writes Trainer checkpoints (resumable: a rerun continues from the last one), a final
``config.json`` + ``model.safetensors`` + ``train_metrics.json`` in ``<output_dir>/<run>/final``
(written beside and renamed into place; a rerun with the same settings reuses it) and the resolved
config in ``<output_dir>/adaspec_config.yaml``. ``dump_features(config)`` writes the offline features.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_utils import get_last_checkpoint

from adaspec._base.atomic import replace_folder
from adaspec.config import (
    ConfigBase,
    ConfigError,
    cfg_field,
    check_choice,
    check_range,
    save_config,
)
from adaspec.data.config import DataConfig
from adaspec.losses import SelectiveLossSettings
from adaspec.training.config import OptimConfig
from adaspec.training.stages import training_arguments
from adaspec_eagle.checkpoint import load_head
from adaspec_eagle.heads import Eagle3Head, build_head, draft_vocab_from_counts
from adaspec_eagle.masks import CHAT_MODES, collate
from adaspec_eagle.trainer import EagleTrainer, HeadTrainingModule, LossSettings

logger = logging.getLogger(__name__)

# The last file of a finished head's folder: its training metrics (a rerun skips that run).
METRICS_FILE = "train_metrics.json"
RUNS = ("reference", "adaspec")
# Keys of the flat config before optim: and loss: were nested, and where they live now.
MOVED_KEYS = {
    "epochs": "optim.epochs",
    "max_steps": "optim.max_steps",
    "batch_size": "optim.per_device_batch_size",
    "grad_accum": "optim.gradient_accumulation_steps",
    "lr": "optim.learning_rate",
    "warmup_ratio": "optim.warmup_ratio",
    "max_grad_norm": "optim.max_grad_norm",
    "seed": "optim.seed",
    "logging_steps": "optim.logging_steps",
    "save_steps": "optim.save_steps",
    "save_total_limit": "optim.save_total_limit",
    "deepspeed": "optim.deepspeed",
    "report_to": "optim.report_to",
    "k": "loss.k",
    "divergence": "loss.divergence",
    "scope": "loss.scope",
}


@dataclasses.dataclass
class EagleOptimConfig(OptimConfig):
    """:class:`~adaspec.training.config.OptimConfig` (same keys) with EAGLE's defaults."""

    epochs: float = cfg_field(1.0, help="passes over the data per head")
    learning_rate: float = cfg_field(3e-5, help="peak learning rate (EAGLE: 3e-5)")
    lr_scheduler_type: str = cfg_field("linear", help="transformers scheduler name")
    weight_decay: float = cfg_field(0.0, help="AdamW weight decay")
    per_device_batch_size: int = cfg_field(8, help="sequences per device per micro-batch")
    max_grad_norm: float = cfg_field(0.5, help="gradient clipping norm (EAGLE: 0.5)")


@dataclasses.dataclass
class EagleTrainConfig(ConfigBase):
    """Everything :func:`run_train` and :func:`dump_features` need."""

    target: str = cfg_field("", help="target checkpoint (hub id or folder), frozen")
    tokenizer: str | None = cfg_field(None, help="tokenizer path; the target's when null")
    data: DataConfig = cfg_field(DataConfig, help="training data (adaspec.data)")
    chat_template: str = cfg_field("auto", help=f"loss masks from the chat template: {CHAT_MODES}")
    output_dir: str = cfg_field("runs/eagle", help="where heads, checkpoints and config go")
    head: str = cfg_field("eagle1", help="'eagle1' (EAGLE-1/2) or 'eagle3'")
    aux_layers: list[int] | None = cfg_field(
        None, help="eagle3: output_hidden_states indices fused; null = low/mid/high default"
    )
    draft_vocab_size: int | None = cfg_field(
        None, help="eagle3: most frequent target tokens kept; null = whole vocabulary"
    )
    ttt_steps: int = cfg_field(7, help="eagle3: training-time-test steps (weights 0.8**i)")
    features: str = cfg_field("online", help="'online' (target runs in the step) or 'offline'")
    features_dir: str | None = cfg_field(None, help="offline dump folder; <output_dir>/features")
    feature_dtype: str = cfg_field("bfloat16", help="dtype of dumped features")
    shard_size: int = cfg_field(256, help="examples per dumped shard")
    runs: list[str] = cfg_field(["reference", "adaspec"], help=f"which heads to train: {RUNS}")
    reference_head: str | None = cfg_field(
        None, help="an already trained reference head folder (skips the reference run)"
    )
    optim: EagleOptimConfig = cfg_field(
        EagleOptimConfig,
        help="optimisation of each head: the pipeline's optim keys, with EAGLE's defaults",
    )
    loss: SelectiveLossSettings = cfg_field(
        SelectiveLossSettings,
        help="the AdaSPEC head's token filter (k, divergence, scope, ...; the pipeline's loss "
        "keys); the reference head is trained with loss.plain_kd(), i.e. plain EAGLE",
    )
    v_w: float = cfg_field(1.0, help="eagle1: feature-regression weight")
    p_w: float = cfg_field(0.1, help="eagle1: token-loss weight")
    noise: float = cfg_field(0.1, help="half-width of uniform noise on input features")
    target_dtype: str = cfg_field("float32", help="dtype the target is loaded in")
    resume: bool = cfg_field(True, help="continue each run from its last checkpoint")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, prefix: str = "") -> EagleTrainConfig:
        """As :meth:`ConfigBase.from_dict`; a key of the old flat layout is named with its new place."""
        for key in data or {}:
            if key in MOVED_KEYS:
                raise ConfigError(
                    f"config key {prefix + key!r} moved to {prefix + MOVED_KEYS[key]!r}: the "
                    "optimiser and loss settings are the optim: and loss: sections (the "
                    "pipeline's names)"
                )
        return super().from_dict(data, prefix)

    def validate(self) -> None:
        """Check choices and ranges (optim and loss check themselves)."""
        super().validate()
        check_choice("head", self.head, ("eagle1", "eagle3"))
        check_choice("features", self.features, ("online", "offline"))
        check_choice("chat_template", self.chat_template, CHAT_MODES)
        check_range("ttt_steps", self.ttt_steps, 1)
        if self.loss.selection != "delta":
            raise ConfigError(
                f"loss.selection must be 'delta' for EAGLE heads (they rank tokens by ΔL "
                f"against the reference head), got {self.loss.selection!r}"
            )
        for run in self.runs:
            check_choice("runs[]", run, RUNS)
        if "adaspec" in self.runs and "reference" not in self.runs and not self.reference_head:
            raise ConfigError(
                "runs has 'adaspec' without 'reference': add 'reference' to runs or set "
                "reference_head to a trained head folder"
            )


@dataclasses.dataclass
class EagleTrainResult:
    """Folders of the final heads and the last logged metrics per run."""

    heads: dict[str, str]
    metrics: dict[str, dict[str, float]]


def _load(config: EagleTrainConfig) -> tuple[Any, Any]:
    from adaspec.modeling import freeze, load_model, load_tokenizer

    if not config.target:
        raise ConfigError("target is required: a target checkpoint folder or hub id")
    target = freeze(load_model(config.target, dtype=config.target_dtype))
    tokenizer = load_tokenizer(config.tokenizer or config.target)
    return target, tokenizer


def _examples(config: EagleTrainConfig, tokenizer: Any) -> list[dict[str, list[int]]]:
    from adaspec.data.config import load_task
    from adaspec_eagle.masks import tokenize_for_heads

    examples = load_task(config.data, "train")
    return tokenize_for_heads(examples, tokenizer, config.data.max_length, config.chat_template)


def _new_head(config: EagleTrainConfig, target: Any, feats: list[dict]) -> Any:
    torch.manual_seed(config.optim.seed)
    if config.head == "eagle1":
        head = build_head(target.config, "eagle1")
    else:
        head = build_head(
            target.config,
            "eagle3",
            aux_layers=config.aux_layers,
            draft_vocab_size=config.draft_vocab_size,
        )
        if head.draft_vocab_size < target.config.vocab_size:
            counts = torch.zeros(target.config.vocab_size)
            for f in feats:
                ids = torch.as_tensor(f["input_ids"]).long()
                counts.index_add_(0, ids, torch.as_tensor(f["loss_mask"]).float() + 1e-3)
            head.set_draft_vocab(draft_vocab_from_counts(counts, head.draft_vocab_size))
    return head.to(target.get_output_embeddings().weight.dtype).attach(target)


def _dataset(config: EagleTrainConfig, target: Any, feats: list[dict]) -> Any:
    if config.features == "online":
        return feats
    from adaspec_eagle.features import OfflineFeatures

    index = Path(config.features_dir or Path(config.output_dir) / "features") / "index.json"
    if not index.is_file():
        dump_features(config, target=target, feats=feats)
    return OfflineFeatures(index.parent)


def dump_features(
    config: EagleTrainConfig, target: Any = None, feats: list[dict] | None = None
) -> Path:
    """Dump the target features of the training data (resumable); returns ``index.json``."""
    from adaspec_eagle import features as F
    from adaspec_eagle.arch import default_eagle3_layers

    if target is None or feats is None:
        target, tokenizer = _load(config)
        feats = _examples(config, tokenizer)
    aux = None
    if config.head == "eagle3":
        aux = config.aux_layers or default_eagle3_layers(target.config.num_hidden_layers)
    out = Path(config.features_dir or Path(config.output_dir) / "features")
    return F.dump_features(
        target,
        feats,
        out,
        aux_layers=aux,
        shard_size=config.shard_size,
        batch_size=config.optim.per_device_batch_size,
        dtype=getattr(torch, config.feature_dtype),
        log=logger.warning,
    )


def _settings_key(config: EagleTrainConfig) -> str:
    """The resolved settings a finished head was trained with (which runs are asked aside)."""
    settings = {k: v for k, v in config.to_dict().items() if k != "runs"}
    return json.dumps(settings, sort_keys=True, default=str)


def _finished(final: Path, settings_key: str) -> dict[str, Any] | None:
    """The metrics of the head in ``final`` if it was finished with these settings, else None."""
    path = final / METRICS_FILE  # written last, inside the folder renamed into place
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record["metrics"] if record.get("settings") == settings_key else None


def _train_one(
    config: EagleTrainConfig, run: str, target: Any, data: Any, feats: list, ref: Any
) -> tuple[str, dict[str, float]]:
    out_dir = Path(config.output_dir) / run
    final = out_dir / "final"
    settings_key = _settings_key(config)
    done = _finished(final, settings_key) if config.resume else None
    if done is not None:
        logger.warning("%s head: found the finished head in %s, skipping its training", run, final)
        return str(final), done
    settings = LossSettings(
        selective=config.loss if run == "adaspec" else config.loss.plain_kd(),
        v_w=config.v_w,
        p_w=config.p_w,
        ttt_steps=config.ttt_steps,
        noise=config.noise,
    )
    head = _new_head(config, target, feats)
    args = training_arguments(config.optim, out_dir, run_name=run)
    pad = target.config.pad_token_id if target.config.pad_token_id is not None else 0
    trainer = EagleTrainer(
        model=HeadTrainingModule(head, settings),
        args=args,
        train_dataset=data,
        data_collator=lambda batch: collate(batch, pad_id=pad),
        target=target,
        settings=settings,
        ref_head=ref,
    )
    last = get_last_checkpoint(str(out_dir)) if config.resume and out_dir.is_dir() else None
    result = trainer.train(resume_from_checkpoint=last)
    history = [h for h in trainer.state.log_history if "loss" in h]
    metrics = dict(result.metrics)
    if history:
        metrics.update({f"last_{k}": v for k, v in history[-1].items()})
        metrics["first_loss"] = history[0]["loss"]
    # Saved beside, then renamed into place: a reader never sees a half-written head. Every rank
    # calls save_model (ZeRO-3 gathers the weights there); the main process writes and renames.
    tmp = final.with_name(final.name + ".tmp")
    if trainer.args.should_save and tmp.exists():  # an earlier save cut short
        shutil.rmtree(tmp)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))
    if trainer.args.should_save:
        record = {"settings": settings_key, "metrics": metrics}
        (tmp / METRICS_FILE).write_text(json.dumps(record, default=str))
        replace_folder(tmp, final)
    trainer.accelerator.wait_for_everyone()
    return str(final), metrics


def _record_data(config: EagleTrainConfig, tokenizer: Any) -> None:
    """Write ``training_data.json``: gold or generated responses, and whether the template was used."""
    from adaspec.data import response_source, use_chat_template
    from adaspec.eval.report import write_json

    record = {
        "training_data": response_source(config.data),
        "chat_template": use_chat_template(tokenizer, config.chat_template),
    }
    write_json(record, Path(config.output_dir) / "training_data.json")


def run_train(config: EagleTrainConfig) -> EagleTrainResult:
    """Train the reference head, then the AdaSPEC head (same budget); see the module docstring."""
    save_config(config, config.output_dir)
    target, tokenizer = _load(config)
    feats = _examples(config, tokenizer)
    _record_data(config, tokenizer)
    data = _dataset(config, target, feats)
    heads: dict[str, str] = {}
    metrics: dict[str, dict[str, float]] = {}
    ref = None
    if config.reference_head:
        ref = load_head(config.reference_head, target=target)
        heads["reference"] = config.reference_head
    for run in ("reference", "adaspec"):
        if run not in config.runs or (run == "reference" and ref is not None):
            continue
        heads[run], metrics[run] = _train_one(
            config, run, target, data, feats, ref if run == "adaspec" else None
        )
        if run == "reference":
            ref = load_head(heads[run], target=target)
            ref.to(target.get_output_embeddings().weight.dtype)
    if ref is not None and isinstance(ref, Eagle3Head) and "adaspec" in heads:
        adaspec = load_head(heads["adaspec"])
        if not torch.equal(adaspec.t2d, ref.t2d):
            raise RuntimeError("reference and AdaSPEC heads ended up with different draft vocabs")
    return EagleTrainResult(heads=heads, metrics=metrics)
