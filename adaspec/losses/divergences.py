"""Per-token divergences between a student (draft) and a teacher (target) distribution.

Every function here maps logits ``[..., V]`` to one value per token ``[...]`` in float32 and
does no reduction over tokens; reducing (masking, selecting, averaging) is a separate step
(see :mod:`adaspec.losses.reduction`), as in torchtune's ``kd_losses``.

Notation: ``p`` is the teacher distribution ``softmax(teacher_logits / T)``, ``q`` the student
distribution ``softmax(student_logits / T)``.

Temperature convention (standard knowledge-distillation practice, Hinton et al. 2015): the
KL-family divergences (``"forward_kl"``, ``"reverse_kl"``, ``"jsd"``) are multiplied by ``T**2``
so that gradient magnitudes do not shrink as ``T`` grows; ``"tv"`` is a bounded distance in
``[0, 1]`` and is never rescaled. With the default ``T = 1`` all kinds are the plain textbook
quantities, which is what AdaSPEC's official implementation uses.

Teacher logits equal to ``-inf`` (masked vocabulary entries) are supported: entries with zero
probability contribute exactly zero (``0 * log 0 = 0``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

DIVERGENCES: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd", "tv")

__all__ = ["DIVERGENCES", "check_divergence", "check_temperature_beta", "token_divergence"]


def check_divergence(kind: str) -> str:
    """Validate a divergence name.

    Args:
        kind: One of :data:`DIVERGENCES`.

    Returns:
        ``kind`` unchanged.

    Raises:
        ValueError: If ``kind`` is not a known divergence.

    """
    if kind not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {kind!r}")
    return kind


def check_temperature_beta(temperature: float, beta: float) -> None:
    """Validate the softmax temperature (finite, ``> 0``) and the JSD weight (in ``[0, 1]``)."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}; use 1.0 for plain KD")
    if not (isinstance(beta, (int, float)) and 0.0 <= beta <= 1.0):
        raise ValueError(
            f"beta must be in [0, 1], got {beta!r}; 0.5 is the symmetric Jensen-Shannon divergence"
        )


def _kl_from_logprobs(log_a: Tensor, log_b: Tensor) -> Tensor:
    """KL(a || b) per row from log-probabilities ``[..., V]`` -> ``[...]``.

    Entries where ``a`` is exactly zero contribute zero, even when ``log_a`` is ``-inf``.
    """
    a = log_a.exp()
    terms = torch.where(a > 0, a * (log_a - log_b), torch.zeros((), dtype=a.dtype, device=a.device))
    return terms.sum(-1)


def _check_logit_shapes(student_logits: Tensor, teacher_logits: Tensor) -> None:
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise ValueError(
            "student and teacher logits must have the same vocabulary size (last dim), got "
            f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)}; "
            "if one model pads its embedding matrix, slice the padded columns off first, e.g. "
            "logits[..., :vocab_size] (or pass vocab_size= to chunked_adaspec_loss)"
        )
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student and teacher logits must have the same shape, got student "
            f"{tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)}"
        )


def token_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    kind: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
) -> Tensor:
    """Per-token divergence between teacher and student next-token distributions.

    Kinds (``p`` teacher, ``q`` student, both at temperature ``T``):

    * ``"forward_kl"``: ``KL(p || q) = sum_v p_v (log p_v - log q_v)`` (AdaSPEC's choice),
      times ``T**2``.
    * ``"reverse_kl"``: ``KL(q || p)``, times ``T**2``.
    * ``"jsd"``: generalized Jensen-Shannon divergence as in GKD (Agarwal et al. 2024) and TRL's
      ``generalized_jsd_loss``: with ``m = beta * p + (1 - beta) * q``,
      ``beta * KL(p || m) + (1 - beta) * KL(q || m)``, times ``T**2``. The un-normalised formula
      vanishes at the edges, so the edges are defined by their normalised limits (as TRL does):
      ``beta = 0`` gives ``KL(p || q)`` (forward KL) and ``beta = 1`` gives ``KL(q || p)``
      (reverse KL). ``beta = 0.5`` is the usual symmetric JSD (at most ``log 2``).
    * ``"tv"``: total variation ``0.5 * sum_v |p_v - q_v|`` in ``[0, 1]``, never scaled by ``T``.

    Args:
        student_logits: Student (draft) logits ``[..., V]``, any float dtype; gradients flow.
        teacher_logits: Teacher (target) logits ``[..., V]``, same shape. Not detached here:
            detach the teacher yourself if it should receive no gradient.
        kind: One of :data:`DIVERGENCES`.
        temperature: ``T > 0``; divides both logits before the softmax.
        beta: JSD mixture weight of the teacher, in ``[0, 1]`` (only used by ``"jsd"``).

    Returns:
        Per-token divergence ``[...]`` in float32 (math is done in float32 whatever the input
        dtype).

    Raises:
        ValueError: On an unknown ``kind``, bad ``temperature``/``beta``, or logits whose shapes
            differ (the message names both shapes).

    """
    check_divergence(kind)
    check_temperature_beta(temperature, beta)
    _check_logit_shapes(student_logits, teacher_logits)
    return divergence_unchecked(student_logits, teacher_logits, kind, temperature, beta)


def divergence_unchecked(
    student_logits: Tensor, teacher_logits: Tensor, kind: str, temperature: float, beta: float
) -> Tensor:
    """:func:`token_divergence` for settings validated already (no checks: a loss's inner loop)."""
    s = student_logits.float()
    t = teacher_logits.float()
    if temperature != 1.0:
        s = s / temperature
        t = t / temperature
    log_q = F.log_softmax(s, dim=-1)
    log_p = F.log_softmax(t, dim=-1)
    scale = float(temperature) ** 2

    if kind == "tv":
        return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1)
    if kind == "forward_kl" or (kind == "jsd" and beta == 0.0):
        out = _kl_from_logprobs(log_p, log_q)
    elif kind == "reverse_kl" or (kind == "jsd" and beta == 1.0):
        out = _kl_from_logprobs(log_q, log_p)
    else:  # jsd, 0 < beta < 1
        log_m = torch.logsumexp(
            torch.stack([log_p + math.log(beta), log_q + math.log(1.0 - beta)]), dim=0
        )
        out = beta * _kl_from_logprobs(log_p, log_m) + (1.0 - beta) * _kl_from_logprobs(
            log_q, log_m
        )
    return out * scale if scale != 1.0 else out
