"""One speculative decoding step as a function of its inputs (gpt-fast's ``speculative_decode``).

:func:`speculative_step` drafts a tree with the drafter, runs the target once over ``[root] +
nodes`` with the tree's 4D mask and tree position ids on top of the target's KV cache, applies
the verification rule and keeps the root and the accepted nodes in that cache. It reads no
decoder state: the loop (:class:`~adaspec.decoding.decoder.SpeculativeDecoder`) owns the cut at
EOS / ``max_new_tokens``, the drafter's commit and the bookkeeping. Timing is the caller's: a
``lap`` callable is called between phases (a no-op returning 0 by default, so nothing is
synchronized unless the caller times).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from adaspec.decoding.cache import keep_positions
from adaspec.decoding.drafter import Drafter, TargetFeatures
from adaspec.decoding.sampling import SamplingConfig
from adaspec.decoding.tree import DraftTree, TreePolicy
from adaspec.decoding.verify import VerifyResult, greedy_verify, sampling_verify


def _untimed() -> float:
    return 0.0


@dataclasses.dataclass
class StepOutcome:
    """What one :func:`speculative_step` did.

    Attributes:
        tree: The drafted tree.
        verdict: The verification result (accepted nodes, bonus token).
        new_tokens: LongTensor ``[m + 1]`` on the target's device: accepted tokens, then the
            bonus/correction token.
        keep_slots: LongTensor ``[m + 1]``: verification slots kept in the target cache (the
            root and the accepted nodes).
        features: Target features at every verification slot (select ``keep_slots`` for the
            drafter), or None when the drafter needs none.
        draft_s: Seconds in ``drafter.propose`` (0 unless ``lap`` times).
        verify_s: Seconds in the target forward (0 unless ``lap`` times).
        overhead_s: Seconds in the rest of the step (0 unless ``lap`` times).
    """

    tree: DraftTree
    verdict: VerifyResult
    new_tokens: torch.Tensor
    keep_slots: torch.Tensor
    features: TargetFeatures | None
    draft_s: float = 0.0
    verify_s: float = 0.0
    overhead_s: float = 0.0


def speculative_step(
    verify_forward: Callable,
    drafter: Drafter,
    policy: TreePolicy,
    sampling: SamplingConfig,
    cache,
    root: torch.Tensor,
    past: int,
    generator: torch.Generator | None = None,
    lap: Callable[[], float] = _untimed,
) -> StepOutcome:
    """One draft-verify step: propose a tree, run the target over it, verify, commit its cache.

    The drafter is not committed here (the caller first cuts the new tokens at EOS /
    ``max_new_tokens``).

    Args:
        verify_forward: ``(ids [1, q], cache, allowed [q, q], positions [1, q]) -> (logits
            [q, V], TargetFeatures or None)``, the target's forward on top of ``cache``.
        drafter: The drafter, in step with the committed sequence.
        policy: Tree shape to draft.
        sampling: Target sampling settings (greedy verification when temperature is 0).
        cache: The target's KV cache, holding the ``past`` committed positions before the root.
        root: LongTensor ``[1, 1]`` on the target's device: the last committed token.
        past: Committed positions in ``cache``.
        generator: Random stream for sampled drafts and verification.
        lap: Called between phases, returns the seconds since its last call (timing).

    Returns:
        The :class:`StepOutcome`; ``cache`` then holds ``past + m + 1`` positions.
    """
    lap()
    tree = drafter.propose(policy, sampling, generator)
    draft_s = lap()
    device = root.device
    buffers = tree.get_buffers()
    ids = torch.cat([root, tree.tokens[None].to(device)], dim=1)
    positions = (past + buffers.position_offsets.to(device))[None]
    overhead = lap()
    logits, feats = verify_forward(ids, cache, buffers.allowed.to(device), positions)
    verify_s = lap()
    if sampling.greedy:
        res = greedy_verify(tree.tokens, logits, buffers, tree.parents)
    else:
        res = sampling_verify(tree, logits, sampling, generator)
    keep_slots = torch.cat([res.accepted_nodes.new_zeros(1), res.accepted_nodes + 1])
    keep_positions(cache, past, keep_slots)
    new = torch.cat([tree.tokens[res.accepted_nodes], res.bonus.reshape(1)]).to(device)
    overhead += lap()
    return StepOutcome(tree, res, new, keep_slots, feats, draft_s, verify_s, overhead)
