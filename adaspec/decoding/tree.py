"""Token trees: the draft's proposal (:class:`DraftTree`), tree policies and tree buffers.

Conventions shared by the drafters, the verifier and the decoder:

* A tree has ``n`` nodes ``0 .. n-1`` in topological order (a parent's index is smaller than its
  children's). ``parents[i] == -1`` means node ``i`` is a child of the *root*, the last
  committed token. ``depths`` start at 1 for the root's children.
* Siblings appear in draw order: greedy drafts list a parent's children by decreasing draft
  probability, sampling drafts in the order they were drawn without replacement (what the
  lossless multi-candidate verification rule needs).
* The verification forward feeds ``[root] + nodes``; slot ``0`` is the root and slot ``i + 1``
  node ``i``. :class:`TreeBuffers` is expressed in node indices; add 1 for slots.

Policies: :class:`StaticTree` (paths of top-k ranks, EAGLE-1 / Medusa style; :func:`chain` is the
width-1 case) and :class:`DynamicTree` (EAGLE-2: ``depth`` expansion steps of the ``top_k`` best
frontier nodes, keeping ``total_tokens`` nodes). Buffers are built with tensor operations and
cached per static tree and device.
"""

from __future__ import annotations

import dataclasses
import re

import torch

# EAGLE's default static tree (eagle/model/choices.py, mc_sim_7b_63): 25 nodes, depth 5.
MC_SIM_7B_63: list[list[int]] = [
    [0], [1], [2], [3], [0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0], [2, 1], [3, 0],
    [0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0], [0, 1, 1], [0, 2, 0], [0, 2, 1], [1, 0, 0],
    [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1],
]  # fmt: skip


@dataclasses.dataclass
class TreeBuffers:
    """Tensors that describe a tree's shape, in node indices.

    Attributes:
        allowed: Bool ``[n + 1, n + 1]`` verification pattern over ``[root] + nodes``: each slot
            sees the root, its ancestors and itself.
        ancestors: Bool ``[n, n]``; ``ancestors[i, j]`` iff node ``j`` is node ``i`` or one of
            its ancestors.
        depths: LongTensor ``[n]`` (1 for the root's children).
        position_offsets: LongTensor ``[n + 1]`` = ``[0] + depths``, added to the root position.
        retrieve: LongTensor ``[num_leaves, max_depth]``: node indices of each root-to-leaf
            path ordered by depth, padded with -1.
        has_children: Bool ``[n + 1]``: slot ``0`` (root) and each node, whether it has a child.
    """

    allowed: torch.Tensor
    ancestors: torch.Tensor
    depths: torch.Tensor
    position_offsets: torch.Tensor
    retrieve: torch.Tensor
    has_children: torch.Tensor

    @property
    def max_depth(self) -> int:
        """Length of the longest root-to-leaf path."""
        return int(self.retrieve.shape[1])


def ancestor_matrix(parents: torch.Tensor) -> torch.Tensor:
    """Bool ``[n, n]`` ancestor-or-self relation from parent pointers, by pointer doubling.

    After round ``k`` each row holds the ancestors within distance ``2**k - 1``; ``log2(n)``
    rounds of tensor operations suffice, with no host synchronization.

    Args:
        parents: LongTensor ``[n]``, -1 for children of the root, in topological order.
    """
    n = parents.shape[0]
    anc = torch.eye(n, dtype=torch.bool, device=parents.device)
    hop = parents.clone()  # ancestor at distance 2**k, -1 past the root
    for _ in range(max(n, 1).bit_length()):
        has = hop >= 0
        idx = hop.clamp(min=0)
        anc = anc | (anc[idx] & has[:, None])
        hop = torch.where(has, hop[idx], hop)
    return anc


def build_tree_buffers(parents: torch.Tensor) -> TreeBuffers:
    """Masks, positions and retrieve indices of a tree, with tensor operations only.

    Args:
        parents: LongTensor ``[n]`` (see the module conventions).

    Returns:
        The :class:`TreeBuffers`, on ``parents.device``.
    """
    n = parents.shape[0]
    device = parents.device
    anc = ancestor_matrix(parents)
    depths = anc.sum(1)
    allowed = torch.zeros(n + 1, n + 1, dtype=torch.bool, device=device)
    allowed[:, 0] = True
    allowed[1:, 1:] = anc
    has_children = torch.zeros(n + 1, dtype=torch.bool, device=device)
    has_children[0] = n > 0
    has_children[1:] = torch.isin(torch.arange(n, device=device), parents)
    leaves = (~has_children[1:]).nonzero().squeeze(1)
    max_depth = int(depths.max()) if n else 0
    retrieve = torch.full((leaves.shape[0], max_depth), -1, dtype=torch.long, device=device)
    rows, cols = anc[leaves].nonzero(as_tuple=True)
    retrieve[rows, depths[cols] - 1] = cols
    offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=device), depths])
    return TreeBuffers(allowed, anc, depths, offsets, retrieve, has_children)


