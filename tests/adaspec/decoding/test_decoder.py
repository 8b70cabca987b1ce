import copy
import functools

import pytest
import torch
from helpers import make_tiny_model

from adaspec.decoding import (
    DraftModelDrafter,
    SamplingConfig,
    SpeculativeDecoder,
    TargetFeatures,
    autoregressive_generate,
    chain,
    logits_to_probs,
)
from adaspec.decoding.tree import DynamicTree, StaticTree

EOS = 1
TREES = {
    "chain": lambda: chain(4),
    "static": lambda: StaticTree([[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 0, 0, 0]]),
    "dynamic": lambda: DynamicTree(depth=4, top_k=3, total_tokens=16),
}


def _noisy_copy(model, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=gen) * scale * p.std())
    return out


_REFS: dict = {}


def _hf_greedy(model, ids, max_new_tokens, eos=None):
    key = (id(model), tuple(ids[0].tolist()), max_new_tokens, eos)
    if key not in _REFS:
        _REFS[key] = _hf_generate(model, ids, max_new_tokens, eos)
    return _REFS[key]


def _hf_generate(model, ids, max_new_tokens, eos=None):
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        pad_token_id=2,
    )
    return out


@functools.cache
def _models(family):
    """target, a close draft (noisy copy), a draft of another seed, an EOS-emitting target."""
    target = make_tiny_model(family, seed=0)
    close = _noisy_copy(target, 0.3, seed=5)
    other = make_tiny_model(family, seed=1)
    # Make EOS a slightly louder copy of a token X that greedy decoding emits after a while:
    # EOS then replaces X where X first wins (checked, since other steps may change too).
    prompt = torch.tensor([[5, 17, 42, 99, 7, 11]])
    base = autoregressive_generate(target, prompt, 64).new_tokens[0].tolist()
    for pos in range(10, 50, 3):
        eos_target = copy.deepcopy(target)
        with torch.no_grad():
            rows = eos_target.get_output_embeddings().weight
            rows[EOS] = rows[base[pos]] * 1.05
        ref = autoregressive_generate(eos_target, prompt, 64, eos_token_id=EOS)
        if ref.stopped == "eos" and 8 <= ref.num_new_tokens <= 32:
            return target, close, other, eos_target, prompt
    raise AssertionError(f"no EOS-emitting scale found for {family}")


@pytest.mark.parametrize("tree_name", list(TREES))
def test_generate_greedy_matches_hf_generate(family, tree_name):
    target, close, other, eos_target, eos_prompt = _models(family)
    prompt = torch.tensor([[3, 44, 80, 120, 9]])
    for draft in (close, target):
        dec = SpeculativeDecoder(target, DraftModelDrafter(draft), tree=TREES[tree_name]())
        res = dec.generate(prompt, max_new_tokens=64)
        assert torch.equal(res.sequences, _hf_greedy(target, prompt, 64))
        assert res.num_new_tokens == 64 and res.stopped == "max_new_tokens"
        assert sum(s.committed for s in res.steps) == 64
    # a prompt whose greedy continuation ends with EOS, with a different (other seed) draft
    ref = _hf_greedy(eos_target, eos_prompt, 64, eos=EOS)
    assert ref[0, -1] == EOS and ref.shape[1] - eos_prompt.shape[1] < 64
    for draft in (other, eos_target):
        dec = SpeculativeDecoder(eos_target, DraftModelDrafter(draft), tree=TREES[tree_name]())
        res = dec.generate(eos_prompt, max_new_tokens=64, eos_token_id=[EOS])
        assert torch.equal(res.sequences, ref)
        assert res.stopped == "eos" and res.steps[-1].stopped == "eos"


@pytest.mark.parametrize("tree_name", ["chain", "static", "dynamic"])
def test_generate_identical_draft_commits_full_depth(family, tree_name):
    target = _models(family)[0]
    tree = TREES[tree_name]()
    if tree_name == "dynamic":  # keep every node
        tree = DynamicTree(depth=4, top_k=3, total_tokens=30)
    dec = SpeculativeDecoder(target, DraftModelDrafter(target), tree=tree)
    res = dec.generate(torch.tensor([[3, 44, 80]]), max_new_tokens=40)
    assert sum(s.committed for s in res.steps) == 40
    for step in res.steps[:-1]:
        # the draft's top-1 child is the target's argmax: nothing is ever rejected
        assert step.rejected_depth is None and step.committed == step.accepted + 1
        if tree_name != "dynamic":
            assert step.committed == step.proposed_depth + 1 == 5
    if tree_name == "dynamic":
        # EAGLE-2 expands only the top_k best frontier nodes, so the greedy path may leave the
        # tree early; when it stays in, the step commits depth + 1 tokens.
        assert sum(s.committed for s in res.steps) / len(res.steps) > 2


def test_generate_cuts_exactly_at_max_new_tokens():
    target = _models("llama")[0]
    dec = SpeculativeDecoder(target, DraftModelDrafter(target), tree=chain(4))
    res = dec.generate(torch.tensor([[3, 44]]), max_new_tokens=7)
    assert res.num_new_tokens == 7 and [s.committed for s in res.steps] == [5, 2]
    assert res.steps[-1].stopped == "max_new_tokens" and res.steps[-1].accepted == 4
    assert torch.equal(res.sequences, _hf_greedy(target, torch.tensor([[3, 44]]), 7))


