"""AdaSPEC selective distillation loss on full logits (the paper's formulation).

For every valid (response) token: ``L_draft = D(p_target, q_draft)``,
``L_ref = D(p_target, q_ref)``, ``ΔL = L_draft - L_ref``. Tokens with
``ΔL >= quantile(ΔL, 1 - k)`` are kept and the loss is
``sum(L_draft[kept]) / num_items_in_batch`` (``reduction="sum"``) or the mean over kept tokens.
Math is float32 whatever the logits dtype. The target and reference receive no gradient.

For long sequences / large vocabularies use :func:`adaspec.losses.chunked_adaspec_loss`, which
gives the same loss and gradients without materialising ``[N, V]`` logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn

from adaspec.losses.divergences import check_divergence, token_divergence
from adaspec.losses.reduction import check_reduction, reduce_token_loss
from adaspec.losses.selection import (
    check_k,
    check_scope,
    check_signal,
    draft_entropy,
    select_tokens,
    selection_score,
)

__all__ = [
    "AdaSPECLoss",
    "SelectiveLossOutput",
    "adaspec_token_loss",
    "selection_stats",
    "shift_for_causal_lm",
]


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


def shift_for_causal_lm(
    logits: Tensor, labels: Tensor, ignore_index: int = -100
) -> tuple[Tensor, Tensor]:
    """Align causal-LM logits with the tokens they predict.

    Args:
        logits: ``[B, T, V]`` logits; position ``t`` predicts token ``t + 1``.
        labels: ``[B, T]`` token ids with ``ignore_index`` on prompt / padding positions.
        ignore_index: Label value of positions that do not count.

    Returns:
        ``(logits[:, :-1], labels[:, 1:] != ignore_index)``: ``[B, T-1, V]`` logits (a view, no
        copy) and the bool ``[B, T-1]`` valid mask.

    """
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"expected logits [B, T, V] and labels [B, T], got logits {tuple(logits.shape)} and "
            f"labels {tuple(labels.shape)}"
        )
    return logits[:, :-1], labels[:, 1:] != ignore_index


def _check_token_inputs(draft_logits: Tensor, other: Tensor | None, name: str) -> None:
    if other is None:
        return
    if other.shape[-1] != draft_logits.shape[-1]:
        raise ValueError(
            f"{name} and draft_logits must have the same vocabulary size (last dim), got "
            f"draft_logits {tuple(draft_logits.shape)} and {name} {tuple(other.shape)}; if one "
            "model pads its embedding matrix, slice the padded columns off first, e.g. "
            "logits[..., :vocab_size]"
        )
    if other.shape[:-1] != draft_logits.shape[:-1]:
        raise ValueError(
            f"{name} must have the token layout of draft_logits, got draft_logits "
            f"{tuple(draft_logits.shape)} and {name} {tuple(other.shape)}"
        )


def adaspec_token_loss(
    draft_logits: Tensor,
    target_logits: Tensor,
    ref_logits: Tensor | None,
    valid: Tensor,
    k: float = 0.4,
    divergence: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    scope: str = "batch",
    reduction: str = "sum",
    num_items_in_batch: int | Tensor | None = None,
    group: dist.ProcessGroup | None = None,
    signal: str = "delta",
) -> SelectiveLossOutput:
    """AdaSPEC selective KD loss on full logits.

    Divergences are evaluated only on valid positions (invalid rows may hold anything). With
    ``ref_logits=None`` it is plain KD over every valid token; ``k = 1`` also keeps every valid
    token (same loss as plain KD).

    Args:
        draft_logits: ``[B, T, V]`` or ``[N, V]`` draft (student) logits, already aligned with
            ``valid`` (see :func:`shift_for_causal_lm`); any float dtype.
        target_logits: Same shape, target (teacher) logits; detached (no gradient).
        ref_logits: Same shape, reference-model logits (detached), or ``None`` for plain KD.
        valid: Bool ``[B, T]`` or ``[N]``: tokens that count (response tokens).
        k: Keep fraction in ``(0, 1]`` (paper: 0.4).
        divergence: One of ``DIVERGENCES`` (paper: ``"forward_kl"``).
        temperature: Softmax temperature (see :func:`token_divergence` for the ``T**2`` rule).
        beta: JSD mixture weight.
        scope: ``"batch"`` (paper), ``"sequence"`` (needs ``[B, T]``) or ``"global"``.
        reduction: ``"sum"`` (divide by ``num_items_in_batch``) or ``"mean"`` (over kept).
        num_items_in_batch: Valid tokens of the accumulated batch; ``None`` = valid tokens of
            this micro-batch.
        group: Process group for ``scope="global"``.
        signal: What tokens are ranked by (:data:`adaspec.losses.selection.SIGNALS`):
            ``"delta"`` (AdaSPEC, ΔL), or the controls ``"random"``, ``"draft_loss"``,
            ``"student_entropy"``, which need no reference.

    Returns:
        :class:`SelectiveLossOutput` (``per_token``/``delta``/``kept`` in ``valid``'s layout).

    """
    k = check_k(k)
    check_signal(signal)
    check_divergence(divergence)
    check_scope(scope)
    check_reduction(reduction)
    _check_token_inputs(draft_logits, target_logits, "target_logits")
    _check_token_inputs(draft_logits, ref_logits, "ref_logits")
    if valid.shape != draft_logits.shape[:-1]:
        raise ValueError(
            f"valid must have shape draft_logits.shape[:-1] = {tuple(draft_logits.shape[:-1])}, "
            f"got {tuple(valid.shape)}"
        )
    valid = valid.to(torch.bool)
    kw = {"kind": divergence, "temperature": temperature, "beta": beta}
    target_valid = target_logits.detach()[valid]

    zeros = torch.zeros(valid.shape, dtype=torch.float32, device=draft_logits.device)
    draft_valid = token_divergence(draft_logits[valid], target_valid, **kw)
    per_token = zeros.masked_scatter(valid, draft_valid)

    ref_per_token = delta = None
    if ref_logits is not None:
        with torch.no_grad():
            ref_valid = token_divergence(ref_logits.detach()[valid], target_valid, **kw)
            ref_per_token = zeros.masked_scatter(valid, ref_valid)
            delta = per_token.detach() - ref_per_token
    entropy = None
    if signal == "student_entropy":
        entropy = zeros.masked_scatter(valid, draft_entropy(draft_logits[valid], temperature))
    score = selection_score(signal, per_token, ref_per_token, entropy)
    kept = valid.clone() if score is None else select_tokens(score, valid, k, scope, group)

    loss = reduce_token_loss(per_token, kept, num_items_in_batch, reduction, num_valid=valid.sum())
    stats = selection_stats(per_token, ref_per_token, valid, kept)
    return SelectiveLossOutput(loss=loss, kept=kept, per_token=per_token, delta=delta, stats=stats)


class AdaSPECLoss(nn.Module):
    """Module wrapper of :func:`adaspec_token_loss` (validates its settings at construction).

    Args:
        k: Keep fraction in ``(0, 1]``.
        divergence: One of ``DIVERGENCES``.
        temperature: Softmax temperature.
        beta: JSD mixture weight.
        scope: ``"batch"``, ``"sequence"`` or ``"global"``.
        reduction: ``"sum"`` or ``"mean"``.

    """

    def __init__(
        self,
        k: float = 0.4,
        divergence: str = "forward_kl",
        temperature: float = 1.0,
        beta: float = 0.5,
        scope: str = "batch",
        reduction: str = "sum",
    ) -> None:
        super().__init__()
        self.k = check_k(k)
        self.divergence = check_divergence(divergence)
        # Validate temperature and beta eagerly with a tiny call.
        token_divergence(torch.zeros(1, 2), torch.zeros(1, 2), divergence, temperature, beta)
        self.temperature = float(temperature)
        self.beta = float(beta)
        self.scope = check_scope(scope)
        self.reduction = check_reduction(reduction)

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"k={self.k}, divergence={self.divergence!r}, temperature={self.temperature}, "
            f"beta={self.beta}, scope={self.scope!r}, reduction={self.reduction!r}"
        )

    def forward(
        self,
        draft_logits: Tensor,
        target_logits: Tensor,
        ref_logits: Tensor | None,
        valid: Tensor,
        num_items_in_batch: int | Tensor | None = None,
        group: dist.ProcessGroup | None = None,
    ) -> SelectiveLossOutput:
        """See :func:`adaspec_token_loss` (same shapes)."""
        return adaspec_token_loss(
            draft_logits,
            target_logits,
            ref_logits,
            valid,
            k=self.k,
            divergence=self.divergence,
            temperature=self.temperature,
            beta=self.beta,
            scope=self.scope,
            reduction=self.reduction,
            num_items_in_batch=num_items_in_batch,
            group=group,
        )