@dataclasses.dataclass
class DraftTree:
    """What a drafter proposes for one step.

    Attributes:
        tokens: LongTensor ``[n]`` node tokens.
        parents: LongTensor ``[n]``, -1 for children of the root (the last committed token).
        depths: LongTensor ``[n]``, 1 for the root's children.
        probs: Float ``[n]`` draft probability of each node given its parent path (under the
            distribution its children were chosen from: ``q`` when sampling, the plain softmax
            when greedy).
        q: Float ``[r, V]`` or None: the draft's sampling distribution at each expanded parent
            (needed by lossless sampling verification; None for greedy drafts).
        q_index: LongTensor ``[n + 1]`` or None: row of ``q`` for slot ``0`` (root) and each
            node, -1 for nodes that were not expanded.
        buffers: Precomputed :class:`TreeBuffers` (static trees), or None to build them.
    """

    tokens: torch.Tensor
    parents: torch.Tensor
    depths: torch.Tensor
    probs: torch.Tensor
    q: torch.Tensor | None = None
    q_index: torch.Tensor | None = None
    buffers: TreeBuffers | None = None

    @property
    def num_nodes(self) -> int:
        """Number of draft tokens."""
        return int(self.tokens.shape[0])

    def get_buffers(self) -> TreeBuffers:
        """The cached buffers, or new ones built from ``parents``."""
        if self.buffers is None:
            self.buffers = build_tree_buffers(self.parents)
        return self.buffers

    def select(self, keep: torch.Tensor) -> DraftTree:
        """The sub-tree of the nodes ``keep`` (ascending indices, closed under ancestors)."""
        n = self.num_nodes
        remap = torch.full((n + 1,), -1, dtype=torch.long, device=self.tokens.device)
        remap[keep + 1] = torch.arange(keep.shape[0], device=keep.device)
        parents = remap[self.parents[keep] + 1]
        q_index = None
        if self.q_index is not None:
            q_index = torch.cat([self.q_index[:1], self.q_index[keep + 1]])
        return DraftTree(
            self.tokens[keep], parents, self.depths[keep], self.probs[keep], self.q, q_index
        )


class TreePolicy:
    """Base class of the tree shapes a drafter can be asked for."""

    name: str = "tree"


class StaticTree(TreePolicy):
    """A fixed tree given as paths of top-k ranks (``[0, 1]`` = 2nd child of the 1st child).

    Every prefix of a path must be a path, and each node's children must have the ranks
    ``0 .. k-1`` (so that sampled children are the first draws without replacement).

    Args:
        paths: List of rank paths.
        name: Label used in reports.
    """

    def __init__(self, paths: list[list[int]], name: str = "static") -> None:
        clean = [tuple(int(r) for r in p) for p in paths]
        if not clean or any(len(p) == 0 or min(p) < 0 for p in clean):
            raise ValueError(f"tree paths must be non-empty lists of ranks >= 0, got {paths!r}")
        if len(set(clean)) != len(clean):
            raise ValueError(f"tree paths contain duplicates: {paths!r}")
        known = set(clean)
        for p in clean:
            if len(p) > 1 and p[:-1] not in known:
                raise ValueError(f"tree path {list(p)} has no parent path {list(p[:-1])}")
            if p[-1] > 0 and p[:-1] + (p[-1] - 1,) not in known:
                raise ValueError(
                    f"tree path {list(p)}: sibling ranks must be 0..k-1, missing "
                    f"{list(p[:-1] + (p[-1] - 1,))}"
                )
        self.paths = sorted(clean, key=lambda p: (len(p), p))
        self.name = name
        index = {p: i for i, p in enumerate(self.paths)}
        self.parents_list = [index[p[:-1]] if len(p) > 1 else -1 for p in self.paths]
        self.ranks_list = [p[-1] for p in self.paths]
        self.depth = max(len(p) for p in self.paths)
        self._cache: dict[str, dict[str, object]] = {}

    @property
    def num_nodes(self) -> int:
        """Nodes of the tree."""
        return len(self.paths)

    def tensors(self, device: torch.device) -> dict[str, object]:
        """Per-device cached structure: parents, ranks, buffers and per-level expansion plans.

        Level ``d`` (1-based) holds: ``nodes`` (indices of the depth-``d`` nodes),
        ``expand`` (their distinct parents, -1 for the root), ``parent_pos`` (each node's
        position in ``expand``), ``ranks`` and ``width`` (largest rank + 1).
        """
        key = str(device)
        if key not in self._cache:
            parents = torch.tensor(self.parents_list, dtype=torch.long, device=device)
            ranks = torch.tensor(self.ranks_list, dtype=torch.long, device=device)
            levels = []
            for d in range(1, self.depth + 1):
                nodes = [i for i, p in enumerate(self.paths) if len(p) == d]
                expand = sorted({self.parents_list[i] for i in nodes})
                pos = [expand.index(self.parents_list[i]) for i in nodes]
                levels.append(
                    dict(
                        nodes=torch.tensor(nodes, dtype=torch.long, device=device),
                        expand=torch.tensor(expand, dtype=torch.long, device=device),
                        parent_pos=torch.tensor(pos, dtype=torch.long, device=device),
                        ranks=ranks[nodes],
                        width=max(self.ranks_list[i] for i in nodes) + 1,
                    )
                )
            self._cache[key] = dict(
                parents=parents, ranks=ranks, buffers=build_tree_buffers(parents), levels=levels
            )
        return self._cache[key]

    def __repr__(self) -> str:
        return f"StaticTree(name={self.name!r}, nodes={self.num_nodes}, depth={self.depth})"


