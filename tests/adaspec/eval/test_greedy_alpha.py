import copy

import pytest
import torch
from helpers import make_tiny_model

from adaspec.data import make_synthetic_examples
from adaspec.decoding import acceptance_counts
from adaspec.eval import evaluate_models
from adaspec.eval.greedy_alpha import simulate_greedy_chain


def test_simulate_greedy_chain_hand_built_rounds():
    agree = [True, True, False, True, True, True, True, True, False]
    rounds = simulate_greedy_chain(agree, gamma=4)
    assert [(r.accepted, r.committed, r.rejected_depth) for r in rounds] == [
        (2, 3, 3),  # two accepted, the third rejected, the correction committed
        (4, 5, None),  # all four accepted plus the bonus token
        (0, 1, 1),  # the last token: rejected, corrected
    ]
    counts = acceptance_counts(rounds)
    assert (counts["accepted"], counts["rejected"]) == (6, 2)
    # The end of the continuation cuts the last round: no rejection is counted there.
    tail = simulate_greedy_chain([True, True], gamma=4)
    assert [(r.accepted, r.committed) for r in tail] == [(2, 2)]
    assert acceptance_counts(tail)["rejected"] == 0
    with pytest.raises(ValueError, match="gamma"):
        simulate_greedy_chain(agree, gamma=0)


def _noisy_copy(model, scale, seed):
    noisy = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * p.std().clamp_min(1e-3))
    return noisy.eval()


@pytest.mark.parametrize("family", ["gpt_neox", "llama", "qwen2"])
def test_teacher_forced_alpha_equals_decoded_alpha(tiny_tokenizer, family):
    n = len(tiny_tokenizer)
    target = make_tiny_model(family, seed=1, vocab_size=n).eval()
    drafts = {"close": _noisy_copy(target, 0.2, 0), "far": _noisy_copy(target, 0.5, 1)}
    examples = make_synthetic_examples(4, seed=3)
    kw = dict(gamma=3, max_new_tokens=24, progress=False, quality=False, keep_samples=False)
    decoded = evaluate_models(target, drafts, tiny_tokenizer, examples, **kw)
    forced = evaluate_models(
        target, drafts, tiny_tokenizer, examples, alpha_method="teacher_forced", **kw
    )
    for name in drafts:
        d, f = decoded["drafts"][name], forced["drafts"][name]
        assert d["identical_to_target"] is True
        for key in ("alpha", "accepted", "rejected", "rounds", "acceptance_by_position"):
            assert f[key] == d[key], (name, key)
        assert f["identical_to_target"] is None and f["num_checked"] == 0
    # The drafts differ, so the comparison is not between two trivial numbers.
    alphas = {name: decoded["drafts"][name]["alpha"] for name in drafts}
    assert 0 < alphas["far"] < alphas["close"] < 1
    assert forced["settings"]["alpha_method"] == "teacher_forced"


def test_evaluate_models_rejects_unknown_alpha_method(tiny_tokenizer):
    target = make_tiny_model(vocab_size=len(tiny_tokenizer))
    with pytest.raises(ValueError, match="alpha_method"):
        evaluate_models(target, {"d": target}, tiny_tokenizer, make_synthetic_examples(1),
                        alpha_method="guess", progress=False)  # fmt: skip
