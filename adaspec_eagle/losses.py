"""Losses of EAGLE heads, plain and AdaSPEC-filtered (pure functions on tensors).

* EAGLE-1/2: ``v_w * SmoothL1(predicted feature, target feature) + p_w * soft CE`` against the
  target's next-token distribution (``v_w = 1.0``, ``p_w = 0.1``), both normalised by the number of
  response tokens + 1e-5 as in SafeAILab/EAGLE ``eagle/train/main.py`` ``compute_loss``.
* EAGLE-3: ``sum_i 0.8**i * ploss_i`` over the training-time-test steps, each the soft CE on
  response positions whose target argmax is in the draft vocabulary, divided by B * T
  (``eagle/traineagle3/cnets.py``).
* AdaSPEC: the token part is replaced by :func:`adaspec_eagle.plugin.filtered_token_loss` with ΔL
  measured against a reference head's logits (per TTT step for EAGLE-3); the feature regression of
  EAGLE-1/2 is kept on every response token. With ``k = 1`` or no reference, the value is exactly
  EAGLE's loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from adaspec.losses import SelectiveLossSettings
from adaspec_eagle.plugin import filtered_token_loss

PLAIN_EAGLE = SelectiveLossSettings().plain_kd()  # every response token: EAGLE's own loss


@dataclass
class EagleLossOutput:
    """A head loss and its parts (scalars are tensors; ``kept`` per step for EAGLE-3)."""

    loss: Tensor
    ploss: Tensor
    vloss: Tensor | None = None
    kept: list[Tensor] = field(default_factory=list)
    step_losses: list[Tensor] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


def feature_loss(pred: Tensor, target: Tensor, loss_mask: Tensor) -> Tensor:
    """EAGLE's feature regression: masked SmoothL1, mean over H, / (mask count + 1e-5).

    Args:
        pred: Predicted features [B, T, H].
        target: Target features [B, T, H].
        loss_mask: [B, T] response mask.

    """
    m = loss_mask.float()[..., None]
    per = F.smooth_l1_loss(pred.float(), target.float().detach(), reduction="none")
    return torch.sum(torch.mean(m * per, dim=2)) / (m.sum() + 1e-5)


def _accuracy(logits: Tensor, target_logits: Tensor, mask: Tensor) -> float:
    m = mask > 0
    if not m.any():
        return 0.0
    hit = (logits.argmax(-1) == target_logits.argmax(-1)) & m
    return float(hit.sum()) / float(m.sum())


def eagle1_loss(
    pred_features: Tensor,
    target_features: Tensor,
    logits: Tensor,
    target_logits: Tensor,
    loss_mask: Tensor,
    ref_logits: Tensor | None = None,
    settings: SelectiveLossSettings = PLAIN_EAGLE,
    v_w: float = 1.0,
    p_w: float = 0.1,
) -> EagleLossOutput:
    """EAGLE-1/2 loss, AdaSPEC-filtered on its token part when ``ref_logits`` and ``k < 1``.

    Args:
        pred_features: Head output [B, T, H].
        target_features: Target features aligned with it [B, T, H].
        logits: ``lm_head(pred_features)`` [B, T, V].
        target_logits: Target logits aligned with it [B, T, V].
        loss_mask: Response mask [B, T].
        ref_logits: Reference head logits [B, T, V] or None.
        settings: The AdaSPEC loss settings (``k``, divergence for ΔL, scope); default plain
            EAGLE.
        v_w: Feature-regression weight.
        p_w: Token-loss weight.

    """
    vloss = feature_loss(pred_features, target_features, loss_mask)
    tok = filtered_token_loss(logits, target_logits, loss_mask, ref_logits, settings)
    loss = v_w * vloss + p_w * tok.loss
    return EagleLossOutput(
        loss=loss,
        ploss=tok.loss,
        vloss=vloss,
        kept=[tok.kept],
        step_losses=[tok.loss],
        acc=[_accuracy(logits, target_logits, loss_mask)],
        stats=tok.stats,
    )


def eagle3_loss(
    step_logits: list[Tensor],
    step_targets: list[tuple[Tensor, Tensor]],
    ref_step_logits: list[Tensor] | None = None,
    settings: SelectiveLossSettings = PLAIN_EAGLE,
    decay: float = 0.8,
) -> EagleLossOutput:
    """EAGLE-3 training-time-test loss ``sum_i decay**i * ploss_i``, optionally AdaSPEC-filtered.

    Args:
        step_logits: Head logits per TTT step, each [B, T, V_draft]
            (:func:`adaspec_eagle.unroll.eagle3_unroll`).
        step_targets: Per step, (target logits over the draft vocab [B, T, V_draft], position
            mask [B, T]) (:func:`adaspec_eagle.unroll.eagle3_targets`).
        ref_step_logits: The reference head's logits per step (its own unroll), or None.
        settings: The AdaSPEC loss settings (selection per step, over that step's valid
            positions); default plain EAGLE.
        decay: Step weight base (EAGLE-3: 0.8).

    """
    if len(step_logits) != len(step_targets):
        raise ValueError(f"{len(step_logits)} steps of logits but {len(step_targets)} of targets")
    if ref_step_logits is not None and len(ref_step_logits) != len(step_logits):
        raise ValueError(
            f"reference head unrolled {len(ref_step_logits)} steps, head {len(step_logits)}"
        )
    total = step_logits[0].new_zeros((), dtype=torch.float32)
    steps, kept, acc = [], [], []
    stats: dict[str, float] = {}
    for i, (logits, (tgt, mask)) in enumerate(zip(step_logits, step_targets)):
        ref = ref_step_logits[i] if ref_step_logits is not None else None
        tok = filtered_token_loss(logits, tgt, mask, ref, settings, normalization="positions")
        total = total + decay**i * tok.loss
        steps.append(tok.loss)
        kept.append(tok.kept)
        acc.append(_accuracy(logits, tgt, mask))
        stats.update({f"step{i}/{key}": v for key, v in tok.stats.items()})
    return EagleLossOutput(
        loss=total, ploss=total, kept=kept, step_losses=steps, acc=acc, stats=stats
    )
