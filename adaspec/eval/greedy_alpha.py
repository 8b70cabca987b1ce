"""α of greedy chain speculative decoding from teacher-forced agreement, without decoding.

Under greedy verification the speculative output is the target's greedy continuation ``y``. A
round that starts after ``t`` tokens has the draft propose from the prefix ``y[:t]``; its ``j``-th
proposal matters only if the ``j - 1`` before it matched ``y``, and then the draft's prefix is
``y[:t + j - 1]``, so that proposal is the draft's teacher-forced argmax at that position. The
round therefore accepts ``a`` = the number of consecutive agreements from ``t`` (at most γ) and
commits ``a + 1`` tokens (the target's correction or bonus token), fewer at the end of ``y``.

So one greedy generation of the target and one teacher-forced forward of each draft over it give
the rounds the decoder would take, at a fraction of the cost: no target verification forwards and
no draft decoding loop. The two can differ only where a cached and a whole-sequence forward round
a near-tie differently. ``adaspec eval`` and the pipeline comparison use it with
``alpha_method: teacher_forced``; the default (``decode``) runs the decoder and also checks that
its output equals the target's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ALPHA_METHODS = ("decode", "teacher_forced")


@dataclass(frozen=True)
class SimulatedRound:
    """One round of greedy chain decoding (the ``StepRecord`` fields that α is counted from).

    :func:`adaspec.decoding.acceptance_counts` reads these fields.

    Attributes:
        accepted: Draft tokens accepted.
        committed: Tokens appended (accepted + correction/bonus, cut at the end of ``y``).
        rejected_depth: ``accepted + 1`` when a drafted position was rejected, else None.
        proposed_depth: Draft tokens proposed (γ).
    """

    accepted: int
    committed: int
    rejected_depth: int | None
    proposed_depth: int


def simulate_greedy_chain(agree: Sequence[bool], gamma: int) -> list[SimulatedRound]:
    """The rounds of greedy chain(γ) speculative decoding along the target's continuation.

    Args:
        agree: Per token of the target's greedy continuation (EOS included when it stopped
            there), whether the draft's teacher-forced argmax equals it.
        gamma: Draft tokens proposed per round.

    Returns:
        One :class:`SimulatedRound` per target forward the decoder would run.
    """
    if gamma < 1:
        raise ValueError(f"gamma must be at least 1, got {gamma}")
    agree = [bool(a) for a in agree]
    rounds: list[SimulatedRound] = []
    t, n = 0, len(agree)
    while t < n:
        a = 0
        while a < gamma and t + a < n and agree[t + a]:
            a += 1
        committed = min(a + 1, n - t)
        rejected = a + 1 if a < gamma else None
        rounds.append(SimulatedRound(a, committed, rejected, gamma))
        t += committed
    return rounds
