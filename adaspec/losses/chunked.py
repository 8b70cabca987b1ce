"""Memory-lean AdaSPEC loss from last hidden states and LM-head weights.

:func:`chunked_adaspec_loss` gives the same loss and draft gradients as
:func:`adaspec.losses.adaspec_token_loss` applied to ``hidden @ weight.T + bias`` logits, but
never materialises an ``[N, V]`` tensor: only ``[chunk_size, V]`` blocks live at a time.

* Pass 1 (no grad): per chunk of valid tokens, compute draft, target and reference logits,
  ``L_draft`` and ``L_ref``; then ``ΔL`` and the kept mask (same :func:`select_tokens`).
* Pass 2: per chunk of KEPT tokens, recompute draft and target logits and compute ``L_draft``
  together with its gradient w.r.t. the draft logits (local autograd on a ``[chunk, V]``
  block), folding it straight into ``d hidden``, ``d weight`` and ``d bias`` (fused
  forward/backward, as Liger-Kernel's fused linear cross-entropy). The autograd ``backward``
  only rescales these stored gradients by the incoming scalar gradient.

Compute: pass 1 runs every valid token through the three LM heads once; pass 2 re-runs only
the kept tokens (fraction ``k``) through the draft and target heads, and the draft-head backward
only for kept tokens. Logit matmuls run in the input dtype (as the model's ``lm_head`` would);
everything after them is float32, and weight/bias gradients are accumulated in float32.

Default ``chunk_size=1024``: peak extra memory is about five ``[chunk, V]`` float32 blocks
plus one float32 ``[V, H_draft]`` gradient accumulator, independent of ``N``; measured against
the naive path by ``benchmarks/loss_memory.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from adaspec.losses.output import SelectiveLossOutput, selection_stats
from adaspec.losses.reduction import resolve_denominator
from adaspec.losses.selection import draft_entropy, select_tokens, selection_score
from adaspec.losses.settings import DEFAULT_SETTINGS, SelectiveLossSettings

__all__ = ["ChunkedAdaSPECLoss", "chunked_adaspec_loss"]


def _logits(hidden: Tensor, weight: Tensor, bias: Tensor | None, vocab_size: int) -> Tensor:
    """``[C, H] -> [C, vocab_size]`` logits in the input dtype (only the first columns)."""
    b = bias[:vocab_size] if bias is not None else None
    return F.linear(hidden, weight[:vocab_size], b)


class _KeptDivergenceSum(torch.autograd.Function):
    """``sum_i D(target_i, draft_i)`` over kept rows with fused, chunked gradients."""

    @staticmethod
    def forward(  # noqa: D102
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        t_hidden: Tensor,
        t_weight: Tensor,
        t_bias: Tensor | None,
        vocab_size: int,
        settings: SelectiveLossSettings,
    ) -> Tensor:
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        )
        grad_b = (
            torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        )
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        w = weight[:vocab_size]
        chunk_size = settings.chunk_size
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size]
            z = _logits(h, weight, bias, vocab_size)
            tz = _logits(t_hidden[start : start + chunk_size], t_weight, t_bias, vocab_size)
            with torch.enable_grad():
                zf = z.detach().float().requires_grad_(True)
                per = settings.divergence_of(zf, tz).sum()
                (dz,) = torch.autograd.grad(per, zf)
            total += per.detach()
            del z, tz, zf, per
            dz_lp = dz.to(hidden.dtype)
            if need_h:
                grad_h[start : start + chunk_size] = dz_lp @ w
            if need_w:
                if weight.dtype == torch.float32:
                    grad_w[:vocab_size].addmm_(dz.t(), h)
                else:
                    grad_w[:vocab_size] += (dz_lp.t() @ h).float()
            if need_b:
                grad_b[:vocab_size] += dz.sum(0)
            del dz, dz_lp
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # noqa: D102
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        g = grad_out.float()
        out_h = (grad_h * g.to(grad_h.dtype)) if grad_h is not None else None
        out_w = (grad_w * g).to(w_dtype) if grad_w is not None else None
        out_b = (grad_b * g).to(b_dtype) if grad_b is not None else None
        return out_h, out_w, out_b, None, None, None, None, None


def _check_head(
    name: str,
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    layout: torch.Size,
) -> None:
    if hidden.shape[:-1] != layout:
        raise ValueError(
            f"{name}_hidden must have the token layout of draft_hidden {tuple(layout)}, got "
            f"{tuple(hidden.shape)}"
        )
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"{name}_weight must be [V, H] with H = {name}_hidden.shape[-1] = "
            f"{hidden.shape[-1]}, got {tuple(weight.shape)}; pass lm_head.weight, not its "
            "transpose"
        )
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(
            f"{name}_bias must be [V] = {tuple(weight.shape[:1])}, got {tuple(bias.shape)}"
        )


def _resolve_vocab(weights: dict[str, Tensor], vocab_size: int | None) -> int:
    rows = {name: w.shape[0] for name, w in weights.items()}
    if vocab_size is None:
        if len(set(rows.values())) != 1:
            shapes = ", ".join(f"{n}_weight {tuple(w.shape)}" for n, w in weights.items())
            raise ValueError(
                f"LM-head weights have different vocabulary sizes ({shapes}); pass "
                "vocab_size=<true vocabulary size> to use only the first vocab_size rows "
                "(padded embedding rows are dropped)"
            )
        return next(iter(rows.values()))
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    too_small = {n: r for n, r in rows.items() if r < vocab_size}
    if too_small:
        raise ValueError(
            f"vocab_size={vocab_size} exceeds the rows of {too_small}; pass the smallest true "
            "vocabulary size"
        )
    return vocab_size


def chunked_adaspec_loss(
    draft_hidden: Tensor,
    draft_weight: Tensor,
    target_hidden: Tensor,
    target_weight: Tensor,
    ref_hidden: Tensor | None = None,
    ref_weight: Tensor | None = None,
    valid: Tensor | None = None,
    num_items_in_batch: int | Tensor | None = None,
    group: dist.ProcessGroup | None = None,
    *,
    settings: SelectiveLossSettings = DEFAULT_SETTINGS,
    draft_bias: Tensor | None = None,
    target_bias: Tensor | None = None,
    ref_bias: Tensor | None = None,
    vocab_size: int | None = None,
) -> SelectiveLossOutput:
    """AdaSPEC loss from hidden states, chunked so no ``[N, V]`` tensor is ever built.

    Same semantics as :func:`adaspec.losses.adaspec_token_loss` on the logits
    ``hidden @ weight[:vocab_size].T + bias[:vocab_size]`` of each model.

    Args:
        draft_hidden: ``[N, H_d]`` (or ``[B, T, H_d]``, needed for ``scope="sequence"``) last
            hidden states of the draft, already aligned with ``valid`` (shifted).
        draft_weight: ``[V_d, H_d]`` draft LM-head weight (``lm_head.weight``).
        target_hidden: ``[N, H_t]`` target hidden states (same token layout); no gradient.
        target_weight: ``[V_t, H_t]`` target LM-head weight; no gradient.
        ref_hidden: ``[N, H_r]`` reference hidden states, or ``None`` for plain KD.
        ref_weight: ``[V_r, H_r]`` reference LM-head weight (given iff ``ref_hidden`` is).
        valid: Bool ``[N]`` (token layout) of tokens that count; ``None`` = all.
        num_items_in_batch: Valid tokens of the accumulated batch; ``None`` = valid tokens here.
        group: Process group for ``scope="global"``.
        settings: The loss settings; ``settings.chunk_size`` tokens per ``[chunk, V]`` block.
        draft_bias: ``[V_d]`` LM-head bias or ``None``.
        target_bias: ``[V_t]`` or ``None``.
        ref_bias: ``[V_r]`` or ``None``.
        vocab_size: Use only the first ``vocab_size`` logit columns (drops padded embedding
            rows); ``None`` requires all heads to have the same number of rows.

    Returns:
        :class:`SelectiveLossOutput`; ``loss`` is differentiable w.r.t. ``draft_hidden``,
        ``draft_weight`` and ``draft_bias``; ``per_token`` and ``delta`` are detached.

    """
    if (ref_hidden is None) != (ref_weight is None):
        raise ValueError("ref_hidden and ref_weight must be given together (or both None)")
    layout = draft_hidden.shape[:-1]
    _check_head("draft", draft_hidden, draft_weight, draft_bias, layout)
    _check_head("target", target_hidden, target_weight, target_bias, layout)
    weights = {"draft": draft_weight, "target": target_weight}
    if ref_hidden is not None:
        _check_head("ref", ref_hidden, ref_weight, ref_bias, layout)
        weights["ref"] = ref_weight
    vocab = _resolve_vocab(weights, vocab_size)
    chunk_size = settings.chunk_size

    device = draft_hidden.device
    if valid is None:
        valid = torch.ones(layout, dtype=torch.bool, device=device)
    elif valid.shape != layout:
        raise ValueError(
            f"valid must have the token layout of draft_hidden {tuple(layout)}, got "
            f"{tuple(valid.shape)}"
        )
    valid = valid.to(torch.bool)
    d_h = draft_hidden.reshape(-1, draft_hidden.shape[-1])
    t_h = target_hidden.detach().reshape(-1, target_hidden.shape[-1])
    t_w = target_weight.detach()
    t_b = target_bias.detach() if target_bias is not None else None
    valid_idx = valid.reshape(-1).nonzero().squeeze(1)
    n_valid = valid_idx.numel()

    # Pass 1: per-token L_draft and L_ref of valid tokens, chunk by chunk, no graph.
    draft_l = torch.zeros(n_valid, dtype=torch.float32, device=device)
    ref_l = torch.zeros_like(draft_l) if ref_hidden is not None else None
    entropy_l = torch.zeros_like(draft_l) if settings.selection == "student_entropy" else None
    with torch.no_grad():
        for start in range(0, n_valid, chunk_size):
            rows = valid_idx[start : start + chunk_size]
            tz = _logits(t_h.index_select(0, rows), t_w, t_b, vocab)
            dz = _logits(
                d_h.detach().index_select(0, rows),
                draft_weight.detach(),
                draft_bias.detach() if draft_bias is not None else None,
                vocab,
            )
            draft_l[start : start + rows.numel()] = settings.divergence_of(dz, tz)
            if entropy_l is not None:
                entropy_l[start : start + rows.numel()] = draft_entropy(dz, settings.temperature)
            del dz
            if ref_l is not None:
                r_h = ref_hidden.detach().reshape(-1, ref_hidden.shape[-1]).index_select(0, rows)
                rb = ref_bias.detach() if ref_bias is not None else None
                rz = _logits(r_h, ref_weight.detach(), rb, vocab)
                ref_l[start : start + rows.numel()] = settings.divergence_of(rz, tz)
                del rz
            del tz

    zeros = torch.zeros(valid.numel(), dtype=torch.float32, device=device)
    per_token = zeros.index_copy(0, valid_idx, draft_l).view(layout)
    ref_per_token = delta = entropy = None
    if ref_l is not None:
        ref_per_token = zeros.index_copy(0, valid_idx, ref_l).view(layout)
        delta = per_token - ref_per_token
    if entropy_l is not None:
        entropy = zeros.index_copy(0, valid_idx, entropy_l).view(layout)
    score = selection_score(settings.selection, per_token, ref_per_token, entropy)
    kept = (
        valid.clone()
        if score is None
        else select_tokens(score, valid, settings.k, settings.scope, group)
    )

    # Pass 2: loss (and fused gradients) over kept tokens only.
    kept_idx = kept.reshape(-1).nonzero().squeeze(1)
    draft_params = (draft_hidden, draft_weight, draft_bias)
    needs_grad = torch.is_grad_enabled() and any(
        p is not None and p.requires_grad for p in draft_params
    )
    if needs_grad:
        total = _KeptDivergenceSum.apply(
            d_h.index_select(0, kept_idx),
            draft_weight,
            draft_bias,
            t_h.index_select(0, kept_idx),
            t_w,
            t_b,
            vocab,
            settings,
        )
    else:
        total = per_token.reshape(-1).index_select(0, kept_idx).sum()
    denom = resolve_denominator(settings.reduction, kept, num_items_in_batch, n_valid, device)
    loss = total / denom
    stats = selection_stats(per_token, ref_per_token, valid, kept)
    return SelectiveLossOutput(loss=loss, kept=kept, per_token=per_token, delta=delta, stats=stats)


class ChunkedAdaSPECLoss(nn.Module):
    """Module form of :func:`chunked_adaspec_loss`: the settings are fixed at construction.

    Args:
        settings: The loss settings (``settings.chunk_size`` tokens per ``[chunk, V]`` block).
        vocab_size: True vocabulary size when LM heads are padded (``None``: all rows).

    """

    def __init__(self, settings: SelectiveLossSettings, vocab_size: int | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.vocab_size = vocab_size

    def extra_repr(self) -> str:  # noqa: D102
        return f"{self.settings!r}, vocab_size={self.vocab_size}"

    def forward(self, *args: Any, **kwargs: Any) -> SelectiveLossOutput:
        """:func:`chunked_adaspec_loss` with this Module's ``settings`` and ``vocab_size``.

        Takes the function's other arguments, in its order: the six head tensors, ``valid``,
        ``num_items_in_batch``, ``group``, and the biases by keyword.
        """
        return chunked_adaspec_loss(
            *args, settings=self.settings, vocab_size=self.vocab_size, **kwargs
        )
