import logging

import pytest

from adaspec.data import (
    IGNORE_INDEX,
    DataError,
    Example,
    adds_bos_token,
    build_prompt_ids,
    to_hf_dataset,
    tokenize_examples,
)
from adaspec.modeling import train_bpe_tokenizer

EXAMPLES = [
    Example("Question: what is 3 plus 4?\n", "Answer: 3 plus 4 is 7.", {}),
    Example("Question: what is 12 plus 9?\n", "Answer: 12 plus 9 is 21.", {}),
    Example("The quick brown fox\n", "jumps over the lazy dog.", {}),
]


class _BosTokenizer:
    """Wraps a tokenizer so that it prepends BOS like Llama's tokenizer does."""

    def __init__(self, tok):
        self._tok = tok
        self.bos_token_id = tok.bos_token_id
        self.eos_token_id = tok.eos_token_id

    def __call__(self, texts, add_special_tokens=True):
        out = self._tok(texts, add_special_tokens=False)
        if add_special_tokens:
            ids = out["input_ids"]
            if ids and isinstance(ids[0], list):
                return {"input_ids": [[self.bos_token_id, *x] for x in ids]}
            return {"input_ids": [self.bos_token_id, *ids]}
        return out


def _check_masking(features, examples, tokenizer):
    eos = tokenizer.eos_token_id
    for feat, ex in zip(features, examples):
        ids, labels = feat["input_ids"], feat["labels"]
        prompt_ids = build_prompt_ids(ex, tokenizer)
        n = len(prompt_ids)
        assert ids[:n] == prompt_ids
        assert labels[:n] == [IGNORE_INDEX] * n
        assert labels[n:] == ids[n:] and IGNORE_INDEX not in labels[n:]
        assert ids[-1] == eos and labels[-1] == eos
        assert feat["attention_mask"] == [1] * len(ids)
        # The response tokens decode back to the response text.
        decoded = getattr(tokenizer, "_tok", tokenizer).decode(ids[n:-1])
        assert decoded == ex.response


def test_tokenize_examples_masks_exactly_the_prompt(tiny_tokenizer):
    assert not adds_bos_token(tiny_tokenizer)
    features, report = tokenize_examples(EXAMPLES, tiny_tokenizer, max_length=512)
    assert len(features) == 3 and report.num_truncated == 0 and report.num_dropped == 0
    assert report.longest == max(len(f["input_ids"]) for f in features)
    _check_masking(features, EXAMPLES, tiny_tokenizer)


def test_tokenize_examples_prepends_bos_when_tokenizer_does(tiny_tokenizer):
    tok = _BosTokenizer(tiny_tokenizer)
    assert adds_bos_token(tok)
    features, _ = tokenize_examples(EXAMPLES, tok, max_length=512)
    assert all(f["input_ids"][0] == tok.bos_token_id for f in features)
    assert all(f["labels"][0] == IGNORE_INDEX for f in features)
    _check_masking(features, EXAMPLES, tok)


@pytest.fixture(scope="module")
def merging_tokenizer():
    """A BPE with merges (the 256-token fixture is character level)."""
    texts = [f"Question: what is {a} plus {b}?" for a in range(20) for b in range(20)]
    return train_bpe_tokenizer(texts, vocab_size=400)


def test_tokenize_examples_joint_tokenization_at_newline(merging_tokenizer):
    features, report = tokenize_examples(EXAMPLES, merging_tokenizer, max_length=512)
    assert report.num_separately_tokenized == 0
    for feat, ex in zip(features, EXAMPLES):
        joint = merging_tokenizer(ex.prompt + ex.response, add_special_tokens=False)["input_ids"]
        assert feat["input_ids"] == joint + [merging_tokenizer.eos_token_id]


def test_tokenize_examples_separate_tokenization_fallback(merging_tokenizer):
    # A prompt ending mid-word: the joint tokenization merges " plus" across the boundary, so
    # the response is tokenized on its own and the boundary stays exact.
    ex = [Example("Question: what is 3 pl", "us 4?", {})]
    joint = merging_tokenizer(ex[0].text, add_special_tokens=False)["input_ids"]
    prompt = build_prompt_ids(ex[0], merging_tokenizer)
    assert joint[: len(prompt)] != prompt  # the premise of this test
    features, report = tokenize_examples(ex, merging_tokenizer, max_length=64)
    n = len(prompt)
    assert report.num_separately_tokenized == 1
    assert features[0]["input_ids"][:n] == prompt
    assert features[0]["labels"][:n] == [IGNORE_INDEX] * n
    assert merging_tokenizer.decode(features[0]["input_ids"][n:-1]) == "us 4?"


