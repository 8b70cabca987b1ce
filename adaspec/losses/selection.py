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

Signals (what the tokens are ranked by; :func:`selection_score`):

* ``"delta"``: ``ΔL = L_draft - L_ref``, AdaSPEC's (needs the reference).
* ``"random"``: uniform noise, i.e. the same fraction ``k`` kept at random: the control that tells
  the signal apart from training on fewer tokens.
* ``"draft_loss"``: ``L_draft`` alone (the hardest tokens, no reference).
* ``"student_entropy"``: the entropy of the draft's distribution, the signal of "Rethinking
  Selective Knowledge Distillation" (arXiv 2602.01395): keep the tokens the student is least
  sure of.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

SCOPES: tuple[str, ...] = ("batch", "sequence", "global")
SIGNALS: tuple[str, ...] = ("delta", "random", "draft_loss", "student_entropy")

__all__ = [
    "SCOPES",
    "SIGNALS",
    "check_k",
    "check_scope",
    "check_signal",
    "draft_entropy",
    "quantile_threshold",
    "select_tokens",
    "selection_score",
]


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


def check_signal(signal: str) -> str:
    """Validate a selection signal name (one of :data:`SIGNALS`) and return it."""
    if signal not in SIGNALS:
        raise ValueError(f"selection signal must be one of {SIGNALS}, got {signal!r}")
    return signal


def draft_entropy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``[..., V] -> [...]`` float32 entropy of ``softmax(logits / temperature)`` (no gradient)."""
    with torch.no_grad():
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)
        return -(logp.exp() * logp).sum(-1)


def selection_score(
    signal: str,
    draft_loss: Tensor,
    ref_loss: Tensor | None = None,
    entropy: Tensor | None = None,
) -> Tensor | None:
    """Per-token score that :func:`select_tokens` keeps the top ``k`` of (detached).

    Args:
        signal: One of :data:`SIGNALS`.
        draft_loss: ``[...]`` ``L_draft`` per token.
        ref_loss: ``[...]`` ``L_ref`` per token, or ``None`` without a reference.
        entropy: ``[...]`` draft entropy per token (needed for ``"student_entropy"``).

    Returns:
        The ``[...]`` score, or ``None`` for ``"delta"`` without a reference (then every token
        is kept: plain KD, as the reference stage and DistillSpec).
    """
    draft_loss = draft_loss.detach()
    if signal == "delta":
        return None if ref_loss is None else draft_loss - ref_loss.detach()
    if signal == "random":
        return torch.rand(draft_loss.shape, device=draft_loss.device)
    if signal == "draft_loss":
        return draft_loss
    if signal != "student_entropy":
        check_signal(signal)  # an unknown name (settings were checked when built): raises
    if entropy is None:
        raise ValueError("selection signal 'student_entropy' needs the draft entropy per token")
    return entropy.detach().float()


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
