"""Tree growth as pure functions: static trees and EAGLE-2 dynamic trees from an ``expand`` callable.

A drafter grows a tree level by level. The root's children come from the drafter's logits at the
root; every deeper level needs one draft forward over the nodes being expanded, which is the only
drafter-specific part. :func:`grow_static` and :func:`grow_dynamic` do the rest (choosing
children, scoring, pruning, building the :class:`~adaspec.decoding.tree.DraftTree`) and call the
drafter back through ``expand(level)`` with an :class:`Expansion`:

* the nodes are fed after every node fed earlier in this tree, in order; a node's *slot* is its
  index in that feeding order (slot ``s`` is cache position ``committed + s`` of a drafter that
  appends fed nodes to its KV cache);
* ``allowed[i, j]`` says whether new node ``i`` may attend to fed slot ``j`` (its ancestors and
  itself); the committed prefix is visible to every node;
* ``parent_slots`` gives each node's parent's slot (-1 for children of the root), so a drafter
  that conditions on its own outputs (EAGLE) looks the parent's output up directly.

The growers return the tree and ``slots`` (``[n]``, -1 for nodes that were never fed), which a
drafter keeps to reuse the KV entries of accepted nodes on commit. They hold no state between
calls and touch no drafter attribute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from adaspec.decoding.sampling import SamplingConfig, logits_to_probs, sample_without_replacement
from adaspec.decoding.tree import DraftTree, DynamicTree, StaticTree


@dataclasses.dataclass(frozen=True)
class Expansion:
    """One level of tree nodes for the drafter to run a forward over.

    Attributes:
        tokens: LongTensor ``[k]``: the nodes' tokens.
        depths: LongTensor ``[k]``: their depths (1 for children of the root).
        parent_slots: LongTensor ``[k]``: slot of each node's parent, -1 for the root.
        allowed: Bool ``[k, f + k]``: attention pattern over the ``f`` slots fed before and these
            ``k`` nodes (slots ``f .. f + k - 1``).
    """

    tokens: torch.Tensor
    depths: torch.Tensor
    parent_slots: torch.Tensor
    allowed: torch.Tensor

    @property
    def first_slot(self) -> int:
        """Slot of the first node of this level (nodes fed before it)."""
        return int(self.allowed.shape[1] - self.tokens.shape[0])


#: ``expand(level) -> logits [k, V]``: the draft's logits after each node of the level.
Expand = Callable[[Expansion], torch.Tensor]


class _Feeder:
    """Feeding order of one tree: assigns slots and runs ``expand`` over each level.

    ``tokens``, ``parents``, ``depths`` and ``anc`` are the grower's node tensors (``[n]``,
    ``[n]``, ``[n]``, ``[n, n]``), read when a level is fed (a grower may fill them in place).
    """

    def __init__(self, root_logits: torch.Tensor, expand: Expand, tokens, parents, depths, anc):
        self.root_logits, self.expand = root_logits, expand
        self.tokens, self.parents, self.depths, self.anc = tokens, parents, depths, anc
        self.slots = torch.full_like(tokens, -1)
        self.fed: list[torch.Tensor] = []
        self.count = 0

    def logits(self, depth: int, nodes: torch.Tensor) -> torch.Tensor:
        """Draft logits ``[k, V]`` after ``nodes``: the root's at depth 1, else one forward."""
        if depth == 1:
            return self.root_logits[None]
        fed_all = torch.cat(self.fed + [nodes])
        k = nodes.shape[0]
        self.slots[nodes] = torch.arange(self.count, self.count + k, device=nodes.device)
        self.fed.append(nodes)
        self.count += k
        par = self.parents[nodes]
        parent_slots = torch.where(par >= 0, self.slots[par.clamp(min=0)], -1)
        anc = self.anc[nodes][:, fed_all]
        return self.expand(Expansion(self.tokens[nodes], self.depths[nodes], parent_slots, anc))


