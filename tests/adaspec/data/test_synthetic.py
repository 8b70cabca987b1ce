import re
import statistics

import pytest

from adaspec.data import (
    SYNTHETIC_KINDS,
    DataError,
    lookup_code,
    make_synthetic_examples,
    make_synthetic_records,
    synthetic_tokenizer_texts,
)
from adaspec.data.synthetic import LOOKUP_WORDS
from adaspec.modeling import train_bpe_tokenizer


def test_synthetic_same_seed_same_data_different_seed_different():
    a = make_synthetic_examples(50, seed=3)
    b = make_synthetic_examples(50, seed=3)
    c = make_synthetic_examples(50, seed=4)
    assert [(e.prompt, e.response, e.meta) for e in a] == [
        (e.prompt, e.response, e.meta) for e in b
    ]
    assert [e.prompt for e in a] != [e.prompt for e in c]


def test_synthetic_mixed_covers_every_kind():
    kinds = {e.meta["kind"] for e in make_synthetic_examples(100, seed=0)}
    assert kinds == set(SYNTHETIC_KINDS)


def test_synthetic_answers_are_correct():
    for ex in make_synthetic_examples(40, seed=1, kind="add"):
        a, b, c = map(int, re.findall(r"\d+", ex.prompt))
        assert ex.meta["answer"] == str(a + b + c)
        assert ex.response.endswith(f"The answer is {a + b + c}.")
    for ex in make_synthetic_examples(40, seed=1, kind="count"):
        letter, word = re.search(r"letter (\w) appear in '(\w+)'", ex.prompt).groups()
        assert ex.meta["answer"] == str(word.count(letter))
    for ex in make_synthetic_examples(20, seed=1, kind="reverse"):
        items = re.search(r"\[(.*)\]", ex.prompt).group(1).split(", ")
        assert ex.meta["answer"] == "[" + ", ".join(reversed(items)) + "]"


def test_synthetic_hard_spans_hold_computed_values_and_rest_is_easy():
    examples = make_synthetic_examples(200, seed=2)
    for ex in examples:
        spans = ex.meta["hard_spans"]
        values = [ex.response[s:e] for s, e in spans]
        kind = ex.meta["kind"]
        if kind in ("copy", "reverse"):
            assert spans == []
            continue
        assert values and all(v.isdigit() for v in values)
        if kind == "lookup":
            words = re.findall(r"code of (\w+) is", ex.response)
            assert values == [str(lookup_code(w)) for w in words]
            assert all(w in ex.prompt for w in words)  # the words themselves are copies
        # Outside the hard spans (and the "step 1:" template), every number is a copy.
        easy = ex.response
        for s, e in reversed(spans):
            easy = easy[:s] + " " + easy[e:]
        easy = re.sub(r"step \d:", "", easy)
        seen = set(re.findall(r"\d+", ex.prompt)) | set(values)
        assert set(re.findall(r"\d+", easy)) <= seen


def test_lookup_table_is_fixed_across_seeds():
    codes = {}
    for seed in range(3):
        for ex in make_synthetic_examples(30, seed=seed, kind="lookup"):
            for word, code in re.findall(r"code of (\w+) is (\d+)", ex.response):
                assert codes.setdefault(word, code) == code
    assert len(LOOKUP_WORDS) == len(set(LOOKUP_WORDS)) >= 100
    assert all(100 <= lookup_code(w) <= 999 for w in LOOKUP_WORDS)


def test_synthetic_length_with_small_bpe():
    tok = train_bpe_tokenizer(synthetic_tokenizer_texts(n=600), vocab_size=512)
    lengths = [len(tok(e.text)["input_ids"]) for e in make_synthetic_examples(200, seed=0)]
    assert 40 <= statistics.mean(lengths) <= 80
    assert min(lengths) >= 30 and max(lengths) <= 90


def test_synthetic_bad_arguments():
    with pytest.raises(DataError, match="unknown synthetic kind"):
        make_synthetic_records(3, kind="multiply")
    with pytest.raises(DataError, match=">= 0"):
        make_synthetic_records(-1)
