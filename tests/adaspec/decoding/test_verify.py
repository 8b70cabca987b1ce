import torch

from adaspec.decoding.sampling import SamplingConfig, sample_without_replacement
from adaspec.decoding.tree import DraftTree, build_tree_buffers
from adaspec.decoding.verify import greedy_verify, sampling_verify


def _onehot_logits(preds, vocab=8):
    logits = torch.zeros(len(preds), vocab)
    logits[torch.arange(len(preds)), torch.tensor(preds)] = 5.0
    return logits


def test_greedy_verify_longest_matching_path(g_test):
    # root -> a(0)=3, b(1)=4; a -> c(2)=5, d(3)=6; c -> e(4)=7
    parents = torch.tensor([-1, -1, 0, 0, 2])
    tokens = torch.tensor([3, 4, 5, 6, 7])
    buf = build_tree_buffers(parents)
    # target argmax: root->3 (a), a->5 (c), b->0, c->1 (not e), d->0, e->0
    res = greedy_verify(tokens, _onehot_logits([3, 5, 0, 1, 0, 0]), buf, parents)
    assert res.accepted_nodes.tolist() == [0, 2]
    assert int(res.bonus) == 1 and res.rejected_depth == 3
    # full path accepted to the leaf e: bonus from e's slot, no rejection
    res = greedy_verify(tokens, _onehot_logits([3, 5, 0, 7, 0, 2]), buf, parents)
    assert res.accepted_nodes.tolist() == [0, 2, 4]
    assert int(res.bonus) == 2 and res.rejected_depth is None
    # nothing accepted
    res = greedy_verify(tokens, _onehot_logits([1, 5, 0, 7, 0, 2]), buf, parents)
    assert res.num_accepted == 0 and int(res.bonus) == 1 and res.rejected_depth == 1


def _rule_samples(p, q, k, n, draw, seed=0):
    """First emitted token of sampling_verify on a one-level tree of k children, n times."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.log(p)[None].repeat(k + 1, 1)
    counts = torch.zeros(p.shape[0])
    for _ in range(n):
        toks = draw(q, k, gen)
        tree = DraftTree(
            tokens=toks,
            parents=torch.full((k,), -1),
            depths=torch.ones(k, dtype=torch.long),
            probs=q[toks],
            q=q[None],
            q_index=torch.tensor([0] + [-1] * k),
        )
        res = sampling_verify(tree, logits, SamplingConfig(temperature=1.0), gen)
        first = toks[res.accepted_nodes[0]] if res.num_accepted else res.bonus
        counts[int(first)] += 1
    return counts


def _without_replacement(q, k, gen):
    return sample_without_replacement(q[None], k, gen)[0][0]


def _top_k(q, k, gen):
    return q.topk(k).indices


def test_sampling_verify_multi_candidate_is_lossless(g_test):
    torch.manual_seed(3)
    p = torch.softmax(torch.randn(8) * 1.5, -1)
    q = torch.softmax(torch.randn(8) * 1.5, -1)
    counts = _rule_samples(p, q, k=3, n=2000, draw=_without_replacement)
    assert g_test(counts, p) > 1e-3


def test_sampling_verify_top_k_children_are_not_lossless(g_test):
    # negative control: deterministic top-k children break the rule (the test can fail)
    torch.manual_seed(3)
    p = torch.softmax(torch.randn(8) * 1.5, -1)
    q = torch.softmax(torch.randn(8) * 1.5, -1)
    counts = _rule_samples(p, q, k=3, n=2000, draw=_top_k)
    assert g_test(counts, p) < 1e-3