class _QRows:
    """The ``q`` rows of a sampled tree, and the row of each expanded node (+1; 0 the root)."""

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.rows: list[torch.Tensor] = []
        self.count = 0
        self.index = torch.full((capacity + 1,), -1, dtype=torch.long, device=device)

    def add(self, q: torch.Tensor | None, nodes: torch.Tensor) -> None:
        """Record ``q`` (``[k, V]``, None when greedy), the distributions after ``nodes``."""
        if q is None:
            return
        self.rows.append(q)
        self.index[nodes + 1] = torch.arange(self.count, self.count + q.shape[0], device=q.device)
        self.count += q.shape[0]

    def stacked(self) -> torch.Tensor | None:
        """All rows ``[r, V]``, or None for a greedy tree."""
        return torch.cat(self.rows) if self.rows else None


def draft_children(
    logits: torch.Tensor,
    width: int,
    sampling: SamplingConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Children of each row of draft logits.

    Greedy: the ``width`` most probable tokens, by decreasing probability. Sampling: ``width``
    draws without replacement from the sampling distribution ``q``, in draw order.

    Args:
        logits: ``[k, V]`` draft logits.
        width: Children per row.
        sampling: The target's sampling settings.
        generator: Random stream for sampled children.

    Returns:
        ``(tokens [k, w], log q [k, w], valid [k, w], q [k, V] or None)``; ``valid`` is False for
        draws past the support of ``q``.
    """
    if sampling.greedy:
        logp = torch.log_softmax(logits.float(), dim=-1)
        top = logp.topk(width, dim=-1)
        return top.indices, top.values, torch.ones_like(top.indices, dtype=torch.bool), None
    q = logits_to_probs(logits, sampling)
    toks, valid = sample_without_replacement(q, width, generator)
    return toks, torch.log(q.gather(-1, toks)), valid, q


def grow_static(
    policy: StaticTree,
    root_logits: torch.Tensor,
    expand: Expand,
    sampling: SamplingConfig,
    generator: torch.Generator | None = None,
) -> tuple[DraftTree, torch.Tensor]:
    """Grow a static tree (paths of top-k ranks; a chain is the width-1 case).

    Args:
        policy: The tree shape.
        root_logits: ``[V]`` draft logits at the root (the last committed token).
        expand: The drafter's forward over one level (see the module docstring).
        sampling: Greedy: children are top-k. Otherwise drawn without replacement; nodes drawn
            past the support of ``q`` are pruned with their descendants.
        generator: Random stream for sampled drafts.

    Returns:
        ``(tree, slots)``.
    """
    device = root_logits.device
    st = policy.tensors(device)
    buffers = st["buffers"]
    parents, anc, depths = st["parents"], buffers.ancestors, buffers.depths
    n = policy.num_nodes
    tokens = torch.zeros(n, dtype=torch.long, device=device)
    logq = torch.zeros(n, device=device)
    valid = torch.ones(n, dtype=torch.bool, device=device)
    feeder = _Feeder(root_logits, expand, tokens, parents, depths, anc)
    q_rows = _QRows(n, device)
    for d, level in enumerate(st["levels"], start=1):
        nodes_up = level["expand"]  # the distinct parents of this level's nodes (-1: root)
        logits = feeder.logits(d, nodes_up)
        toks, lq, ok, q = draft_children(logits, level["width"], sampling, generator)
        q_rows.add(q, nodes_up)
        nodes, pp, rk = level["nodes"], level["parent_pos"], level["ranks"]
        tokens[nodes], logq[nodes], valid[nodes] = toks[pp, rk], lq[pp, rk], ok[pp, rk]
    tree = DraftTree(
        tokens, parents, depths, logq.exp(), q_rows.stacked(),
        q_rows.index if q_rows.rows else None,
        buffers,
    )  # fmt: skip
    if not sampling.greedy and not bool(valid.all()):
        keep = (~((~valid)[None, :] & anc).any(1)).nonzero().squeeze(1)
        return tree.select(keep), feeder.slots[keep]
    return tree, feeder.slots


def grow_dynamic(
    policy: DynamicTree,
    root_logits: torch.Tensor,
    expand: Expand,
    sampling: SamplingConfig,
    generator: torch.Generator | None = None,
) -> tuple[DraftTree, torch.Tensor]:
    """Grow an EAGLE-2 dynamic tree: ``depth`` steps expanding the ``top_k`` best frontier nodes.

    Args:
        policy: Depth, top-k and kept node count.
        root_logits: ``[V]`` draft logits at the root.
        expand: The drafter's forward over one level (see the module docstring).
        sampling: Greedy keeps the ``total_tokens`` nodes of highest cumulative log-probability;
            sampling keeps a breadth-first prefix of the valid nodes (see
            :class:`~adaspec.decoding.tree.DynamicTree`).
        generator: Random stream for sampled drafts.

    Returns:
        ``(tree, slots)``.
    """
    device = root_logits.device
    k, depth = min(policy.top_k, root_logits.shape[-1]), policy.depth
    cap = k + (depth - 1) * k * k
    tokens = torch.zeros(cap, dtype=torch.long, device=device)
    parents = torch.full((cap,), -1, dtype=torch.long, device=device)
    depths = torch.ones(cap, dtype=torch.long, device=device)
    logq = torch.zeros(cap, device=device)
    score = torch.zeros(cap, device=device)
    valid = torch.ones(cap, dtype=torch.bool, device=device)
    anc = torch.zeros(cap, cap, dtype=torch.bool, device=device)
    feeder = _Feeder(root_logits, expand, tokens, parents, depths, anc)
    q_rows = _QRows(cap, device)
    count, frontier = 0, torch.full((1,), -1, dtype=torch.long, device=device)
    for d in range(1, depth + 1):
        toks, lq, ok, q = draft_children(feeder.logits(d, frontier), k, sampling, generator)
        q_rows.add(q, frontier)
        new = torch.arange(count, count + toks.numel(), device=device)
        par = frontier.repeat_interleave(k)
        tokens[new], parents[new], depths[new] = toks.reshape(-1), par, d
        logq[new] = lq.reshape(-1)
        parent_score = torch.where(par >= 0, score[par.clamp(min=0)], 0.0)
        parent_ok = torch.where(par >= 0, valid[par.clamp(min=0)], True)
        valid[new] = ok.reshape(-1) & parent_ok
        score[new] = torch.where(valid[new], parent_score + logq[new], float("-inf"))
        anc[new] = torch.where((par >= 0)[:, None], anc[par.clamp(min=0)], False)
        anc[new, new] = True
        # Expand the best nodes next, in decreasing score (keeps sibling groups ordered).
        frontier = new[score[new].topk(min(k, new.numel())).indices]
        count += new.numel()
    if sampling.greedy:
        order = torch.sort(score[:count], descending=True, stable=True).indices
        keep = order[: policy.total_tokens].sort().values
    else:
        keep = valid[:count].nonzero().squeeze(1)[: policy.total_tokens]
    # Remap to the kept nodes (ancestor-closed in both cases).
    remap = torch.full((cap + 1,), -1, dtype=torch.long, device=device)
    remap[keep + 1] = torch.arange(keep.shape[0], device=device)
    tree = DraftTree(
        tokens[keep],
        remap[parents[keep] + 1],
        depths[keep],
        logq[keep].exp(),
        q_rows.stacked(),
        torch.cat([q_rows.index[:1], q_rows.index[keep + 1]]) if q_rows.rows else None,
    )
    return tree, feeder.slots[keep]


def grow_tree(
    policy: StaticTree | DynamicTree,
    root_logits: torch.Tensor,
    expand: Expand,
    sampling: SamplingConfig,
    generator: torch.Generator | None = None,
) -> tuple[DraftTree, torch.Tensor]:
    """Grow the tree ``policy`` asks for: :func:`grow_static` or :func:`grow_dynamic`.

    Raises:
        TypeError: If ``policy`` is neither a :class:`StaticTree` nor a :class:`DynamicTree`.
    """
    if isinstance(policy, StaticTree):
        return grow_static(policy, root_logits, expand, sampling, generator)
    if isinstance(policy, DynamicTree):
        return grow_dynamic(policy, root_logits, expand, sampling, generator)
    raise TypeError(f"unsupported tree policy {policy!r}; use StaticTree or DynamicTree")
