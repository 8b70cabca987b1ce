"""What an AdaSPEC loss call returns, and its logging statistics (shared by both loss paths)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["SelectiveLossOutput", "selection_stats"]


@dataclass
class SelectiveLossOutput:
    """Result of an AdaSPEC loss call.

    Attributes:
        loss: Scalar float32 loss (differentiable w.r.t. the draft).
        kept: Bool ``[...]`` (token layout of the input): tokens that entered the loss.
        per_token: Float32 ``[...]`` ``L_draft`` per token, ``0`` at invalid positions.
            Differentiable on the plain path; detached on the chunked path.
        delta: Float32 ``[...]`` ``ΔL = L_draft - L_ref`` (detached, ``0`` at invalid
            positions), or ``None`` without a reference model.
        stats: Python floats for logging: ``kept_fraction`` (kept / valid), ``mean_delta``,
            ``mean_draft_loss``, ``mean_ref_loss`` (means over valid tokens of this micro-batch;
            ``mean_delta`` and ``mean_ref_loss`` are NaN without a reference model),
            ``num_valid``, ``num_kept``.

    """

    loss: Tensor
    kept: Tensor
    per_token: Tensor
    delta: Tensor | None
    stats: dict[str, float] = field(default_factory=dict)


def selection_stats(
    per_token: Tensor, ref_per_token: Tensor | None, valid: Tensor, kept: Tensor
) -> dict[str, float]:
    """Compute logging statistics with a single device-to-host copy.

    Args:
        per_token: ``[...]`` ``L_draft`` (zeros at invalid positions).
        ref_per_token: ``[...]`` ``L_ref`` (zeros at invalid positions) or ``None``.
        valid: Bool ``[...]`` valid tokens.
        kept: Bool ``[...]`` kept tokens.

    Returns:
        Dict with the keys documented on :class:`SelectiveLossOutput`.

    """
    with torch.no_grad():
        v = valid.to(torch.float32)
        draft = per_token.detach().float()
        ref = ref_per_token.detach().float() if ref_per_token is not None else torch.zeros_like(v)
        num_valid, num_kept = v.sum(), kept.sum().to(torch.float32)
        packed = torch.stack(
            [num_valid, num_kept, (draft * v).sum(), (ref * v).sum(), ((draft - ref) * v).sum()]
        ).tolist()
    n_valid, n_kept, s_draft, s_ref, s_delta = packed
    denom = max(n_valid, 1.0)
    has_ref = ref_per_token is not None
    return {
        "kept_fraction": n_kept / n_valid if n_valid > 0 else 0.0,
        "mean_delta": s_delta / denom if has_ref else math.nan,
        "mean_draft_loss": s_draft / denom,
        "mean_ref_loss": s_ref / denom if has_ref else math.nan,
        "num_valid": n_valid,
        "num_kept": n_kept,
    }
