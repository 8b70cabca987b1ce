"""``transformers.Trainer`` for EAGLE heads (so ``accelerate launch`` and DeepSpeed configs work).

The trained module is :class:`HeadTrainingModule` (the head plus its training-time forward); the
frozen target and the optional frozen reference head live beside it on the trainer. The loss is
computed in :meth:`EagleTrainer.compute_loss` with the pure functions of
:mod:`adaspec_eagle.losses`. Checkpoints hold only the head (``config.json`` +
``model.safetensors``), plus the optimizer/scheduler/RNG state Trainer needs to resume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import Trainer

from adaspec.losses import SelectiveLossSettings
from adaspec_eagle.checkpoint import WEIGHTS_NAME, save_head
from adaspec_eagle.features import TargetFeatures, features_from_batch
from adaspec_eagle.heads import Eagle1Head, Eagle3Head
from adaspec_eagle.losses import PLAIN_EAGLE, EagleLossOutput, eagle1_loss, eagle3_loss
from adaspec_eagle.rows import eagle3_rows_loss, rows_path_applies, target_rows
from adaspec_eagle.unroll import eagle1_forward, eagle3_targets, eagle3_unroll_hidden


@dataclass(frozen=True)
class LossSettings:
    """How a head's loss is computed: the shared AdaSPEC settings plus EAGLE's own weights.

    ``selective`` (``k``, divergence, scope, ...) filters the token loss; its ``k = 1`` (the
    default) or no reference head is plain EAGLE.
    """

    selective: SelectiveLossSettings = PLAIN_EAGLE
    v_w: float = 1.0
    p_w: float = 0.1
    ttt_steps: int = 7
    decay: float = 0.8
    noise: float = 0.0


class HeadTrainingModule(nn.Module):
    """Wraps a head so the wrapped module's ``forward`` runs its whole training-time pass."""

    def __init__(self, head: Eagle1Head | Eagle3Head, settings: LossSettings) -> None:
        super().__init__()
        self.head = head
        self.settings = settings

    def forward(self, *inputs: torch.Tensor | None) -> Any:
        """:func:`head_pass` of the wrapped head (EAGLE-1 outputs, or EAGLE-3 outputs per step).

        Args:
            *inputs: ``hidden, input_ids, attention_mask, loss_mask, aux`` as :func:`head_pass`.
        """
        return head_pass(self.head, self.settings, *inputs)


def head_pass(
    head: Eagle1Head | Eagle3Head,
    settings: LossSettings,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    aux: torch.Tensor | None = None,
) -> Any:
    """One training-time pass of either head kind (see :mod:`adaspec_eagle.unroll`).

    Returns:
        EAGLE-1: :class:`~adaspec_eagle.unroll.Eagle1Outputs`; EAGLE-3: the head's output per TTT
        step ``[B, T, H]`` (the logits are taken in :func:`head_loss`, at the rows that count).
    """
    if isinstance(head, Eagle3Head):
        return eagle3_unroll_hidden(
            head, aux, input_ids, attention_mask, settings.ttt_steps, noise=settings.noise
        )
    return eagle1_forward(head, hidden, input_ids, loss_mask, attention_mask, noise=settings.noise)


