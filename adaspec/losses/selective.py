"""AdaSPEC selective distillation loss on full logits (the paper's formulation).

For every valid (response) token: ``L_draft = D(p_target, q_draft)``,
``L_ref = D(p_target, q_ref)``, ``ΔL = L_draft - L_ref``. Tokens with
``ΔL >= quantile(ΔL, 1 - k)`` are kept and the loss is
``sum(L_draft[kept]) / num_items_in_batch`` (``reduction="sum"``) or the mean over kept tokens.
Math is float32 whatever the logits dtype. The target and reference receive no gradient. The
three steps read top to bottom in :func:`adaspec_token_loss`: divergence
(:meth:`SelectiveLossSettings.divergence_of`), selection (:func:`select_tokens`), reduction
(:func:`reduce_token_loss`); every setting comes from one validated
:class:`~adaspec.losses.settings.SelectiveLossSettings`.

For long sequences / large vocabularies use :func:`adaspec.losses.chunked_adaspec_loss`, which
gives the same loss and gradients without materialising ``[N, V]`` logits.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from adaspec.losses.output import SelectiveLossOutput, selection_stats
from adaspec.losses.reduction import reduce_token_loss
from adaspec.losses.selection import draft_entropy, select_tokens, selection_score
from adaspec.losses.settings import SelectiveLossSettings

__all__ = [
    "AdaSPECLoss",
    "SelectiveLossOutput",
    "adaspec_token_loss",
    "selection_stats",
    "shift_for_causal_lm",
]


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
    settings: SelectiveLossSettings,
    num_items_in_batch: int | Tensor | None = None,
    group: dist.ProcessGroup | None = None,
) -> SelectiveLossOutput:
    """AdaSPEC selective KD loss on full logits.

    Divergences are evaluated only on valid positions (invalid rows may hold anything). With
    ``ref_logits=None`` and the ``"delta"`` selection it is plain KD over every valid token;
    ``k = 1`` also keeps every valid token (same loss as plain KD).

    Args:
        draft_logits: ``[B, T, V]`` or ``[N, V]`` draft (student) logits, already aligned with
            ``valid`` (see :func:`shift_for_causal_lm`); any float dtype.
        target_logits: Same shape, target (teacher) logits; detached (no gradient).
        ref_logits: Same shape, reference-model logits (detached), or ``None`` for plain KD.
        valid: Bool ``[B, T]`` or ``[N]``: tokens that count (response tokens).
        settings: ``k``, divergence, temperature, beta, scope, reduction and selection signal
            (``scope="sequence"`` needs ``[B, T]``; the signals other than ``"delta"`` need no
            reference).
        num_items_in_batch: Valid tokens of the accumulated batch; ``None`` = valid tokens of
            this micro-batch.
        group: Process group for ``scope="global"``.

    Returns:
        :class:`SelectiveLossOutput` (``per_token``/``delta``/``kept`` in ``valid``'s layout).

    """
    _check_token_inputs(draft_logits, target_logits, "target_logits")
    _check_token_inputs(draft_logits, ref_logits, "ref_logits")
    if valid.shape != draft_logits.shape[:-1]:
        raise ValueError(
            f"valid must have shape draft_logits.shape[:-1] = {tuple(draft_logits.shape[:-1])}, "
            f"got {tuple(valid.shape)}"
        )
    valid = valid.to(torch.bool)
    target_valid = target_logits.detach()[valid]

    # 1. Divergence: L_draft (with gradient) and L_ref (without) on the valid tokens.
    zeros = torch.zeros(valid.shape, dtype=torch.float32, device=draft_logits.device)
    per_token = zeros.masked_scatter(
        valid, settings.divergence_of(draft_logits[valid], target_valid)
    )
    ref_per_token = delta = entropy = None
    if ref_logits is not None:
        with torch.no_grad():
            ref_valid = settings.divergence_of(ref_logits.detach()[valid], target_valid)
            ref_per_token = zeros.masked_scatter(valid, ref_valid)
            delta = per_token.detach() - ref_per_token
    if settings.selection == "student_entropy":
        draft_h = draft_entropy(draft_logits[valid], settings.temperature)
        entropy = zeros.masked_scatter(valid, draft_h)

    # 2. Selection: the top-k fraction by the signal (every valid token without one).
    score = selection_score(settings.selection, per_token, ref_per_token, entropy)
    kept = (
        valid.clone()
        if score is None
        else select_tokens(score, valid, settings.k, settings.scope, group)
    )

    # 3. Reduction over the kept tokens.
    loss = reduce_token_loss(
        per_token, kept, num_items_in_batch, settings.reduction, num_valid=valid.sum()
    )
    stats = selection_stats(per_token, ref_per_token, valid, kept)
    return SelectiveLossOutput(loss=loss, kept=kept, per_token=per_token, delta=delta, stats=stats)


class AdaSPECLoss(nn.Module):
    """Module form of :func:`adaspec_token_loss`: the settings are fixed at construction.

    Args:
        settings: The loss settings (validated when they were built).

    """

    def __init__(self, settings: SelectiveLossSettings) -> None:
        super().__init__()
        self.settings = settings

    def extra_repr(self) -> str:  # noqa: D102
        return repr(self.settings)

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
            draft_logits, target_logits, ref_logits, valid, self.settings, num_items_in_batch, group
        )
