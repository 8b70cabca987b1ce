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


def _sequential_verify(tree, logits, sampling, generator):
    """The candidate-by-candidate rule (one host read per candidate), as a reference."""
    from adaspec.decoding.sampling import logits_to_probs, sample, uniform

    kids = [[] for _ in range(tree.num_nodes + 1)]
    for i, par in enumerate(tree.parents.tolist()):
        kids[par + 1].append(i)
    q_rows, tokens = tree.q_index.tolist(), tree.tokens.tolist()
    slot, path, rejected_depth = 0, [], None
    p = logits_to_probs(logits[0], sampling)
    while kids[slot]:
        q = tree.q[q_rows[slot]].float()
        q = q / q.sum()
        accepted = None
        draws = uniform((len(kids[slot]),), generator, logits.device)
        for j, child in enumerate(kids[slot]):
            x = tokens[child]
            if bool(draws[j] * q[x] < p[x]):
                accepted = child
                break
            residual = (p - q).clamp_(min=0)
            if bool(residual.sum() > 0):
                p = residual / residual.sum()
            q = q.clone()
            q[x] = 0
            if not bool(q.sum() > 0):
                break
            q = q / q.sum()
        if accepted is None:
            rejected_depth = len(path) + 1
            break
        path.append(accepted)
        slot = accepted + 1
        p = logits_to_probs(logits[slot], sampling)
    return path, int(sample(p, generator)), rejected_depth


def _two_level_tree(gen, vocab, k, support):
    """Root with k sampled children; the first child has k sampled children of its own."""
    q = torch.softmax(torch.randn(2, vocab, generator=gen) * 2, -1)
    if support < vocab:  # small support: candidates can exhaust q
        q = q * (q >= q.topk(support, -1).values[:, -1:])
    first, ok1 = sample_without_replacement(q[:1], k, gen)
    second, ok2 = sample_without_replacement(q[1:], k, gen)
    k1, k2 = int(ok1.sum()), int(ok2.sum())
    tokens = torch.cat([first[0, :k1], second[0, :k2]])
    parents = torch.tensor([-1] * k1 + [0] * k2)
    depths = torch.tensor([1] * k1 + [2] * k2)
    q_index = torch.tensor([0, 1] + [-1] * (k1 + k2 - 1))
    return DraftTree(tokens, parents, depths, q.new_ones(k1 + k2), q, q_index)


def test_sampling_verify_vectorised_tests_equal_the_sequential_rule():
    gen = torch.Generator().manual_seed(7)
    sampling = SamplingConfig(temperature=1.0)
    seen_depths = set()
    for trial in range(300):
        vocab, k = 8, 3
        tree = _two_level_tree(gen, vocab, k, support=2 if trial % 3 == 0 else vocab)
        logits = torch.randn(tree.num_nodes + 1, vocab, generator=gen) * 2
        seed = 1000 + trial
        got = sampling_verify(tree, logits, sampling, torch.Generator().manual_seed(seed))
        want = _sequential_verify(tree, logits, sampling, torch.Generator().manual_seed(seed))
        assert (got.accepted_nodes.tolist(), int(got.bonus), got.rejected_depth) == want
        seen_depths.add(want[2])
    assert seen_depths == {None, 1, 2}  # rejections at both levels and full acceptance occurred
