"""Drop-in AdaSPEC filtering for existing EAGLE training loops (SafeAILab/EAGLE, SpecForge).

EAGLE's token loss is the soft cross-entropy ``-sum_v p_v log q_v`` of the head's distribution q
against the target's p. It differs from ``KL(p || q)`` by the target entropy, a constant with
respect to the head, so for a reference head r::

    ΔL = CE(p, q) - CE(p, r) = KL(p || q) - KL(p || r)

and AdaSPEC's selection by ΔL (computed by :func:`adaspec.losses.adaspec_token_loss`) is the same
whichever of the two is used. :func:`adaspec_filtered_loss` therefore keeps EAGLE's soft-CE value
and normalisation, only restricted to the kept tokens: with ``k = 1`` (or no reference) it returns
*exactly* EAGLE's loss (to float rounding), so switching it on changes nothing until ``k < 1``.

Cost. With the default forward-KL selection ΔL is taken from the soft cross-entropies the loss
needs anyway (the reference's under ``no_grad``, both detached) and handed to the shared
:func:`adaspec.losses.select_tokens`; with ``k = 1`` or no reference nothing beyond EAGLE's own
soft cross-entropy is computed and nothing is copied to the host (:attr:`FilteredLoss.stats` is
computed only when read). Other divergences or temperatures go through
:func:`adaspec.losses.adaspec_token_loss`.

See docs/integration.md for the lines to change in each repository.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from adaspec.losses import SelectiveLossSettings, adaspec_token_loss, select_tokens
from adaspec.losses.output import selection_stats
from adaspec.losses.settings import DEFAULT_SETTINGS

NORMALIZATIONS = ("mask", "positions")
TOKEN_LOSSES = ("soft_ce", "divergence")


@dataclass
class FilteredLoss:
    """Everything :func:`filtered_token_loss` computed ([B, T] tensors).

    :attr:`stats` (AdaSPEC's logging statistics, divergences as forward KL) is computed on first
    access: it costs one device-to-host copy, which a training loop that never reads it does not
    pay.
    """

    loss: Tensor
    kept: Tensor
    valid: Tensor
    per_token: Tensor
    delta: Tensor | None
    _stats: dict[str, float] | None = field(default=None, repr=False)
    _ce: tuple[Tensor, Tensor | None, Tensor] | None = field(default=None, repr=False)

    @property
    def stats(self) -> dict[str, float]:
        """``kept_fraction``, ``mean_delta``, ``mean_draft_loss``, ``mean_ref_loss``, counts."""
        if self._stats is None:
            ce, ref_ce, probs = self._ce
            with torch.no_grad():
                logp = torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))
                entropy = -torch.where(probs > 0, probs * logp, torch.zeros_like(probs)).sum(-1)
                zero = torch.zeros_like(entropy)
                kl = torch.where(self.valid, ce.detach() - entropy, zero)
                ref_kl = None if ref_ce is None else torch.where(self.valid, ref_ce - entropy, zero)
            self._stats = selection_stats(kl, ref_kl, self.valid, self.kept)
            self._ce = None
        return self._stats


def soft_cross_entropy(logits: Tensor, target_p: Tensor) -> Tensor:
    """EAGLE's per-token soft cross-entropy ``-sum_v p_v log softmax(logits)_v`` in float32.

    Args:
        logits: Head logits [..., V].
        target_p: Target probabilities [..., V] (zeros allowed).

    Returns:
        Per-token values [...].

    """
    logq = F.log_softmax(logits.float(), dim=-1)
    p = target_p.float()
    return -(torch.where(p > 0, p * logq, torch.zeros_like(logq))).sum(-1)


def _valid_mask(loss_mask: Tensor, shape: torch.Size) -> Tensor:
    mask = loss_mask
    if mask.dim() == len(shape) + 1 and mask.shape[-1] == 1:
        mask = mask.squeeze(-1)
    if mask.shape != shape:
        raise ValueError(
            f"loss_mask has shape {tuple(loss_mask.shape)}; expected {tuple(shape)} or "
            f"{(*shape, 1)} (one entry per head-logit row)"
        )
    return mask > 0


def filtered_token_loss(
    head_logits: Tensor,
    target: Tensor,
    loss_mask: Tensor,
    ref_logits: Tensor | None = None,
    settings: SelectiveLossSettings = DEFAULT_SETTINGS,
    *,
    target_is_probs: bool = False,
    normalization: str = "mask",
    token_loss: str = "soft_ce",
    group: object = None,
) -> FilteredLoss:
    """AdaSPEC-filtered EAGLE token loss with all intermediate tensors.

    Args: see :func:`adaspec_filtered_loss`; ``token_loss="divergence"`` uses the AdaSPEC
    divergence itself (``settings.divergence``/``temperature``) as the per-token value instead of
    EAGLE's soft cross-entropy.

    Returns:
        :class:`FilteredLoss`.

    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if token_loss not in TOKEN_LOSSES:
        raise ValueError(f"token_loss must be one of {TOKEN_LOSSES}, got {token_loss!r}")
    if target.shape != head_logits.shape:
        raise ValueError(
            f"target has shape {tuple(target.shape)} but head_logits {tuple(head_logits.shape)}; "
            "for EAGLE-3 restrict the target to the draft vocabulary first (target[..., t2d])"
        )
    if settings.selection != "delta":
        raise ValueError(
            f"the EAGLE plug-in ranks tokens by ΔL only, got selection={settings.selection!r}: "
            "use selection='delta'"
        )
    k, scope = settings.k, settings.scope
    valid = _valid_mask(loss_mask, head_logits.shape[:-1])
    if target_is_probs:
        probs = target.detach().float()
        teacher_logits = None
    else:
        teacher_logits = target.detach().float()
        probs = torch.softmax(teacher_logits, dim=-1)
    use_ref = ref_logits is not None and k < 1.0
    ce = soft_cross_entropy(head_logits, probs)
    ref_ce = delta = stats = None
    per_token = ce
    if (
        token_loss == "soft_ce"
        and settings.divergence == "forward_kl"
        and settings.temperature == 1
    ):
        # ΔL = KL(p||q) - KL(p||r) = CE(p, q) - CE(p, r): the cross-entropies already at hand.
        if use_ref:
            with torch.no_grad():
                ref_ce = soft_cross_entropy(ref_logits.detach(), probs)
                delta = torch.where(valid, ce.detach() - ref_ce, torch.zeros_like(ref_ce))
            kept = select_tokens(delta, valid, k, scope=scope, group=group)
        else:
            kept = valid
    else:  # another divergence (or temperature) measures ΔL, or is itself the token loss
        if teacher_logits is None:
            teacher_logits = torch.log(probs)  # -inf where p = 0; token_divergence supports it
        ref = ref_logits.detach() if use_ref else None
        # Only kept/delta/per_token/stats are used: the value is normalised EAGLE's way below.
        out = adaspec_token_loss(head_logits, teacher_logits, ref, valid, settings, group=group)
        kept, delta, stats = (out.kept if use_ref else valid), out.delta, dict(out.stats)
        if token_loss == "divergence":
            per_token = out.per_token
    total = torch.where(kept, per_token, torch.zeros_like(per_token)).sum()
    n_kept = kept.sum().float()
    if normalization == "mask":  # EAGLE-1/2 main.py: sum / (mask.sum() + 1e-5)
        loss = total / (n_kept + 1e-5)
    else:  # EAGLE-3 cnets.py / SpecForge: sum / (B * T), rescaled to the kept fraction
        scale = valid.sum().float() / n_kept.clamp_min(1.0) if use_ref else 1.0
        loss = total / valid.numel() * scale
    return FilteredLoss(loss, kept, valid, per_token, delta, stats, (ce, ref_ce, probs))


def adaspec_filtered_loss(
    head_logits: Tensor,
    target_logits_or_probs: Tensor,
    loss_mask: Tensor,
    ref_logits: Tensor | None = None,
    settings: SelectiveLossSettings = DEFAULT_SETTINGS,
    *,
    target_is_probs: bool = False,
    normalization: str = "mask",
    token_loss: str = "soft_ce",
    group: object = None,
) -> tuple[Tensor, Tensor]:
    """EAGLE's soft cross-entropy, restricted to the tokens AdaSPEC keeps.

    A token is kept when ``ΔL = L(head) - L(reference head)`` is in the top ``k`` fraction of the
    valid tokens (``adaspec.losses.select_tokens``). With ``k = 1`` or ``ref_logits=None`` every
    valid token is kept and the value is exactly EAGLE's.

    Args:
        head_logits: Draft-head logits [B, T, V] (any float dtype; the gradient flows here).
        target_logits_or_probs: Target logits [B, T, V], or probabilities (``target_p`` in
            EAGLE's loops) with ``target_is_probs=True``.
        loss_mask: [B, T] or [B, T, 1]; nonzero = the token counts (EAGLE's ``loss_mask`` or
            EAGLE-3's ``position_mask``).
        ref_logits: Reference head logits [B, T, V] (no gradient), or None.
        settings: The shared AdaSPEC loss settings (:class:`adaspec.losses.SelectiveLossSettings`):
            ``k``, the fraction of valid tokens kept (paper: 0.4); the divergence ΔL is measured
            with (``"forward_kl"`` = selection by the soft-CE gap, see the module docstring) and
            its temperature and beta; the scope, ``"batch"`` (paper), ``"sequence"`` or
            ``"global"`` (all data-parallel ranks). Its selection must be ``"delta"``.
        target_is_probs: The target is given as probabilities.
        normalization: ``"mask"``: divide by the kept-token count + 1e-5 (EAGLE-1/2
            ``compute_loss``); ``"positions"``: divide by B * T (EAGLE-3 ``cnets.py``, SpecForge),
            times (valid / kept) so the per-token scale does not shrink with k.
        token_loss: ``"soft_ce"`` (EAGLE's) or ``"divergence"`` (AdaSPEC's divergence).
        group: Process group for ``scope="global"``.

    Returns:
        ``(loss, kept_mask)``: a scalar, and a bool mask in ``loss_mask``'s layout.

    """
    res = filtered_token_loss(
        head_logits,
        target_logits_or_probs,
        loss_mask,
        ref_logits,
        settings,
        target_is_probs=target_is_probs,
        normalization=normalization,
        token_loss=token_loss,
        group=group,
    )
    kept = res.kept.reshape(loss_mask.shape) if loss_mask.dim() == 3 else res.kept
    return res.loss, kept
