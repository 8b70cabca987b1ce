"""Verification rules: which drafted path the target accepts, and the token it adds.

Both rules are small pure functions of the target's logits at ``[root] + nodes`` (slot ``0`` is
the root, the last committed token; slot ``i + 1`` is node ``i``) and the draft tree.

Greedy (:func:`greedy_verify`): a node is correct when its token equals the target's argmax at
its parent; the accepted path is the longest root-to-leaf prefix of correct nodes, found for all
paths at once through the retrieve indices. The bonus token is the argmax after the last
accepted node, so the output is token for token the target's greedy output.

Sampling (:func:`sampling_verify`), recursive rejection sampling (SpecInfer; Jeon et al. 2024,
"Recursive Speculative Decoding"; EAGLE's multi-candidate rule). At the current node with target
distribution ``p`` and draft distribution ``q`` (the one its children were drawn from, without
replacement, in sibling order):

1. for each child ``x`` in draw order: accept ``x`` with probability ``min(1, p(x) / q(x))``;
   on rejection set ``p <- normalize(max(p - q, 0))``, then ``q(x) <- 0`` and renormalize ``q``
   (``q`` is now the law of the next draw);
2. if a child is accepted, move to it (fresh ``p`` and ``q`` there) and repeat;
3. otherwise emit one token from the current (residual) ``p``.

Each level then emits a token distributed exactly as the target's ``p``, whatever ``q`` is, as
long as (a) the children really are successive draws without replacement from ``q`` and (b) how
many children a node has does not depend on those children's values. Drafters guarantee both
(see :mod:`adaspec.decoding.tree`). Deterministic top-k children with this rule would NOT be
lossless.

At one node the residual ``p`` and ``q`` after each rejection depend only on the children
rejected before, so :func:`_first_accepted` computes them for all children on the device and
tests every candidate at once: one host read per tree level (which child, if any, was accepted),
not one per candidate. The first passing child in draw order is the one the sequential rule
accepts, with the same uniforms, so the outcome is the sequential rule's exactly.
"""

from __future__ import annotations

import dataclasses

import torch

from adaspec.decoding.sampling import SamplingConfig, logits_to_probs, sample, uniform
from adaspec.decoding.tree import DraftTree, TreeBuffers


@dataclasses.dataclass
class VerifyResult:
    """Outcome of verifying one tree.

    Attributes:
        accepted_nodes: LongTensor ``[m]``: node indices of the accepted path, root side first.
        bonus: LongTensor ``[]``: the target's token after the accepted path (the correction
            token after a rejection, or the bonus token after a fully accepted path).
        rejected_depth: Depth of the first drafted position the target rejected (``m + 1``), or
            None when the accepted path ends at a leaf (nothing was rejected).
    """

    accepted_nodes: torch.Tensor
    bonus: torch.Tensor
    rejected_depth: int | None

    @property
    def num_accepted(self) -> int:
        """Accepted draft tokens."""
        return int(self.accepted_nodes.shape[0])


def greedy_verify(
    tokens: torch.Tensor, logits: torch.Tensor, buffers: TreeBuffers, parents: torch.Tensor
) -> VerifyResult:
    """Longest prefix of a drafted path that matches the target's argmax (vectorized).

    Args:
        tokens: LongTensor ``[n]`` node tokens.
        logits: ``[n + 1, V]`` target logits at ``[root] + nodes``.
        buffers: The tree's buffers.
        parents: LongTensor ``[n]`` parent indices (-1 for the root).

    Returns:
        The :class:`VerifyResult`.
    """
    pred = logits.argmax(-1)  # [n + 1]
    n = tokens.shape[0]
    if n == 0:
        return VerifyResult(tokens[:0], pred[0], None)
    correct = tokens == pred[parents + 1]  # [n]
    paths = buffers.retrieve
    ok = torch.where(paths >= 0, correct[paths.clamp(min=0)], False)
    lengths = ok.long().cumprod(1).sum(1)
    best = lengths.argmax()
    m = lengths[best]
    last_slot = torch.where(m > 0, paths[best, (m - 1).clamp(min=0)] + 1, 0)
    best_i, m_i, slot_i, more = torch.stack(
        [best, m, last_slot, buffers.has_children[last_slot].long()]
    ).tolist()  # the one host sync of the step
    return VerifyResult(paths[best_i, :m_i], pred[slot_i], m_i + 1 if more else None)