class DynamicTree(TreePolicy):
    """EAGLE-2 dynamic tree: ``depth`` expansion steps of the ``top_k`` best frontier nodes.

    Greedy drafts keep the ``total_tokens`` nodes of highest cumulative draft log-probability.
    Sampling drafts keep a breadth-first prefix of ``total_tokens`` nodes instead (sibling groups
    ordered by depth, then parent score): a node's number of kept children then never depends
    on the children's own draws, which the lossless verification rule requires.

    Args:
        depth: Expansion steps (the deepest node has this depth).
        top_k: Children per expanded node and frontier nodes expanded per step.
        total_tokens: Nodes kept in the final tree.
    """

    def __init__(self, depth: int = 5, top_k: int = 8, total_tokens: int = 60) -> None:
        for field, value in (("depth", depth), ("top_k", top_k), ("total_tokens", total_tokens)):
            if int(value) < 1:
                raise ValueError(f"DynamicTree {field} must be >= 1, got {value!r}")
        self.depth, self.top_k, self.total_tokens = int(depth), int(top_k), int(total_tokens)
        self.name = f"dynamic_d{depth}_k{top_k}_n{total_tokens}"

    def __repr__(self) -> str:
        return f"DynamicTree(depth={self.depth}, top_k={self.top_k}, total={self.total_tokens})"


def chain(gamma: int) -> StaticTree:
    """A chain of ``gamma`` draft tokens (a tree of width 1)."""
    if int(gamma) < 1:
        raise ValueError(f"chain length gamma must be >= 1, got {gamma!r}")
    return StaticTree([[0] * d for d in range(1, int(gamma) + 1)], name=f"chain{gamma}")


def full_tree(width: int, depth: int) -> list[list[int]]:
    """Paths of a complete tree with ``width`` children per node and ``depth`` levels."""
    paths: list[list[int]] = [[]]
    out: list[list[int]] = []
    for _ in range(depth):
        paths = [p + [r] for p in paths for r in range(width)]
        out += paths
    return out


TREE_PRESETS: dict[str, list[list[int]]] = {
    "mc_sim_7b_63": MC_SIM_7B_63,
    # 10 nodes, depth 4: two candidates at each of the first two levels, then a chain.
    "small_10": [[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0],
                 [0, 0, 0, 0], [0, 0, 0, 1]],
    "binary_d3": full_tree(2, 3),  # 14 nodes
    "wide_k4_d2": full_tree(4, 2),  # 20 nodes
}  # fmt: skip

_DYNAMIC_RE = re.compile(r"^dynamic(?::(.*))?$")


def tree_from_spec(spec: str | TreePolicy) -> TreePolicy:
    """Parse ``"chain:4"``, ``"static:mc_sim_7b_63"`` or ``"dynamic:depth=5,top_k=8,total=60"``.

    Raises:
        ValueError: Naming the spec and the accepted forms.
    """
    if isinstance(spec, TreePolicy):
        return spec
    forms = (
        "'chain:GAMMA', 'static:PRESET' (presets: "
        + ", ".join(TREE_PRESETS)
        + "), 'dynamic:depth=D,top_k=K,total_tokens=N'"
    )
    text = str(spec).strip()
    if text.startswith("chain:") and text[6:].isdigit():
        return chain(int(text[6:]))
    if text.startswith("static:") and text[7:] in TREE_PRESETS:
        return StaticTree(TREE_PRESETS[text[7:]], name=text[7:])
    match = _DYNAMIC_RE.match(text)
    if match:
        kwargs = {}
        for item in filter(None, (match.group(1) or "").split(",")):
            key, _, value = item.partition("=")
            key = {"total": "total_tokens", "k": "top_k", "d": "depth"}.get(key.strip(), key)
            if key not in ("depth", "top_k", "total_tokens") or not value.strip().isdigit():
                raise ValueError(f"bad dynamic tree option {item!r} in {spec!r}; use {forms}")
            kwargs[key.strip()] = int(value)
        return DynamicTree(**kwargs)
    raise ValueError(f"unknown tree spec {spec!r}; use one of {forms}")
