"""AdaSPEC token selection: keep the tokens whose loss gap ``ΔL = L_draft - L_ref`` is largest.

AdaSPEC keeps a token when ``ΔL >= quantile(ΔL, 1 - k)`` over the valid (response) tokens, i.e.
roughly the top ``k`` fraction of tokens by ``ΔL`` (ties at the threshold are all kept). The
quantile uses linear interpolation and gives the same numbers as ``torch.quantile`` (the
official code), but is computed with a sort so it has no input-size limit (``torch.quantile``
refuses more than 2**24 elements).

Scopes (which tokens share one threshold):

* ``"batch"``: all valid tokens of the micro-batch (the paper and official code).
* ``"sequence"``: one threshold per row of a ``[B, T]`` input.
* ``"global"``: the valid ``ΔL`` of every data-parallel rank are gathered (``all_gather``), so
  every rank uses the same threshold; this is a collective, every rank of ``group`` must call
  it. Falls back to ``"batch"`` when ``torch.distributed`` is not initialised.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

SCOPES: tuple[str, ...] = ("batch", "sequence", "global")

__all__ = ["SCOPES", "check_k", "check_scope", "quantile_threshold", "select_tokens"]


def check_k(k: float) -> float:
    """Validate the AdaSPEC keep fraction ``k``.

    Args:
        k: Fraction of valid tokens to keep, in ``(0, 1]``. ``k = 1`` keeps every token (plain KD).

    Returns:
        ``k`` as a float.

    Raises:
        ValueError: If ``k`` is not a real number in ``(0, 1]`` (NaN included).

    """
    ok = isinstance(k, (int, float)) and not isinstance(k, bool)
    if ok:
        k = float(k)
        ok = math.isfinite(k) and 0.0 < k <= 1.0
    if not ok:
        raise ValueError(f"k must be in (0, 1], got {k!r}; the paper uses k=0.4")
    return k


def check_scope(scope: str) -> str:
    """Validate a selection scope name (one of :data:`SCOPES`) and return it."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    return scope


def _interpolate_sorted(sorted_vals: Tensor, count: Tensor, q: float) -> Tensor:
    """Linear-interpolation quantile of the first ``count`` entries of each sorted row.

    Mirrors ``torch.quantile(..., interpolation="linear")`` step by step (same float32 rank
    arithmetic and ``lerp``) so thresholds are bit-identical.

    Args:
        sorted_vals: ``[R, M]`` rows sorted ascending; entries past ``count`` are ignored.
        count: ``[R]`` int64 number of meaningful entries per row (rows with 0 give garbage,
            mask them out).
        q: Quantile in ``[0, 1]``.

    Returns:
        ``[R]`` thresholds, dtype of ``sorted_vals``.

    """
    q_t = torch.tensor(q, dtype=sorted_vals.dtype, device=sorted_vals.device)
    ranks = q_t * (count - 1).clamp_min(0).to(sorted_vals.dtype)
    below = ranks.to(torch.long)
    above = ranks.ceil().to(torch.long)
    weights = ranks - below.to(sorted_vals.dtype)
    lo = sorted_vals.gather(-1, below.unsqueeze(-1)).squeeze(-1)
    hi = sorted_vals.gather(-1, above.unsqueeze(-1)).squeeze(-1)
    return torch.lerp(lo, hi, weights)


def quantile_threshold(values: Tensor, q: float) -> Tensor:
    """``torch.quantile(values, q)`` (linear interpolation) without the input-size limit.

    Args:
        values: ``[M]`` values (M >= 1), any float dtype.
        q: Quantile in ``[0, 1]``.

    Returns:
        Scalar tensor, same dtype as ``values``.

    """
    if values.numel() == 0:
        raise ValueError("quantile_threshold needs at least one value")
    sorted_vals = values.reshape(1, -1).sort(dim=-1).values
    count = torch.tensor([values.numel()], device=values.device)
    return _interpolate_sorted(sorted_vals, count, q)[0]


def _gather_valid_deltas(local: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """All-gather variable-length 1D tensors from every rank (padded to the max count).

    Args:
        local: ``[M_rank]`` valid ``ΔL`` of this rank.
        group: Process group (``None`` = default group).

    Returns:
        ``[sum_r M_r]`` the valid values of all ranks, concatenated in rank order.

    """
    world = dist.get_world_size(group)
    count = torch.tensor([local.numel()], dtype=torch.long, device=local.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count, group=group)
    sizes = [int(c.item()) for c in counts]
    max_size = max(sizes)
    if max_size == 0:
        return local.new_zeros(0)
    padded = local.new_zeros(max_size)
    padded[: local.numel()] = local
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded, group=group)
    return torch.cat([g[:n] for g, n in zip(gathered, sizes)])


def select_tokens(
    delta: Tensor,
    valid: Tensor,
    k: float,
    scope: str = "batch",
    group: dist.ProcessGroup | None = None,
) -> Tensor:
    """Boolean mask of the tokens AdaSPEC trains on.

    ``kept = valid & (delta >= thr)`` with ``thr`` the ``1 - k`` quantile (linear interpolation,
    as ``torch.quantile``) of ``delta[valid]`` over the chosen scope. With ``k = 1`` every valid
    token is kept. Computed on ``delta.detach()``: the selection carries no gradient.

    Args:
        delta: ``[B, T]`` or ``[N]`` per-token loss gap ``L_draft - L_ref`` (values at invalid
            positions are ignored).
        valid: Bool ``[B, T]`` or ``[N]``, same shape: the tokens that count (response tokens).
        k: Keep fraction in ``(0, 1]`` (paper: 0.4).
        scope: ``"batch"``, ``"sequence"`` (needs ``[B, T]``) or ``"global"`` (collective over
            ``group``; falls back to ``"batch"`` without an initialised process group).
        group: Process group for ``"global"`` (``None`` = default group).

    Returns:
        Bool mask, same shape as ``delta``; all ``False`` when there is no valid token (in the
        scope: a row without valid tokens keeps nothing under ``"sequence"``).

    Raises:
        ValueError: On bad ``k``/``scope``, shape mismatch, or ``"sequence"`` on a non-2D input.

    """
    k = check_k(k)
    check_scope(scope)
    if delta.shape != valid.shape:
        raise ValueError(
            f"delta and valid must have the same shape, got delta {tuple(delta.shape)} and "
            f"valid {tuple(valid.shape)}"
        )
    delta = delta.detach()
    valid = valid.to(torch.bool)
    q = 1.0 - k

    if scope == "sequence":
        if delta.dim() != 2:
            raise ValueError(
                f"scope='sequence' needs [B, T] inputs, got delta {tuple(delta.shape)}; pass "
                "the per-row layout or use scope='batch'"
            )
        count = valid.sum(-1)
        fill = torch.full((), float("inf"), dtype=delta.dtype, device=delta.device)
        sorted_vals = torch.where(valid, delta, fill).sort(dim=-1).values
        thr = _interpolate_sorted(sorted_vals, count, q)
        return valid & (delta >= thr.unsqueeze(-1)) & (count > 0).unsqueeze(-1)

    values = delta[valid]
    if scope == "global" and dist.is_available() and dist.is_initialized():
        values = _gather_valid_deltas(values.contiguous(), group)
    if values.numel() == 0:
        return torch.zeros_like(valid)
    thr = quantile_threshold(values, q)
    return valid & (delta >= thr)
