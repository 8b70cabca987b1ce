"""Reduce a per-token loss over the selected tokens to a scalar.

Denominator convention for ``reduction="sum"`` (the one Hugging Face ``Trainer`` uses with
gradient accumulation): ``sum(per_token[kept]) / num_items_in_batch`` where
``num_items_in_batch`` is the number of VALID (response) tokens of the whole accumulated batch,
not the number of kept tokens, so selection changes which tokens get gradient but not how a
token's gradient is scaled. This function cannot know the number of valid tokens by itself:
pass ``num_items_in_batch`` (accumulated count) or ``num_valid`` (count of this micro-batch,
used when ``num_items_in_batch`` is ``None``). When averaging tokens across devices the trainer
is responsible for the usual ``loss *= world_size`` correction.
"""

from __future__ import annotations

import torch
from torch import Tensor

REDUCTIONS: tuple[str, ...] = ("sum", "mean")

__all__ = ["REDUCTIONS", "check_reduction", "reduce_token_loss", "resolve_denominator"]


def check_reduction(reduction: str) -> str:
    """Validate a reduction name (one of :data:`REDUCTIONS`) and return it."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def resolve_denominator(
    reduction: str,
    kept: Tensor,
    num_items_in_batch: int | float | Tensor | None,
    num_valid: int | float | Tensor | None,
    device: torch.device,
) -> Tensor:
    """Float32 scalar the kept-token sum is divided by (clamped to at least 1).

    Args:
        reduction: ``"sum"`` or ``"mean"``.
        kept: Bool mask of kept tokens, any shape (used by ``"mean"``).
        num_items_in_batch: Valid tokens of the accumulated batch (``"sum"``).
        num_valid: Valid tokens of this micro-batch, fallback for ``"sum"``.
        device: Device of the result.

    Returns:
        Scalar float32 tensor ``>= 1`` (a zero count gives a zero loss instead of NaN).

    """
    check_reduction(reduction)
    if reduction == "mean":
        denom = kept.sum()
    else:
        denom = num_items_in_batch if num_items_in_batch is not None else num_valid
        if denom is None:
            raise ValueError(
                "reduction='sum' needs num_items_in_batch (valid tokens of the accumulated "
                "batch, as HF Trainer passes it) or num_valid (valid tokens of this micro-batch, "
                "e.g. valid.sum()); or use reduction='mean'"
            )
        if not isinstance(denom, Tensor):
            if denom < 0:
                raise ValueError(f"num_items_in_batch must be >= 0, got {denom!r}")
            denom = torch.tensor(float(denom))
    return denom.to(device=device, dtype=torch.float32).clamp_min(1.0)


def reduce_token_loss(
    per_token: Tensor,
    kept: Tensor,
    num_items_in_batch: int | float | Tensor | None = None,
    reduction: str = "sum",
    *,
    num_valid: int | float | Tensor | None = None,
) -> Tensor:
    """Scalar loss over the kept tokens.

    * ``"sum"``: ``per_token[kept].sum() / num_items_in_batch`` (falls back to ``num_valid``).
    * ``"mean"``: ``per_token[kept].mean()``.

    Zero kept tokens give ``0.0`` that still backpropagates (zero gradients), never NaN.
    Unkept positions get exactly zero gradient, even where ``per_token`` is inf/NaN.

    Args:
        per_token: ``[...]`` per-token loss (float32 recommended).
        kept: Bool ``[...]``, same shape: tokens that enter the loss.
        num_items_in_batch: Number of valid tokens in the accumulated batch (int or tensor).
        reduction: ``"sum"`` or ``"mean"``.
        num_valid: Number of valid tokens of this micro-batch; used for ``"sum"`` when
            ``num_items_in_batch`` is ``None``.

    Returns:
        Scalar float32 tensor.

    Raises:
        ValueError: On unknown ``reduction``, shape mismatch, or ``"sum"`` without a count.

    """
    if per_token.shape != kept.shape:
        raise ValueError(
            f"per_token and kept must have the same shape, got per_token "
            f"{tuple(per_token.shape)} and kept {tuple(kept.shape)}"
        )
    denom = resolve_denominator(reduction, kept, num_items_in_batch, num_valid, per_token.device)
    zero = torch.zeros((), dtype=per_token.dtype, device=per_token.device)
    total = torch.where(kept.to(torch.bool), per_token, zero).sum()
    return total.float() / denom
