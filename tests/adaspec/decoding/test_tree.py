import pytest
import torch

from adaspec.decoding.tree import (
    MC_SIM_7B_63,
    TREE_PRESETS,
    DynamicTree,
    StaticTree,
    ancestor_matrix,
    build_tree_buffers,
    chain,
    tree_from_spec,
)


def test_build_tree_buffers_hand_drawn_tree():
    # root -> a(0), b(1); a -> c(2), d(3); c -> e(4)
    parents = torch.tensor([-1, -1, 0, 0, 2])
    buf = build_tree_buffers(parents)
    expected_allowed = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],  # root
            [1, 1, 0, 0, 0, 0],  # a
            [1, 0, 1, 0, 0, 0],  # b
            [1, 1, 0, 1, 0, 0],  # c
            [1, 1, 0, 0, 1, 0],  # d
            [1, 1, 0, 1, 0, 1],  # e
        ],
        dtype=torch.bool,
    )
    assert torch.equal(buf.allowed, expected_allowed)
    assert buf.depths.tolist() == [1, 1, 2, 2, 3]
    assert buf.position_offsets.tolist() == [0, 1, 1, 2, 2, 3]
    # leaves b, d, e in node order; paths padded with -1
    assert buf.retrieve.tolist() == [[1, -1, -1], [0, 3, -1], [0, 2, 4]]
    assert buf.has_children.tolist() == [True, True, False, True, False, False]
    assert buf.max_depth == 3


def test_ancestor_matrix_deep_chain():
    n = 37
    parents = torch.arange(-1, n - 1)
    anc = ancestor_matrix(parents)
    assert torch.equal(anc, torch.ones(n, n, dtype=torch.bool).tril())


def test_static_tree_mc_sim_7b_63_shape():
    tree = StaticTree(MC_SIM_7B_63)
    assert tree.num_nodes == 25 and tree.depth == 5
    st = tree.tensors(torch.device("cpu"))
    assert st["buffers"].retrieve.shape[1] == 5
    assert [lvl["nodes"].numel() for lvl in st["levels"]] == [4, 8, 8, 3, 2]
    assert st["levels"][0]["width"] == 4
    # cached per device
    assert tree.tensors(torch.device("cpu")) is st


def test_static_tree_rejects_bad_paths():
    with pytest.raises(ValueError, match="no parent path"):
        StaticTree([[0], [0, 0, 0]])
    with pytest.raises(ValueError, match="sibling ranks"):
        StaticTree([[0], [2]])
    with pytest.raises(ValueError, match="duplicates"):
        StaticTree([[0], [0]])


def test_chain_is_width_one():
    c = chain(3)
    assert c.parents_list == [-1, 0, 1] and c.depth == 3
    with pytest.raises(ValueError, match="gamma"):
        chain(0)


def test_tree_from_spec_forms():
    assert tree_from_spec("chain:5").depth == 5
    assert tree_from_spec("static:mc_sim_7b_63").num_nodes == 25
    dyn = tree_from_spec("dynamic:depth=3,top_k=2,total=7")
    assert isinstance(dyn, DynamicTree) and (dyn.depth, dyn.top_k, dyn.total_tokens) == (3, 2, 7)
    with pytest.raises(ValueError, match="unknown tree spec"):
        tree_from_spec("bushy")
    assert set(TREE_PRESETS) >= {"mc_sim_7b_63", "small_10"}
    assert StaticTree(TREE_PRESETS["small_10"]).num_nodes == 10
