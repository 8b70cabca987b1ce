"""Acceptance bookkeeping over decoding steps, and the chain rounds used to measure alpha.

:func:`acceptance_counts` is a pure function of :class:`~adaspec.decoding.decoder.StepRecord`
-like objects (anything with ``accepted``, ``committed`` and ``rejected_depth``). Per round:

* accepted tokens counted = ``min(accepted, committed)``: draft tokens past an EOS or the
  ``max_new_tokens`` cut are not part of the output and are not counted;
* at most one rejection, counted only when the verifier rejected a drafted position
  (``rejected_depth`` is not None) and the step got as far as committing the target's
  correction token (``committed > accepted``). A round that accepted all its drafted tokens, or
  that stopped at an EOS inside its accepted tokens, has no rejection;
* the bonus/correction token itself is never counted.

``alpha = accepted / (accepted + rejected)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from adaspec.decoding.sampling import SamplingConfig


def acceptance_counts(records: Iterable) -> dict:
    """Aggregate acceptance statistics over decoding rounds.

    Args:
        records: Step records (``accepted``, ``committed``, ``rejected_depth`` attributes).

    Returns:
        Dict with ``rounds``, ``accepted``, ``rejected``, ``alpha`` (NaN when nothing was
        drafted), ``committed``, ``tau`` (tokens committed per round), and per depth
        ``attempts_by_depth`` / ``accepted_by_depth`` / ``alpha_by_depth`` (index 0 = depth 1;
        an attempt at depth d is a round that reached d with a counted acceptance or rejection).
    """
    rounds = accepted = rejected = committed = 0
    attempts_by_depth: list[int] = []
    accepted_by_depth: list[int] = []
    for rec in records:
        rounds += 1
        committed += rec.committed
        acc = min(rec.accepted, rec.committed)
        rej = int(rec.rejected_depth is not None and rec.committed > rec.accepted)
        accepted += acc
        rejected += rej
        reach = acc + rej
        while len(attempts_by_depth) < reach:
            attempts_by_depth.append(0)
            accepted_by_depth.append(0)
        for d in range(reach):
            attempts_by_depth[d] += 1
            accepted_by_depth[d] += int(d < acc)
    total = accepted + rejected
    return {
        "rounds": rounds,
        "accepted": accepted,
        "rejected": rejected,
        "alpha": accepted / total if total else float("nan"),
        "committed": committed,
        "tau": committed / rounds if rounds else float("nan"),
        "attempts_by_depth": attempts_by_depth,
        "accepted_by_depth": accepted_by_depth,
        "alpha_by_depth": [
            a / t if t else float("nan") for a, t in zip(accepted_by_depth, attempts_by_depth)
        ],  # fmt: skip
    }


def chain_rounds(
    target,
    draft,
    input_ids: torch.Tensor,
    gamma: int,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int] | None = None,
    sampling: SamplingConfig | None = None,
    generator: torch.Generator | None = None,
):
    """Decode one prompt with chain speculative decoding and return its rounds.

    Feed ``result.steps`` (or the steps of many prompts) to :func:`acceptance_counts` for alpha.

    Args:
        target: Target causal LM.
        draft: Standalone draft causal LM (same tokenizer).
        input_ids: LongTensor ``[1, L]``.
        gamma: Draft tokens per round.
        max_new_tokens: Exact cap on generated tokens.
        eos_token_id: Id or ids that end generation.
        sampling: Target sampling (greedy by default).
        generator: Random stream.

    Returns:
        The :class:`~adaspec.decoding.decoder.DecodeResult` (rounds in ``.steps``).
    """
    from adaspec.decoding.decoder import SpeculativeDecoder
    from adaspec.decoding.draft_model import DraftModelDrafter
    from adaspec.decoding.tree import chain

    decoder = SpeculativeDecoder(target, DraftModelDrafter(draft), tree=chain(gamma),
                                 sampling=sampling)  # fmt: skip
    return decoder.generate(input_ids, max_new_tokens, eos_token_id, generator)
