"""The settings of the AdaSPEC selective loss: one frozen object, validated once when built.

Every loss function and Module of :mod:`adaspec.losses` takes a :class:`SelectiveLossSettings`;
training configs extend it (:class:`adaspec.training.config.LossConfig`), so the same object
travels from the YAML file to the quantile without being spelled out again.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import Tensor

from adaspec._base.config import ConfigBase, ConfigError, cfg_field
from adaspec.losses.divergences import (
    DIVERGENCES,
    check_divergence,
    check_temperature_beta,
    divergence_unchecked,
)
from adaspec.losses.reduction import check_reduction
from adaspec.losses.selection import SIGNALS, check_k, check_scope, check_signal

__all__ = ["DEFAULT_CHUNK_SIZE", "SelectiveLossSettings"]

DEFAULT_CHUNK_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class SelectiveLossSettings(ConfigBase):
    """What the selective loss computes: divergence, which tokens it keeps, how it reduces.

    Built from keywords or from YAML (``SelectiveLossSettings.from_dict``); a bad value raises
    :class:`~adaspec.config.ConfigError` (a ``ValueError``) naming the field, once, here.
    """

    k: float = cfg_field(
        0.4, help="fraction of response tokens kept by ΔL, in (0, 1] (paper: 0.4; 1 = plain KD)"
    )
    divergence: str = cfg_field(
        "forward_kl", help="per-token divergence: " + ", ".join(DIVERGENCES)
    )
    temperature: float = cfg_field(1.0, help="softmax temperature of both distributions (paper: 1)")
    beta: float = cfg_field(0.5, help="mixing weight of the generalized JSD")
    scope: str = cfg_field(
        "batch", help="where the top-k threshold is taken: batch (paper), sequence, global"
    )
    reduction: str = cfg_field(
        "sum", help="sum: Σ kept / num_items_in_batch (paper); mean: mean over kept"
    )
    selection: str = cfg_field(
        "delta",
        help="what the top-k tokens are ranked by: " + ", ".join(SIGNALS) + " (delta: AdaSPEC's "
        "L_draft - L_ref; random: the same fraction at random, a control; draft_loss: L_draft "
        "alone; student_entropy: the draft's entropy, arXiv 2602.01395); all but delta need no "
        "reference",
    )
    chunk_size: int = cfg_field(
        DEFAULT_CHUNK_SIZE,
        help="tokens per [chunk x vocab] block of the chunked loss (memory/speed trade-off, "
        "docs/benchmarks.md)",
    )

    # Fields a subclass resets too when it becomes plain KD (see plain_kd).
    _plain_kd_resets: ClassVar[dict[str, Any]] = {}

    def validate(self) -> None:
        """Types first (:class:`ConfigBase`), then the loss's own range and choice checks."""
        super().validate()
        try:
            check_k(self.k)
            check_divergence(self.divergence)
            check_temperature_beta(self.temperature, self.beta)
            check_scope(self.scope)
            check_reduction(self.reduction)
            check_signal(self.selection)
            if self.chunk_size < 1:
                raise ValueError(f"chunk_size must be a positive int, got {self.chunk_size!r}")
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from None
        for name in ("k", "temperature", "beta"):  # ints given in Python become floats
            object.__setattr__(self, name, float(getattr(self, name)))

    def plain_kd(self) -> SelectiveLossSettings:
        """These settings as plain KD: every response token kept throughout (``k = 1``).

        The one place where ``k = 1`` is forced (the reference stage, DistillSpec, a plain EAGLE
        head).
        """
        return self.replace(k=1.0, selection="delta", **self._plain_kd_resets)

    def divergence_of(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        """Per-token ``[...]`` float32 divergence of logits ``[..., V]`` under these settings."""
        return divergence_unchecked(
            student_logits, teacher_logits, self.divergence, self.temperature, self.beta
        )


DEFAULT_SETTINGS = SelectiveLossSettings()
