import torch

from adaspec.decoding.growth import Expansion, grow_dynamic, grow_static
from adaspec.decoding.sampling import SamplingConfig
from adaspec.decoding.tree import DynamicTree, StaticTree, ancestor_matrix, chain

GREEDY = SamplingConfig()
V = 16


def _logits_after(tokens: torch.Tensor) -> torch.Tensor:
    """Toy draft: after token t, ranks t+1, t+2, t+3, ... (mod V) by decreasing logit."""
    ranks = (torch.arange(V)[None] - tokens[:, None] - 1) % V
    return -ranks.float()


class _Recorder:
    """An ``expand`` that records every level it is asked for."""

    def __init__(self):
        self.levels: list[Expansion] = []

    def __call__(self, level: Expansion) -> torch.Tensor:
        self.levels.append(level)
        return _logits_after(level.tokens)


def test_grow_static_chain_feeds_each_node_once_in_order():
    rec = _Recorder()
    root = _logits_after(torch.tensor([3]))[0]
    tree, slots = grow_static(chain(4), root, rec, GREEDY)
    assert tree.tokens.tolist() == [4, 5, 6, 7]
    # the leaf is never fed; the others are fed one per level at slots 0, 1, 2
    assert slots.tolist() == [0, 1, 2, -1]
    assert [lv.first_slot for lv in rec.levels] == [0, 1, 2]
    assert [lv.parent_slots.tolist() for lv in rec.levels] == [[-1], [0], [1]]
    assert [lv.depths.tolist() for lv in rec.levels] == [[1], [2], [3]]
    assert rec.levels[-1].allowed.tolist() == [[True, True, True]]


def test_grow_static_tree_passes_parent_slots_and_ancestor_masks():
    rec = _Recorder()
    policy = StaticTree([[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0]])
    root = _logits_after(torch.tensor([0]))[0]
    tree, slots = grow_static(policy, root, rec, GREEDY)
    assert tree.parents.tolist() == [-1, -1, 0, 0, 1, 2]
    assert tree.tokens.tolist() == [1, 2, 2, 3, 3, 3]
    level2, level3 = rec.levels
    # level 2 expands both root children, level 3 only node 2 (whose parent is node 0)
    assert level2.tokens.tolist() == [1, 2] and level2.parent_slots.tolist() == [-1, -1]
    assert level3.tokens.tolist() == [2] and level3.parent_slots.tolist() == [int(slots[0])]
    assert level3.allowed.tolist() == [[True, False, True]]  # node 0 and itself, not node 1
    assert slots.tolist() == [0, 1, 2, -1, -1, -1]


def test_grow_dynamic_greedy_matches_an_exhaustive_score_ranking():
    rec = _Recorder()
    root = torch.randn(V, generator=torch.Generator().manual_seed(0))

    def expand(level):
        rec(level)
        return torch.randn(level.tokens.shape[0], V, generator=torch.Generator().manual_seed(1))

    tree, slots = grow_dynamic(DynamicTree(depth=3, top_k=2, total_tokens=5), root, expand, GREEDY)
    assert tree.num_nodes == 5
    anc = ancestor_matrix(tree.parents)
    assert torch.equal(anc.sum(1), tree.depths)
    # every level's parent slots point at nodes fed at the level before
    for prev, cur in zip(rec.levels, rec.levels[1:]):
        first, k = prev.first_slot, prev.tokens.shape[0]
        assert bool(((cur.parent_slots >= first) & (cur.parent_slots < first + k)).all())
    # kept nodes score at least as high as any dropped child of a kept node
    logp = torch.log_softmax(root, -1)
    kept_root_children = tree.tokens[tree.parents == -1]
    assert kept_root_children.tolist() == logp.topk(kept_root_children.numel()).indices.tolist()
    assert bool((slots[tree.depths == 3] == -1).all())  # leaves of the last level are not fed


def test_growers_are_pure_same_inputs_same_tree():
    policy = DynamicTree(depth=3, top_k=3, total_tokens=8)
    root = _logits_after(torch.tensor([5]))[0]
    sampling = SamplingConfig(temperature=1.0)
    a = grow_dynamic(policy, root, _Recorder(), sampling, torch.Generator().manual_seed(4))
    b = grow_dynamic(policy, root, _Recorder(), sampling, torch.Generator().manual_seed(4))
    assert torch.equal(a[0].tokens, b[0].tokens) and torch.equal(a[1], b[1])
    assert torch.equal(a[0].parents, b[0].parents)
