"""Training-time forward passes of the heads, aligned with the target's outputs.

Alignment (both heads): the target feature at position t (after reading token ``x_t``) and the
embedding of ``x_{t+1}`` go into the head at position t; its output is compared with the target's
feature and distribution at t + 1 (the prediction of ``x_{t+2}``), which counts when ``x_{t+2}``
is a response token. Shifted tensors keep length T, padded with zeros, as EAGLE does.

EAGLE-3's training-time test (TTT) unrolls the head for ``steps`` passes on its own outputs. Step
i at position t reads token ``x_{t+1+i}`` at rotary position ``t + i`` and attends to step 0's
keys at positions <= t plus the keys of steps 1..i at position t (EAGLE-3's ``cache_hidden``
pattern). Here the stock attention does this through a ``DynamicCache`` that grows by T keys per
step and a block mask ``[causal | diag | ... | diag]``, so no attention code is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from adaspec_eagle import arch
from adaspec_eagle.heads import Eagle1Head, Eagle3Head


def shift_left(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x[:, n:]`` padded with zeros back to length T (dim 1)."""
    if n == 0:
        return x
    pad = torch.zeros_like(x[:, : min(n, x.shape[1])])
    return torch.cat((x[:, n:], pad), dim=1)[:, : x.shape[1]]


@dataclass
class Eagle1Outputs:
    """Head outputs and aligned targets for the EAGLE-1/2 loss (all [B, T, ...])."""

    pred_features: torch.Tensor
    logits: torch.Tensor
    target_features: torch.Tensor
    target_logits: torch.Tensor
    loss_mask: torch.Tensor


def eagle1_forward(
    head: Eagle1Head,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    noise: float = 0.0,
) -> Eagle1Outputs:
    """Run an EAGLE-1 head over one batch of target features.

    Args:
        head: The head (attached to its target).
        hidden: Target features fed to the lm_head [B, T, H].
        input_ids: Tokens [B, T].
        loss_mask: 1 on response tokens [B, T].
        attention_mask: Padding mask [B, T].
        noise: Half-width of the uniform noise added to input features (EAGLE: 0.2 * U(-0.5, 0.5)
            ~ ``noise=0.1``); only in training.

    """
    feats_in = hidden.to(head.fc.weight.dtype)
    if noise > 0 and head.training:
        feats_in = feats_in + (torch.rand_like(feats_in) * 2 - 1) * noise
    pred = head(feats_in, input_ids=shift_left(input_ids, 1), attention_mask=attention_mask)
    target_features = shift_left(hidden, 1)
    with torch.no_grad():
        target_logits = head.logits(target_features.to(pred.dtype))
    return Eagle1Outputs(
        pred_features=pred,
        logits=head.logits(pred),
        target_features=target_features.to(pred.dtype),
        target_logits=target_logits,
        loss_mask=shift_left(loss_mask, 2).float(),
    )


def ttt_mask(
    attention_mask: torch.Tensor | None,
    batch: int,
    length: int,
    step: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Additive TTT mask for step ``step``: [B, 1, T, (step + 1) T]."""
    allowed = arch.causal_allowed(attention_mask, batch, length, device)
    eye = torch.eye(length, dtype=torch.bool, device=device)[None, None].expand_as(allowed)
    return arch.additive(torch.cat([allowed] + [eye] * step, dim=-1), dtype)


def eagle3_unroll_hidden(
    head: Eagle3Head,
    aux_hidden: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    steps: int = 7,
    noise: float = 0.0,
) -> list[torch.Tensor]:
    """Unroll an EAGLE-3 head for ``steps`` TTT passes.

    Args:
        head: The head (attached to its target for the embeddings).
        aux_hidden: Concatenated target layers [B, T, kH].
        input_ids: Tokens [B, T].
        attention_mask: Padding mask [B, T].
        steps: Number of TTT passes (EAGLE-3 uses 7).
        noise: Uniform noise half-width on the fused input features (training only).

    Returns:
        The head's output per step, each [B, T, H] (``head.logits`` of it predicts position
        t + 1 + i at step i).

    """
    b, t = input_ids.shape
    hidden = head.fuse(aux_hidden)
    if noise > 0 and head.training:
        hidden = hidden + (torch.rand_like(hidden) * 2 - 1) * noise
    cache = DynamicCache()
    base = torch.arange(t, device=input_ids.device)[None].expand(b, t)
    out = []
    for i in range(steps):
        mask = ttt_mask(attention_mask, b, t, i, hidden.dtype, hidden.device)
        hidden = head.step(
            hidden,
            input_ids=shift_left(input_ids, 1 + i),
            attention_mask=mask,
            position_ids=base + i,
            cache=cache,
        )
        out.append(hidden)
    return out


def eagle3_unroll(
    head: Eagle3Head,
    aux_hidden: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    steps: int = 7,
    noise: float = 0.0,
) -> list[torch.Tensor]:
    """Draft-vocabulary logits per TTT step, each [B, T, V_draft] (step i predicts t + 1 + i).

    :func:`eagle3_unroll_hidden` through ``head.logits``.
    """
    return [
        head.logits(h)
        for h in eagle3_unroll_hidden(head, aux_hidden, input_ids, attention_mask, steps, noise)
    ]


def eagle3_targets(
    head: Eagle3Head, target_logits: torch.Tensor, loss_mask: torch.Tensor, steps: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per TTT step: (target logits restricted to the draft vocab [B, T, V_draft], mask [B, T]).

    The mask is EAGLE-3's ``position_mask``: response positions whose target argmax lies in the
    draft vocabulary.
    """
    out = []
    for i in range(steps):
        logits = shift_left(target_logits, 1 + i)
        in_vocab = head.t2d[logits.argmax(-1)]
        mask = shift_left(loss_mask, 2 + i).float() * in_vocab.float()
        out.append((head.target_to_draft_logits(logits).float(), mask))
    return out