TRUNC = [
    Example("Q\n", "a long response that goes on " * 4, {}),
    Example("a very long prompt that goes on " * 4 + "\n", "ok", {}),
    Example("Q\n", "ok", {}),
]


def test_truncation_report_counts_and_warns(tiny_tokenizer, caplog):
    lengths = [len(build_prompt_ids(e, tiny_tokenizer)) for e in TRUNC]
    full, _ = tokenize_examples(TRUNC, tiny_tokenizer, max_length=10_000)
    full_lengths = [len(f["input_ids"]) for f in full]
    max_length = 20
    assert lengths[0] < max_length < full_lengths[0] and lengths[1] > max_length
    assert full_lengths[2] <= max_length
    with caplog.at_level(logging.WARNING, logger="adaspec.data.sft"):
        features, report = tokenize_examples(TRUNC, tiny_tokenizer, max_length=max_length)
    assert (report.num_examples, report.num_truncated, report.num_dropped) == (3, 2, 1)
    assert report.longest == max(full_lengths) and report.max_length == max_length
    assert len(features) == 2
    assert [len(f["input_ids"]) for f in features] == [max_length, full_lengths[2]]
    # The truncated example keeps its prompt masked and its response head (EOS cut off).
    assert features[0]["input_ids"] == full[0]["input_ids"][:max_length]
    assert features[0]["labels"] == full[0]["labels"][:max_length]
    assert report.num_tokens == max_length + full_lengths[2]
    assert "2 truncated" in report.summary() and "1 dropped" in report.summary()
    assert "truncated" in caplog.text


def test_no_warning_without_truncation(tiny_tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger="adaspec.data.sft"):
        _, report = tokenize_examples(TRUNC, tiny_tokenizer, max_length=10_000)
    assert report.num_truncated == 0 and caplog.text == ""


def test_left_truncation_keeps_the_response(tiny_tokenizer):
    full, _ = tokenize_examples(EXAMPLES[:1], tiny_tokenizer, max_length=512)
    response_len = sum(v != IGNORE_INDEX for v in full[0]["labels"])
    features, report = tokenize_examples(
        EXAMPLES[:1], tiny_tokenizer, max_length=response_len + 2, truncation_side="left"
    )
    assert report.num_truncated == 1 and report.num_dropped == 0
    feat = features[0]
    assert len(feat["input_ids"]) == response_len + 2
    assert feat["input_ids"][2:] == full[0]["input_ids"][-response_len:]
    assert feat["labels"][:2] == [IGNORE_INDEX] * 2


def test_tokenize_examples_argument_errors(tiny_tokenizer):
    with pytest.raises(DataError, match="truncation_side"):
        tokenize_examples(EXAMPLES, tiny_tokenizer, 64, truncation_side="middle")
    with pytest.raises(DataError, match="max_length"):
        tokenize_examples(EXAMPLES, tiny_tokenizer, 1)


def test_to_hf_dataset_roundtrip(tiny_tokenizer):
    features, _ = tokenize_examples(EXAMPLES, tiny_tokenizer, max_length=512)
    ds = to_hf_dataset(features)
    assert len(ds) == 3 and ds[1]["labels"] == features[1]["labels"]
    assert len(to_hf_dataset([])) == 0


def test_tokenize_examples_every_example_dropped_is_an_error(tiny_tokenizer):
    long = [Example("what is " * 20, "seven", {}) for _ in range(3)]
    with pytest.raises(DataError, match=r"all 3 examples.*max_length=8.*longest=\d+.*max_length"):
        tokenize_examples(long, tiny_tokenizer, max_length=8)


def test_tokenize_examples_empty_responses_warned_with_count(tiny_tokenizer, caplog):
    examples = [EXAMPLES[0], Example("a prompt\n", "", {}), Example("another\n", "", {})]
    with caplog.at_level(logging.WARNING, logger="adaspec.data.sft"):
        features, _ = tokenize_examples(examples, tiny_tokenizer, max_length=64)
    assert len(features) == 3
    assert "2 of 3 examples have an empty response" in caplog.text
