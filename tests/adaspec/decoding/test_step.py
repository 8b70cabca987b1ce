import pytest
import torch
from helpers import make_tiny_model

from adaspec.decoding import (
    DraftModelDrafter,
    SpeculativeDecoder,
    autoregressive_generate,
    chain,
    speculative_step,
)
from adaspec.decoding.cache import cache_length, causal_allowed, forward, new_cache
from adaspec.decoding.decoder import _Clock
from adaspec.decoding.sampling import GREEDY


def _verify_forward(target):
    def run(ids, cache, allowed, positions):
        return forward(target, ids, cache, allowed, positions).logits[0], None

    return run


def test_speculative_step_commits_the_target_greedy_tokens():
    target = make_tiny_model("llama", seed=0)
    draft = make_tiny_model("llama", seed=1)
    prompt = torch.tensor([[3, 44, 80, 120]])
    cache = new_cache()
    forward(target, prompt[:, :-1], cache, causal_allowed(3), torch.arange(3)[None])
    drafter = DraftModelDrafter(draft)
    drafter.prefill(prompt, None)
    out = speculative_step(
        _verify_forward(target), drafter, chain(3), GREEDY, cache, prompt[:, -1:], past=3
    )
    m = out.verdict.num_accepted
    want = autoregressive_generate(target, prompt, m + 1).new_tokens[0]
    assert torch.equal(out.new_tokens, want)
    assert out.tree.num_nodes == 3 and out.new_tokens.shape[0] == m + 1
    assert cache_length(cache) == 3 + m + 1  # root and the accepted nodes kept
    assert out.keep_slots.tolist() == list(range(m + 1))  # a chain keeps its prefix
    assert (out.draft_s, out.verify_s, out.overhead_s) == (0.0, 0.0, 0.0)  # untimed default


def test_generate_times_phases_only_when_asked():
    target = make_tiny_model("llama", seed=0)
    dec = SpeculativeDecoder(target, DraftModelDrafter(make_tiny_model("llama", seed=1)))
    prompt = torch.tensor([[3, 44, 80]])
    plain = dec.generate(prompt, max_new_tokens=12)
    timed = dec.generate(prompt, max_new_tokens=12, timing=True)
    assert torch.equal(plain.sequences, timed.sequences)
    assert all(s.draft_s == s.verify_s == s.overhead_s == 0.0 for s in plain.steps)
    assert plain.prefill_s == 0.0 and plain.total_s > 0.0
    assert all(s.draft_s > 0 and s.verify_s > 0 for s in timed.steps) and timed.prefill_s > 0
    base = autoregressive_generate(target, prompt, 5)
    assert all(s.verify_s == 0.0 for s in base.steps) and base.prefill_s == 0.0
    assert all(
        s.verify_s > 0 for s in autoregressive_generate(target, prompt, 5, timing=True).steps
    )


def test_clock_synchronizes_the_device_only_when_enabled(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append(1))
    off = _Clock(torch.device("cuda"), enabled=False)
    assert [off.lap() for _ in range(5)] == [0.0] * 5 and calls == []
    on = _Clock(torch.device("cuda"), enabled=True)
    on.lap()
    on.lap()
    assert len(calls) == 2


@pytest.mark.parametrize("timing", [False, True])
def test_generate_greedy_is_unchanged_by_timing(timing):
    target = make_tiny_model("qwen2", seed=0)
    dec = SpeculativeDecoder(target, DraftModelDrafter(target), tree="static:small_10")
    res = dec.generate(torch.tensor([[5, 9]]), max_new_tokens=16, timing=timing)
    assert torch.equal(
        res.new_tokens, autoregressive_generate(target, torch.tensor([[5, 9]]), 16).new_tokens
    )
