"""The EAGLE-3 training-time-test loss computed on the response rows only.

:func:`adaspec_eagle.losses.eagle3_loss` takes dense ``[B, T, V_draft]`` logits for every TTT step
and the target's ``[B, T, V]`` logits: for a 49k-vocabulary target that is most of a CPU training
step, spent on prompt and padding positions the loss masks out. This module computes the same
value from the rows that count:

* the target's logits only at the positions ``s`` whose next token is a response token (the union
  of every step's targets), in chunks, restricted once to the draft vocabulary
  (:func:`target_rows`);
* per step, the head's (and the reference head's) ``lm_head`` only at that step's valid positions
  (response position whose target argmax lies in the draft vocabulary: EAGLE-3's
  ``position_mask``), then EAGLE's soft cross-entropy, AdaSPEC's selection by ΔL on a ``[B, T]``
  scatter of the gaps (so every selection scope works), and the normalisation by ``B * T``
  (:func:`eagle3_rows_loss`).

Equal to the dense path (tests/adaspec_eagle/test_rows.py) for the forward-KL selection at
temperature 1, the soft-CE fast path of :func:`adaspec_eagle.plugin.filtered_token_loss`; other
divergences use the dense path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from adaspec.losses import SelectiveLossSettings, select_tokens
from adaspec_eagle.heads import Eagle3Head
from adaspec_eagle.losses import PLAIN_EAGLE, EagleLossOutput
from adaspec_eagle.plugin import soft_cross_entropy
from adaspec_eagle.unroll import shift_left


@dataclass
class TargetRows:
    """The target's side of the EAGLE-3 loss, at the rows that any TTT step scores.

    Attributes:
        row_of: ``[B, T]`` row index of position ``(b, s)`` in ``probs``, -1 where no step
            scores the target there (``loss_mask[b, s + 1] == 0``).
        probs: Target probabilities over the draft vocabulary ``[N, V_draft]`` (float32).
        in_vocab: ``[N]``: the target's argmax over its whole vocabulary is a draft token.

    """

    row_of: Tensor
    probs: Tensor
    in_vocab: Tensor


def rows_path_applies(settings: SelectiveLossSettings) -> bool:
    """Whether :func:`eagle3_rows_loss` computes these settings' loss (the soft-CE fast path)."""
    return settings.divergence == "forward_kl" and settings.temperature == 1


@torch.no_grad()
def target_rows(
    head: Eagle3Head,
    target_hidden: Tensor,
    lm_head: nn.Module,
    loss_mask: Tensor,
    chunk_rows: int = 1024,
) -> TargetRows:
    """Target probabilities over the draft vocabulary at the positions the loss reads.

    Args:
        head: The EAGLE-3 head (its ``t2d`` map picks the draft vocabulary).
        target_hidden: The target's lm_head input ``[B, T, H]``.
        lm_head: The target's output embedding.
        loss_mask: 1 on response tokens ``[B, T]``.
        chunk_rows: Rows per ``lm_head`` call (bounds the ``[rows, V]`` intermediate).

    """
    wanted = shift_left(loss_mask, 1) > 0
    b_idx, s_idx = wanted.nonzero(as_tuple=True)
    row_of = torch.full(wanted.shape, -1, dtype=torch.long, device=wanted.device)
    row_of[b_idx, s_idx] = torch.arange(b_idx.numel(), device=wanted.device)
    hidden = target_hidden[b_idx, s_idx].to(lm_head.weight.dtype)
    probs, in_vocab = [], []
    for start in range(0, hidden.shape[0], chunk_rows):
        logits = lm_head(hidden[start : start + chunk_rows])
        in_vocab.append(head.t2d[logits.argmax(-1)])
        probs.append(torch.softmax(head.target_to_draft_logits(logits).float(), dim=-1))
    if not probs:  # no response token in the batch
        v = int(head.t2d.sum())
        empty = hidden.new_zeros((0, v), dtype=torch.float32)
        return TargetRows(row_of, empty, torch.zeros(0, dtype=torch.bool, device=hidden.device))
    return TargetRows(row_of, torch.cat(probs), torch.cat(in_vocab))


