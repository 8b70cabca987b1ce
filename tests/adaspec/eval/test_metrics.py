import pytest

from adaspec.eval.metrics import (
    canonical_task,
    corpus_rouge_l,
    extract_gsm8k_answer,
    gsm8k_accuracy,
    lcs_length,
    mean_dicts,
    normalize_number,
    rouge_l,
    rouge_tokenize,
    score,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step 1: 3 + 4 = 7.\nThe final answer is:  18", "18"),  # our formatter: two spaces
        ("The final answer is: $1,234.", "1234"),
        ("She pays 5 dollars.\n#### 72", "72"),
        ("the final answer is 7, not #### 8", "7"),  # formatter line wins over ####
        ("first 3, then 5 and finally 6.", "6"),  # last number
        ("The final answer is: -0", "0"),
        ("The final answer is: 18.00", "18"),
        ("#### -$5.50", "-5.5"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_gsm8k_answer_known_strings(text, expected):
    assert extract_gsm8k_answer(text) == expected


def test_normalize_number_forms():
    assert normalize_number("$1,000") == "1000"
    assert normalize_number("007") == "7"
    assert normalize_number("-0.0") == "0"
    assert normalize_number(".50") == "0.5"
    assert normalize_number("abc") is None


def test_gsm8k_accuracy_counts_matches():
    generations = ["The final answer is: 18", "#### 3", "I think 41", "nothing"]
    golds = ["18", "Janet ... #### 3", "42", "5"]
    assert gsm8k_accuracy(generations, golds) == pytest.approx(0.5)
    assert gsm8k_accuracy([], []) == 0.0


def test_gsm8k_accuracy_rejects_length_mismatch():
    with pytest.raises(ValueError, match="gold answer"):
        gsm8k_accuracy(["1"], [])


def test_rouge_tokenize_matches_rouge_score_default():
    from rouge_score.tokenize import tokenize

    text = "Hello, World! It's 2024."
    assert rouge_tokenize(text) == tokenize(text, None) == ["hello", "world", "it", "s", "2024"]


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_l_matches_rouge_score_package(use_stemmer):
    """Sentence ROUGE-L and the corpus mean equal the ``rouge-score`` package's on random text."""
    import random

    from rouge_score import rouge_scorer

    rng = random.Random(0)
    words = "the cats running ran quickly jumped over a lazy dogs it's 2024 Hello, world!".split()
    preds = [" ".join(rng.choices(words, k=rng.randint(0, 14))) for _ in range(40)]
    refs = [" ".join(rng.choices(words, k=rng.randint(1, 14))) for _ in range(40)]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    fs = []
    for pred, ref in zip(preds, refs):
        want = scorer.score(ref, pred)["rougeL"]
        got = rouge_l(pred, ref, use_stemmer=use_stemmer)
        assert got["precision"] == pytest.approx(want.precision)
        assert got["recall"] == pytest.approx(want.recall)
        assert got["f"] == pytest.approx(want.fmeasure)
        fs.append(want.fmeasure)
    corpus = corpus_rouge_l(preds, refs, use_stemmer=use_stemmer)
    assert corpus["f"] == pytest.approx(sum(fs) / len(fs))


def test_lcs_length_hand_computed():
    assert lcs_length("ABCBDAB", "BDCABA") == 4
    assert lcs_length([], [1, 2]) == 0
    assert lcs_length([1, 2, 3], [1, 2, 3]) == 3


def test_rouge_l_hand_computed():
    r = rouge_l("the cat sat on the mat", "the cat is on the mat")
    # LCS = "the cat on the mat" = 5 tokens of 6 on both sides
    assert r["precision"] == pytest.approx(5 / 6)
    assert r["recall"] == pytest.approx(5 / 6)
    assert r["f"] == pytest.approx(5 / 6)
    r = rouge_l("A B C D", "b d e")
    p, rec = 2 / 4, 2 / 3
    assert (r["precision"], r["recall"]) == (pytest.approx(p), pytest.approx(rec))
    assert r["f"] == pytest.approx(2 * p * rec / (p + rec))


def test_rouge_l_identical_and_disjoint():
    assert rouge_l("Hello, world!", "hello world") == {"precision": 1.0, "recall": 1.0, "f": 1.0}
    assert rouge_l("alpha beta", "gamma delta")["f"] == 0.0
    assert rouge_l("", "gamma")["f"] == 0.0


def test_corpus_rouge_l_is_mean():
    out = corpus_rouge_l(["a b", "x"], ["a b", "y"])
    assert out["f"] == pytest.approx(0.5)
    assert out["precision"] == pytest.approx(0.5)


def test_score_dispatches_by_task():
    gsm = {"meta": {"answer": "18"}}
    assert score("gsm8k", "The final answer is: 18", gsm) == {"accuracy": 1.0}
    assert score("gsm8k", "The final answer is: 17", gsm) == {"accuracy": 0.0}
    summ = {"meta": {"reference": "the cat sat"}}
    out = score("cnn_dm", "the cat sat", summ)
    assert out["rougeL_f"] == pytest.approx(1.0)
    assert score("xsum", "dog", summ)["rougeL_f"] == 0.0
    assert score("alpaca", "anything", {"meta": {}}) == {}
    assert canonical_task("CNN-DailyMail") == "cnn_dailymail"


def test_score_mbpp_runs_tests():
    ex = {"meta": {"test_list": ["assert add(2, 3) == 5"], "test_setup_code": ""}}
    gen = "```python\ndef add(a, b):\n    return a + b\n```\nThis adds."
    assert score("mbpp", gen, ex) == {"pass@1": 1.0}


def test_score_missing_meta_names_field():
    with pytest.raises(KeyError, match="answer"):
        score("gsm8k", "1", {"meta": {"reference": "x"}})


def test_mean_dicts_per_key():
    assert mean_dicts([{"a": 1.0}, {"a": 0.0, "b": 1.0}]) == {"a": 0.5, "b": 1.0}


def test_score_synthetic_exact_match():
    from adaspec.data import Example

    ex = Example("Q: copy [a, b].\n", "A: the list is [a, b]. Done.", {"kind": "copy"})
    assert score("synthetic", "A: the list is [a, b]. Done.\n", ex) == {"exact_match": 1.0}
    assert score("synthetic", "A: the list is [b, a]. Done.", ex) == {"exact_match": 0.0}
