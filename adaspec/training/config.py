"""Config sections for training stages: models, optimisation, and the selective loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from adaspec.config import ConfigBase, ConfigError, cfg_field, check_choice, check_range
from adaspec.losses import SelectiveLossSettings

K_SCHEDULES = ("constant", "step", "linear")
BUDGETS = ("equal_steps", "equal_tokens")
TOKEN_BUDGET_SCALINGS = ("steps", "batch")


@dataclass
class ModelSpec(ConfigBase):
    """Where a model comes from: a checkpoint, or a fresh architecture built from a config."""

    name_or_path: str | None = cfg_field(
        None,
        help="hub id or directory for from_pretrained; null builds a fresh model from the fields below",
    )
    family: str = cfg_field(
        "gpt_neox", help="architecture of a fresh model: gpt_neox, llama or qwen2"
    )
    hidden_size: int = cfg_field(64, help="width of a fresh model")
    num_layers: int = cfg_field(2, help="decoder layers of a fresh model")
    num_heads: int = cfg_field(4, help="attention heads of a fresh model")
    intermediate_size: int | None = cfg_field(
        None, help="MLP width of a fresh model (default 4x hidden)"
    )
    max_position_embeddings: int = cfg_field(2048, help="longest position of a fresh model")
    dtype: str = cfg_field(
        "float32", help="parameter dtype when loading: float32, bfloat16, float16 or auto"
    )
    attn_implementation: str | None = cfg_field(
        None, help="eager, sdpa or flash_attention_2 (default: transformers' choice)"
    )

    def validate(self) -> None:
        super().validate()
        check_choice("dtype", self.dtype, ("float32", "bfloat16", "float16", "auto"))
        if self.name_or_path is None:
            check_choice("family", self.family, ("gpt_neox", "llama", "qwen2"))
            for name in ("hidden_size", "num_layers", "num_heads"):
                check_range(name, getattr(self, name), 1)
            if self.hidden_size % self.num_heads:
                raise ConfigError(
                    f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}: "
                    "choose num_heads that divides hidden_size"
                )


@dataclass
class OptimConfig(ConfigBase):
    """Optimisation and bookkeeping of one training stage (maps onto ``TrainingArguments``)."""

    epochs: float = cfg_field(3.0, help="training epochs (paper: 3)")
    max_steps: int = cfg_field(
        -1, help="stop after this many optimizer steps (overrides epochs when > 0)"
    )
    learning_rate: float = cfg_field(
        3e-4, help="peak learning rate (paper: 3e-4 for reference and draft, 1e-5 target)"
    )
    lr_scheduler_type: str = cfg_field(
        "constant", help="transformers scheduler name (paper: constant)"
    )
    warmup_ratio: float = cfg_field(0.0, help="fraction of steps for linear warm-up")
    weight_decay: float = cfg_field(0.1, help="AdamW weight decay (paper: 0.1)")
    per_device_batch_size: int = cfg_field(16, help="sequences per device per micro-batch")
    gradient_accumulation_steps: int = cfg_field(1, help="micro-batches per optimizer step")
    max_grad_norm: float = cfg_field(1.0, help="gradient clipping norm")
    bf16: bool = cfg_field(False, help="bfloat16 mixed precision")
    fp16: bool = cfg_field(False, help="float16 mixed precision")
    gradient_checkpointing: bool = cfg_field(
        False, help="recompute activations in backward to save memory"
    )
    logging_steps: int = cfg_field(10, help="log every N optimizer steps")
    save_steps: int = cfg_field(500, help="checkpoint every N optimizer steps (resumable)")
    save_total_limit: int | None = cfg_field(2, help="keep at most this many checkpoints")
    report_to: list = cfg_field([], help="loggers: tensorboard, wandb (empty: none)")
    deepspeed: str | None = cfg_field(None, help="path to a DeepSpeed JSON config (ZeRO 1/2/3)")
    dataloader_num_workers: int = cfg_field(0, help="data loader worker processes")
    seed: int = cfg_field(0, help="seed for data order and dropout")
    disable_tqdm: bool | None = cfg_field(
        None, help="hide the progress bar (default: transformers' choice)"
    )

    def validate(self) -> None:
        super().validate()
        check_range("epochs", self.epochs, 0.0, low_open=True)
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_range("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("per_device_batch_size", self.per_device_batch_size, 1)
        check_range("gradient_accumulation_steps", self.gradient_accumulation_steps, 1)
        check_range("logging_steps", self.logging_steps, 1)
        check_range("save_steps", self.save_steps, 1)
        if self.bf16 and self.fp16:
            raise ConfigError("bf16 and fp16 are both true: choose one mixed-precision mode")
        for name in self.report_to:
            check_choice("report_to entry", name, ("tensorboard", "wandb", "none", "all"))


@dataclass(frozen=True)
class LossConfig(SelectiveLossSettings):
    """The distillation loss of the reference and draft stages.

    The loss settings themselves (``k``, divergence, temperature, beta, scope, reduction,
    selection, chunk_size: :class:`~adaspec.losses.SelectiveLossSettings`, which this extends and
    which the loss functions take as they are), plus what only training needs: the chunked path
    and how ``k`` moves over the optimizer steps.
    """

    chunked: bool = cfg_field(
        False, help="memory-efficient path: never hold [tokens x vocab] logits whole"
    )
    k_schedule: str = cfg_field(
        "constant",
        help="how k moves over training: constant (k throughout), step (k_start for the first "
        "k_schedule_fraction of the optimizer steps, then k: KD first, AdaSPEC late), linear "
        "(from k_start to k over that fraction, then k)",
    )
    k_start: float = cfg_field(
        1.0, help="k at step 0 under a step or linear k_schedule, in (0, 1] (1: plain KD)"
    )
    k_schedule_fraction: float = cfg_field(
        0.5,
        help="fraction of the optimizer steps that a step or linear k_schedule spans, in (0, 1]",
    )

    _plain_kd_resets: ClassVar[dict[str, Any]] = {"k_schedule": "constant"}

    def validate(self) -> None:
        super().validate()
        check_choice("k_schedule", self.k_schedule, K_SCHEDULES)
        check_range("k_start", self.k_start, 0.0, 1.0, low_open=True)
        check_range("k_schedule_fraction", self.k_schedule_fraction, 0.0, 1.0, low_open=True)
        if self.chunked and self.scope == "sequence":
            raise ConfigError(
                "loss.scope='sequence' is not available with loss.chunked=true (the chunked path sees "
                "a flat list of tokens): use scope 'batch' or 'global', or chunked=false"
            )

    def k_at(self, progress: float) -> float:
        """The kept fraction at ``progress`` (optimizer steps done / total, in [0, 1])."""
        if self.k_schedule == "constant" or progress >= self.k_schedule_fraction:
            return self.k
        if self.k_schedule == "step":
            return self.k_start
        return self.k_start + (self.k - self.k_start) * progress / self.k_schedule_fraction

    def at(self, progress: float) -> LossConfig:
        """The settings the loss takes at ``progress``: ``k`` as ``k_schedule`` has it then."""
        k = self.k_at(progress)
        return self if k == self.k else self.replace(k=k)


@dataclass
class BudgetConfig(ConfigBase):
    """How the draft stage's training budgets relate to the reference stage's."""

    modes: list = cfg_field(
        ["equal_steps"],
        help="budgets to train the AdaSPEC draft at: equal_steps (as long as the reference) and/or "
        "equal_tokens (as many gradient-carrying tokens as the reference: k of the tokens carry "
        "gradient, so 1/k the data)",
    )
    token_scaling: str = cfg_field(
        "steps",
        help="for equal_tokens: 'steps' trains epochs/k at the same batch (1/k the optimizer steps); "
        "'batch' trains batch/k for epochs/k (the official runs: batch 40 x 7.5 epochs against 16 x 3)",
    )
    compute_matched_baseline: bool = cfg_field(
        True,
        help="for equal_tokens: also train a DistillSpec draft (k=1) on exactly the AdaSPEC schedule, so "
        "the gain of the method is told apart from the extra compute",
    )

    def validate(self) -> None:
        super().validate()
        if not self.modes:
            raise ConfigError("draft.budget.modes is empty: list equal_steps and/or equal_tokens")
        for mode in self.modes:
            check_choice("draft.budget.modes entry", mode, BUDGETS)
        check_choice("draft.budget.token_scaling", self.token_scaling, TOKEN_BUDGET_SCALINGS)


def scaled_optim(
    ref: OptimConfig, k: float, mode: str, token_scaling: str = "steps"
) -> OptimConfig:
    """The draft stage's optimisation settings under budget ``mode``, derived from the reference's.

    Args:
        ref: The reference stage's settings.
        k: Kept fraction of the selective loss.
        mode: ``equal_steps`` or ``equal_tokens``.
        token_scaling: For ``equal_tokens``: ``steps`` or ``batch`` (see :class:`BudgetConfig`).

    Returns:
        ``ref`` unchanged for ``equal_steps``; for ``equal_tokens`` epochs (and ``max_steps``) scaled
        by 1/k, or with ``token_scaling='batch'`` the batch and epochs scaled by 1/k (same step count).
    """
    check_choice("budget mode", mode, BUDGETS)
    if mode == "equal_steps" or k == 1.0:
        return ref
    epochs = ref.epochs / k
    if token_scaling == "steps":
        max_steps = int(round(ref.max_steps / k)) if ref.max_steps > 0 else -1
        return ref.replace(epochs=epochs, max_steps=max_steps)
    batch = int(round(ref.per_device_batch_size / k))
    return ref.replace(epochs=epochs, per_device_batch_size=batch)