def eagle3_rows_loss(
    head: Eagle3Head,
    step_hidden: list[Tensor],
    rows: TargetRows,
    loss_mask: Tensor,
    ref_head: Eagle3Head | None = None,
    ref_step_hidden: list[Tensor] | None = None,
    settings: SelectiveLossSettings = PLAIN_EAGLE,
    decay: float = 0.8,
    group: object = None,
) -> EagleLossOutput:
    """``sum_i decay**i * ploss_i``, each step's loss on its valid rows, optionally AdaSPEC-filtered.

    Args:
        head: The head being trained (its ``logits`` are applied to the gathered rows).
        step_hidden: Head outputs per TTT step, each ``[B, T, H]``
            (:func:`adaspec_eagle.unroll.eagle3_unroll_hidden`).
        rows: :func:`target_rows` of the batch.
        loss_mask: 1 on response tokens ``[B, T]``.
        ref_head: The reference head (ΔL), or None.
        ref_step_hidden: Its outputs per step (no gradient), or None.
        settings: AdaSPEC settings (forward-KL selection at temperature 1:
            :func:`rows_path_applies`).
        decay: Step weight base (EAGLE-3: 0.8).
        group: Process group for ``scope="global"``.

    Returns:
        :class:`~adaspec_eagle.losses.EagleLossOutput`; ``kept`` per step as ``[B, T]`` masks,
        ``stats`` per step ``kept_fraction`` and (with a reference) ``mean_delta``.

    """
    if not rows_path_applies(settings):
        raise ValueError(
            f"the rows path computes the forward-KL selection at temperature 1, got divergence="
            f"{settings.divergence!r}, temperature={settings.temperature}: use eagle3_loss"
        )
    if (ref_head is None) != (ref_step_hidden is None):
        raise ValueError("ref_head and ref_step_hidden go together (both or neither)")
    if ref_step_hidden is not None and len(ref_step_hidden) != len(step_hidden):
        raise ValueError(
            f"reference head unrolled {len(ref_step_hidden)} steps, head {len(step_hidden)}"
        )
    use_ref = ref_head is not None and settings.k < 1.0
    b, t = loss_mask.shape
    total = step_hidden[0].new_zeros((), dtype=torch.float32)
    steps, kept_masks, acc, stats = [], [], [], {}
    for i, hidden in enumerate(step_hidden):
        src = shift_left(rows.row_of + 1, 1 + i) - 1  # target row of (b, t + 1 + i)
        valid = (shift_left(loss_mask, 2 + i) > 0) & (src >= 0)
        if rows.in_vocab.numel():
            valid &= rows.in_vocab[src.clamp_min(0)]
        bi, ti = valid.nonzero(as_tuple=True)
        p = rows.probs[src[bi, ti]]
        logits = head.logits(hidden[bi, ti])
        ce = soft_cross_entropy(logits, p)
        kept = torch.ones_like(ce, dtype=torch.bool)
        if use_ref:
            with torch.no_grad():
                ref_ce = soft_cross_entropy(ref_head.logits(ref_step_hidden[i][bi, ti]), p)
                delta = torch.zeros((b, t), dtype=ce.dtype, device=ce.device)
                delta[bi, ti] = ce.detach() - ref_ce
                kept_full = select_tokens(delta, valid, settings.k, settings.scope, group)
            kept = kept_full[bi, ti]
            stats[f"step{i}/mean_delta"] = float(delta[valid].mean()) if bi.numel() else 0.0
        n_kept = kept.sum().float()
        scale = valid.sum().float() / n_kept.clamp_min(1.0) if use_ref else 1.0
        loss = torch.where(kept, ce, torch.zeros_like(ce)).sum() / valid.numel() * scale
        total = total + decay**i * loss
        steps.append(loss)
        mask = torch.zeros_like(valid)
        mask[bi[kept], ti[kept]] = True
        kept_masks.append(mask)
        hits = (logits.detach().argmax(-1) == p.argmax(-1)).sum()
        acc.append(float(hits) / bi.numel() if bi.numel() else 0.0)
        stats[f"step{i}/kept_fraction"] = float(n_kept) / bi.numel() if bi.numel() else 0.0
    return EagleLossOutput(
        loss=total, ploss=total, kept=kept_masks, step_losses=steps, acc=acc, stats=stats
    )