def _children_lists(parents: torch.Tensor) -> list[list[int]]:
    """Children of slot 0 (root) and of each node, in sibling order (host-side)."""
    plist = parents.tolist()
    kids: list[list[int]] = [[] for _ in range(len(plist) + 1)]
    for i, p in enumerate(plist):
        kids[p + 1].append(i)
    return kids


def _first_accepted(
    p: torch.Tensor, q: torch.Tensor, children: torch.Tensor, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the candidate tests of one node for all its children at once (no host sync).

    Args:
        p: ``[V]`` target distribution at the node.
        q: ``[V]`` normalized draft distribution the children were drawn from.
        children: LongTensor ``[c]``: the children's tokens, in draw order.
        u: ``[c]`` uniforms, one per candidate.

    Returns:
        ``(index, residual)``: index (LongTensor ``[]``) of the first accepted child or -1, and
        ``p`` after rejecting every child (the residual to emit from when none is accepted).
    """
    tests = []
    live = torch.ones((), dtype=torch.bool, device=p.device)  # q still has mass left
    for j in range(children.shape[0]):
        x = children[j]
        tests.append(live & (u[j] * q[x] < p[x]))
        residual = (p - q).clamp_(min=0)
        total = residual.sum()
        p = torch.where(live & (total > 0), residual / total, p)
        q = q.index_fill(0, x.reshape(1), 0.0)
        q_total = q.sum()
        live = live & (q_total > 0)
        q = torch.where(q_total > 0, q / q_total, q)
    passed = torch.stack(tests)
    index = torch.where(passed.any(), passed.long().argmax(), -1)
    return index, p


def sampling_verify(
    tree: DraftTree,
    logits: torch.Tensor,
    sampling: SamplingConfig,
    generator: torch.Generator | None = None,
) -> VerifyResult:
    """Lossless recursive rejection sampling over a draft tree (see the module docstring).

    Args:
        tree: The draft tree, with ``q`` and ``q_index`` (children drawn from ``q`` without
            replacement, siblings in draw order).
        logits: ``[n + 1, V]`` target logits at ``[root] + nodes``.
        sampling: Target sampling settings (temperature > 0).
        generator: Random stream for acceptance tests and the final draw.

    Returns:
        The :class:`VerifyResult`.

    Raises:
        ValueError: If the tree has nodes but no draft distributions.
    """
    n = tree.num_nodes
    if n and (tree.q is None or tree.q_index is None):
        raise ValueError(
            "sampling verification needs the draft distributions q: the drafter must fill "
            "DraftTree.q and DraftTree.q_index when sampling.temperature > 0"
        )
    kids = _children_lists(tree.parents)
    q_rows = tree.q_index.tolist() if tree.q_index is not None else []
    device = logits.device
    tokens = tree.tokens.to(device)
    width = logits.shape[-1]
    slot, path = 0, []
    p = logits_to_probs(logits[0], sampling)
    rejected_depth = None
    while kids[slot]:
        q = tree.q[q_rows[slot], :width].float().to(device)
        q = q / q.sum()
        children = torch.tensor(kids[slot], dtype=torch.long, device=device)
        draws = uniform((len(kids[slot]),), generator, device)
        index, residual = _first_accepted(p, q, tokens[children], draws)
        j = int(index)  # the one host read of this level
        if j < 0:
            p = residual
            rejected_depth = len(path) + 1
            break
        path.append(kids[slot][j])
        slot = path[-1] + 1
        p = logits_to_probs(logits[slot], sampling)
    bonus = sample(p, generator)
    nodes = torch.tensor(path, dtype=torch.long, device=tree.tokens.device)
    return VerifyResult(nodes, bonus, rejected_depth)
