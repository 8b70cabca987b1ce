import copy

import pytest
import torch
from helpers import make_tiny_model

import adaspec.eval.evaluate as evaluate_module
from adaspec.data import make_synthetic_examples
from adaspec.eval import evaluate_models
from adaspec.eval.target_outputs import TargetOutputCache, weights_fingerprint

KW = dict(gamma=3, max_new_tokens=16, progress=False, quality=False, keep_samples=False,
          alpha_method="teacher_forced", warmup=False)  # fmt: skip


def _models(tiny_tokenizer):
    target = make_tiny_model("llama", seed=1, vocab_size=len(tiny_tokenizer)).eval()
    draft = make_tiny_model("llama", seed=2, vocab_size=len(tiny_tokenizer)).eval()
    return target, draft


def test_target_outputs_cache_reuses_the_targets_continuations(tiny_tokenizer, tmp_path,
                                                               monkeypatch):  # fmt: skip
    target, draft = _models(tiny_tokenizer)
    examples = make_synthetic_examples(3, seed=3)
    path = tmp_path / "cache" / "target.jsonl"
    first = evaluate_models(target, {"d": draft}, tiny_tokenizer, examples,
                            target_outputs=str(path), **KW)  # fmt: skip
    assert first["settings"]["target_outputs_cached"] == 0
    assert len(path.read_text().splitlines()) == 3

    def no_decoding(*args, **kwargs):
        raise AssertionError("the target was decoded although its outputs are cached")

    monkeypatch.setattr(evaluate_module, "autoregressive_generate", no_decoding)
    again = evaluate_models(target, {"d": draft}, tiny_tokenizer, examples,
                            target_outputs=str(path), **KW)  # fmt: skip
    assert again["settings"]["target_outputs_cached"] == 3
    assert again["drafts"]["d"] == first["drafts"]["d"]
    assert again["target"]["new_tokens"] == first["target"]["new_tokens"]
    # Another target (one weight changed) misses every entry: it would decode.
    other = copy.deepcopy(target)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1.0
    with pytest.raises(AssertionError, match="decoded although"):
        evaluate_models(other, {"d": draft}, tiny_tokenizer, examples,
                        target_outputs=str(path), **KW)  # fmt: skip


def test_target_outputs_cache_keys_and_torn_lines(tiny_tokenizer, tmp_path):
    target, draft = _models(tiny_tokenizer)
    assert weights_fingerprint(target) == weights_fingerprint(copy.deepcopy(target))
    assert weights_fingerprint(target) != weights_fingerprint(draft)
    path = tmp_path / "t.jsonl"
    cache = TargetOutputCache(path, target)
    key = cache.key([1, 2, 3], 16, [0])
    assert key != cache.key([1, 2, 3], 17, [0]) and key != cache.key([1, 2], 16, [0])
    cache.put(key, [5, 6], 0.5)
    with path.open("a") as f:
        f.write('{"key": "torn", "tok')  # a run killed mid-write
    reread = TargetOutputCache(path, target)
    assert reread.get(key) == ([5, 6], 0.5) and reread.get("torn") is None
    other = reread.key([4], 16, [0])
    reread.put(other, [7], 0.1)
    assert TargetOutputCache(path, target).get(other) == ([7], 0.1)
