import torch
from helpers import make_tiny_model

from adaspec.decoding import DraftModelDrafter, SamplingConfig
from adaspec.decoding.cache import cache_length
from adaspec.decoding.tree import DynamicTree, StaticTree, ancestor_matrix, chain

GREEDY = SamplingConfig()


def _drafter(family="llama", vocab_size=256):
    model = make_tiny_model(family, seed=0, vocab_size=vocab_size)
    drafter = DraftModelDrafter(model)
    drafter.prefill(torch.tensor([[3, 44, 80, 120]]) % vocab_size, None)
    return model, drafter


def test_static_greedy_children_are_draft_top_k(family):
    model, drafter = _drafter(family)
    tree = drafter.propose(StaticTree([[0], [1], [2], [0, 0], [0, 1]]), GREEDY)
    prompt = torch.tensor([[3, 44, 80, 120]])
    with torch.no_grad():
        root = model(prompt).logits[0, -1]
        after = model(torch.cat([prompt, tree.tokens[:1][None]], 1)).logits[0, -1]
    assert tree.tokens[:3].tolist() == root.topk(3).indices.tolist()
    assert tree.tokens[3:].tolist() == after.topk(2).indices.tolist()
    assert tree.parents.tolist() == [-1, -1, -1, 0, 0]
    assert torch.allclose(tree.probs[0], torch.softmax(root, -1).max(), atol=1e-5)


def test_chain_then_commit_keeps_draft_cache_in_step():
    model, drafter = _drafter()
    tree = drafter.propose(chain(3), GREEDY)
    # accept 2 draft tokens, bonus 7: cache keeps prompt + 2 fed nodes
    drafter.commit(
        torch.cat([tree.tokens[:2], torch.tensor([7])])[None], torch.tensor([0, 1]), None
    )
    assert cache_length(drafter._cache) == 4 + 2
    nxt = drafter.propose(chain(1), GREEDY)
    seq = torch.cat(
        [torch.tensor([[3, 44, 80, 120]]), tree.tokens[:2][None], torch.tensor([[7]])], 1
    )
    with torch.no_grad():
        want = model(seq).logits[0, -1].argmax()
    assert int(nxt.tokens[0]) == int(want)


def test_dynamic_tree_greedy_is_ancestor_closed_and_sized():
    _, drafter = _drafter()
    policy = DynamicTree(depth=4, top_k=3, total_tokens=10)
    tree = drafter.propose(policy, GREEDY)
    assert tree.num_nodes == 10
    assert bool((tree.parents < torch.arange(10)).all())
    anc = ancestor_matrix(tree.parents)
    assert torch.equal(anc.sum(1), tree.depths)
    # kept nodes are the highest cumulative log-probabilities
    score = (anc.float() * tree.probs.log()[None]).sum(1)
    assert score.min() >= score.max() - 100  # finite
    assert tree.q is None


def test_dynamic_tree_sampling_keeps_breadth_first_prefix():
    _, drafter = _drafter(vocab_size=32)
    gen = torch.Generator().manual_seed(0)
    policy = DynamicTree(depth=3, top_k=2, total_tokens=5)
    tree = drafter.propose(policy, SamplingConfig(temperature=1.0), gen)
    assert tree.num_nodes == 5
    assert tree.depths.tolist() == [1, 1, 2, 2, 2]  # whole levels first, in creation order
    assert tree.q is not None and tree.q_index[0] == 0
    rows = tree.q_index[tree.parents + 1]  # each node's parent has a q row
    assert bool((rows >= 0).all())
    # siblings are distinct tokens with q > 0
    for p in (-1, 0, 1):
        kids = tree.tokens[tree.parents == p]
        assert kids.unique().numel() == kids.numel()


def test_static_sampling_prunes_children_past_q_support():
    _, drafter = _drafter(vocab_size=32)
    gen = torch.Generator().manual_seed(0)
    sampling = SamplingConfig(temperature=1.0, top_k=2)  # q has 2 tokens: 3rd child invalid
    tree = drafter.propose(StaticTree([[0], [1], [2], [2, 0]]), sampling, gen)
    assert tree.num_nodes == 2 and tree.parents.tolist() == [-1, -1]