def head_loss(
    head: Eagle1Head | Eagle3Head,
    out: Any,
    feats: TargetFeatures,
    settings: LossSettings,
    ref_out: Any = None,
    ref_head: Eagle1Head | Eagle3Head | None = None,
    target_lm_head: nn.Module | None = None,
) -> EagleLossOutput:
    """The loss of one head pass (AdaSPEC-filtered when ``ref_out`` is given).

    Args:
        head: The head trained.
        out: Its :func:`head_pass`.
        feats: The batch's target features.
        settings: Loss settings.
        ref_out: The reference head's :func:`head_pass` (no gradient), or None.
        ref_head: The reference head (EAGLE-3 takes its logits at the scored rows).
        target_lm_head: The target's output embedding. EAGLE-3 with it computes the target's
            logits and both heads' only at the scored rows (:mod:`adaspec_eagle.rows`: the same
            value, far less work on a large vocabulary); without it ``feats.logits`` is used.

    """
    if isinstance(head, Eagle3Head):
        if ref_out is not None and ref_head is None:
            raise ValueError("an EAGLE-3 ref_out needs its ref_head (for its logits)")
        selective = settings.selective
        if target_lm_head is not None and rows_path_applies(selective):
            rows = target_rows(head, feats.hidden, target_lm_head, feats.loss_mask)
            return eagle3_rows_loss(
                head, out, rows, feats.loss_mask, ref_head if ref_out is not None else None,
                ref_out, selective, decay=settings.decay,
            )  # fmt: skip
        if feats.logits is None:
            raise ValueError("the dense EAGLE-3 loss needs feats.logits (or a target_lm_head)")
        logits = [head.logits(h) for h in out]
        ref_logits = None if ref_out is None else [ref_head.logits(h) for h in ref_out]
        targets = eagle3_targets(head, feats.logits, feats.loss_mask, len(out))
        return eagle3_loss(logits, targets, ref_logits, selective, decay=settings.decay)
    return eagle1_loss(
        out.pred_features,
        out.target_features,
        out.logits,
        out.target_logits,
        out.loss_mask,
        ref_logits=ref_out.logits if ref_out is not None else None,
        settings=settings.selective,
        v_w=settings.v_w,
        p_w=settings.p_w,
    )


class EagleTrainer(Trainer):
    """Trainer of one head; ``target`` (frozen) makes features online, ``ref_head`` filters."""

    def __init__(
        self,
        *args: Any,
        target: nn.Module,
        settings: LossSettings,
        ref_head: Eagle1Head | Eagle3Head | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.target = target.to(self.args.device)
        self.ref_head = None
        if ref_head is not None:
            self.ref_head = ref_head.to(self.args.device).eval()
            self.ref_head.requires_grad_(False)
        self.settings = settings
        self._extra: dict[str, list[float]] = {}

    @property
    def head(self) -> Eagle1Head | Eagle3Head:
        """The head being trained (unwrapped)."""
        return self.accelerator.unwrap_model(self.model).head

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """Target features (online or dumped), head pass, reference pass, loss."""
        head = self.head
        aux_layers = head.aux_layers if isinstance(head, Eagle3Head) else None
        lm_head = self.target.get_output_embeddings() if aux_layers is not None else None
        # EAGLE-3 takes the target's logits at the scored rows only (lm_head given); the
        # dense path and EAGLE-1 read them whole.
        dense = lm_head is None or not rows_path_applies(self.settings.selective)
        feats = features_from_batch(self.target, inputs, aux_layers, with_logits=dense)
        hidden = feats.hidden.to(head.fc.weight.dtype)
        aux = feats.aux.to(head.fc.weight.dtype) if feats.aux is not None else None
        args = (hidden, feats.input_ids, feats.attention_mask, feats.loss_mask, aux)
        out = model(*args)
        ref_out = None
        if self.ref_head is not None and self.settings.selective.k < 1.0:
            with torch.no_grad():
                ref_out = head_pass(self.ref_head, self.settings, *args)
        res = head_loss(head, out, feats, self.settings, ref_out, self.ref_head, lm_head)
        self._extra.setdefault("ploss", []).append(float(res.ploss.detach()))
        if res.vloss is not None:
            self._extra.setdefault("vloss", []).append(float(res.vloss.detach()))
        self._extra.setdefault("acc", []).append(res.acc[0])
        return (res.loss, res) if return_outputs else res.loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the mean ploss / vloss / step-0 accuracy since the last log."""
        if "loss" in logs:
            for key, values in self._extra.items():
                if values:
                    logs[key] = sum(values) / len(values)
            self._extra = {}
        super().log(logs, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            save_head(self.head, output_dir, state_dict=state_dict)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None):
        path = os.path.join(resume_from_checkpoint, WEIGHTS_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: cannot resume the head from it")
        state = load_file(path, device=str(self.args.device))
        self.head.load_state_dict(state, strict=True)