def test_generate_rejects_batches_and_bad_lengths():
    target = _models("gpt_neox")[0]
    dec = SpeculativeDecoder(target, DraftModelDrafter(target))
    with pytest.raises(ValueError, match="batch size 1"):
        dec.generate(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens"):
        dec.generate(torch.zeros(1, 4, dtype=torch.long), max_new_tokens=0)


def test_autoregressive_generate_matches_hf(family):
    target = _models(family)[0]
    prompt = torch.tensor([[3, 44, 80, 120, 9]])
    res = autoregressive_generate(target, prompt, 20)
    assert torch.equal(res.sequences, _hf_greedy(target, prompt, 20))
    assert len(res.steps) == 20


class _FeatureCheckingDrafter(DraftModelDrafter):
    """Asks for target features and checks their alignment against a fresh full forward."""

    target_layers = (-1, 1)

    def __init__(self, model, target):
        super().__init__(model)
        self.target, self.seen = target, 0

    def _check(self, tokens, features, first):
        ref = self.target(tokens, output_hidden_states=True).hidden_states
        for got, layer in zip(features.hidden_states, self.target_layers):
            want = ref[layer][:, first : first + features.length]
            assert torch.allclose(got, want, atol=1e-4)
        self.seen += features.length

    def prefill(self, input_ids, features):
        assert features.length == input_ids.shape[1] - 1
        self._check(input_ids, features, 0)
        super().prefill(input_ids, features)

    def commit(self, new_tokens, accepted_nodes, features):
        assert isinstance(features, TargetFeatures)
        assert features.length == new_tokens.shape[1]  # [old root] + accepted
        start = self._tokens.shape[1] - 1  # position of the old root
        super().commit(new_tokens, accepted_nodes, features)
        self._check(self._tokens, features, start)


def test_generate_passes_aligned_target_features():
    target, close, *_ = _models("qwen2")
    drafter = _FeatureCheckingDrafter(close, target)
    dec = SpeculativeDecoder(target, drafter, tree=DynamicTree(depth=3, top_k=2, total_tokens=8))
    res = dec.generate(torch.tensor([[3, 44, 80, 120]]), max_new_tokens=20)
    assert drafter.seen == 3 + sum(s.committed for s in res.steps[:-1])


# ----------------------------------------------------------------- sampling (statistical)
def _exact_two_token_law(target, prompt, sampling, vocab):
    with torch.no_grad():
        p1 = logits_to_probs(target(prompt).logits[0, -1], sampling)
        seqs = torch.cat([prompt.repeat(vocab, 1), torch.arange(vocab)[:, None]], dim=1)
        p2 = logits_to_probs(target(seqs).logits[:, -1], sampling)
    return p1[:, None] * p2


def _two_token_counts(decoder, prompt, n, vocab, seed):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.zeros(vocab, vocab)
    for _ in range(n):
        new = decoder.generate(prompt, max_new_tokens=2, generator=gen).new_tokens[0]
        counts[new[0], new[1]] += 1
    return counts


SAMPLING_CASES = {
    "static_t0.8_p0.9": (
        lambda: StaticTree([[0], [1], [2], [0, 0], [0, 1], [1, 0]]),
        SamplingConfig(temperature=0.8, top_p=0.9),
    ),
    "chain_t1": (lambda: chain(2), SamplingConfig(temperature=1.0)),
    "dynamic_t1.2_k5": (
        lambda: DynamicTree(depth=3, top_k=2, total_tokens=6),
        SamplingConfig(temperature=1.2, top_k=5),
    ),
}


def _sampling_case(name, g_test, n):
    vocab = 16
    target = make_tiny_model("llama", seed=0, vocab_size=vocab)
    draft = make_tiny_model("llama", seed=1, vocab_size=vocab)
    make_tree, sampling = SAMPLING_CASES[name]
    prompt = torch.tensor([[0]])
    dec = SpeculativeDecoder(target, DraftModelDrafter(draft), tree=make_tree(), sampling=sampling)
    counts = _two_token_counts(dec, prompt, n, vocab, seed=1)
    expected = _exact_two_token_law(target, prompt, sampling, vocab)
    assert g_test(counts, expected) > 1e-3, "speculative sampling changed the target's law"
    # negative control: the draft's own law is rejected by the same test
    with torch.no_grad():
        gen = torch.Generator().manual_seed(2)
        q1 = logits_to_probs(draft(prompt).logits[0, -1], sampling)
        t1 = torch.multinomial(q1, n, replacement=True, generator=gen)
        q2 = logits_to_probs(draft(torch.cat([prompt.repeat(n, 1), t1[:, None]], 1)).logits[:, -1],
                             sampling)  # fmt: skip
        t2 = torch.multinomial(q2, 1, generator=gen)[:, 0]
    draft_counts = torch.zeros(vocab, vocab).index_put_((t1, t2), torch.ones(n), accumulate=True)
    assert g_test(draft_counts, expected) < 1e-3, "the test cannot tell the draft from the target"


def test_generate_sampling_reproduces_target_law(g_test):
    """G-test (p > 0.001) of the joint law of the first two tokens, vocab 16, 1000 samples."""
    _sampling_case("static_t0.8_p0.9", g_test, n=1000)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["chain_t1", "dynamic_t1.2_k5"])
def test_generate_sampling_reproduces_target_law_variants(g_test, name):
    _sampling_case(name, g_test, n=4000)
