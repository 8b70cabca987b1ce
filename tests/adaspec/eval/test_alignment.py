import pytest
import torch
from helpers import make_tiny_model

from adaspec.data import Example, tokenize_examples
from adaspec.eval.alignment import reference_alignment


def _examples():
    return [Example("Q: what is 2 plus 3?", " A: 5."), Example("Q: add 7 and 1.", " A: 7 + 1 = 8.")]


def test_reference_alignment_identical_draft_is_perfect(tiny_tokenizer):
    n = len(tiny_tokenizer)
    target = make_tiny_model(seed=1, vocab_size=n)
    out = reference_alignment(
        target, {"same": make_tiny_model(seed=1, vocab_size=n)}, tiny_tokenizer, _examples()
    )
    assert out["same"]["token_acceptance"] == pytest.approx(1.0, abs=1e-5)
    assert out["same"]["greedy_agreement"] == 1.0


def test_reference_alignment_matches_hand_computation(tiny_tokenizer):
    n = len(tiny_tokenizer)
    target, draft = make_tiny_model(seed=1, vocab_size=n), make_tiny_model(seed=2, vocab_size=n)
    examples = _examples()
    out = reference_alignment(target, {"d": draft}, tiny_tokenizer, examples)["d"]
    overlap, agree, n = 0.0, 0, 0
    for feat in tokenize_examples(examples, tiny_tokenizer, 1024)[0]:
        ids = torch.tensor([feat["input_ids"]])
        labels = torch.tensor(feat["labels"])
        t, d = target(ids).logits[0, :-1], draft(ids).logits[0, :-1]
        rows = (labels[1:] != -100).nonzero()[:, 0]
        p, q = t[rows].softmax(-1), d[rows].softmax(-1)
        overlap += float(torch.minimum(p, q).sum())
        agree += int((t[rows].argmax(-1) == d[rows].argmax(-1)).sum())
        n += len(rows)
    assert out["tokens"] == n
    assert out["token_acceptance"] == pytest.approx(overlap / n, rel=1e-5)
    assert out["greedy_agreement"] == pytest.approx(agree / n)
    assert out["token_acceptance"] < 1.0


def test_reference_alignment_left_truncation_scores_whole_responses(tiny_tokenizer):
    """A long prompt cut from the left (as XSUM is trained) keeps every response token scored."""
    n = len(tiny_tokenizer)
    target, draft = make_tiny_model(seed=1, vocab_size=n), make_tiny_model(seed=2, vocab_size=n)
    long_prompt = "Article: " + "the cat sat on the mat. " * 20 + "Summary:"
    examples = [Example(long_prompt, " A cat sat."), Example(long_prompt, " It was on a mat.")]
    full = reference_alignment(target, {"d": draft}, tiny_tokenizer, examples)["d"]["tokens"]
    response_tokens = sum(
        1
        for f in tokenize_examples(examples, tiny_tokenizer, 1024)[0]
        for x in f["labels"]
        if x != -100
    )
    assert full == response_tokens
    left = reference_alignment(
        target, {"d": draft}, tiny_tokenizer, examples, max_length=40, truncation_side="left"
    )["d"]
    right = reference_alignment(target, {"d": draft}, tiny_tokenizer, examples, max_length=40)["d"]
    assert left["tokens"] == response_tokens
    assert right["tokens"] < response_tokens
