"""Quality metrics of generated text: GSM8K accuracy, MBPP pass@1 and ROUGE-L.

Speculative decoding with greedy verification returns exactly the target's greedy text, so these
metrics describe the target (or a draft run on its own); they are reported beside the acceptance
rate so that a faster setup can be checked to say the same thing.

* GSM8K: :func:`extract_gsm8k_answer` reads the final number of a generation (the
  ``The final answer is: N`` line our formatter teaches, then ``#### N``, then the last number).
* MBPP: :func:`mbpp_pass_at_1` runs the candidate and the task's asserts in a fresh, isolated
  ``python -I`` subprocess in a temporary directory, under a wall-clock limit and (on POSIX)
  address-space and CPU limits. Generated code is never executed in this process.
* XSUM / CNN-DailyMail: :func:`rouge_l`, an LCS-based ROUGE-L matching the ``rouge_score``
  package's ``rougeL`` with its default tokenizer (lowercase, non ``[a-z0-9]`` characters become
  spaces, whitespace split). Porter stemming is off by default (``rouge_score`` also defaults to
  ``use_stemmer=False``); ``use_stemmer=True`` needs ``nltk``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from adaspec.eval.execution import extract_code, mbpp_pass_at_1, run_python_tests

__all__ = [
    "canonical_task",
    "corpus_rouge_l",
    "extract_code",
    "extract_gsm8k_answer",
    "gsm8k_accuracy",
    "gsm8k_correct",
    "lcs_length",
    "mbpp_pass_at_1",
    "mean_dicts",
    "normalize_number",
    "rouge_l",
    "rouge_tokenize",
    "run_python_tests",
    "score",
]

# --------------------------------------------------------------------------------------------
# GSM8K
# --------------------------------------------------------------------------------------------

_NUMBER = r"-?\$?\s*-?\d[\d,]*(?:\.\d+)?|-?\$?\s*-?\.\d+"
_FINAL_ANSWER = re.compile(r"final answer is\s*:?\s*(?:\*\*)?\s*(" + _NUMBER + ")", re.IGNORECASE)
_HASHES = re.compile(r"####\s*(" + _NUMBER + ")")
_ANY_NUMBER = re.compile(_NUMBER)


def normalize_number(text: str) -> str | None:
    """Canonical form of a number as written in a GSM8K answer.

    Removes ``$``, thousands separators, spaces and a trailing ``.``; ``-0`` becomes ``0`` and a
    value with only zeros after the decimal point loses them (``18.00`` -> ``18``).

    Args:
        text: A number such as ``"$1,234.50"``.

    Returns:
        The normalized string (``"1234.5"``), or ``None`` if no number is left.

    """
    s = text.strip().replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    if s.startswith("--"):
        s = s[2:]
    if not s or not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", s):
        return None
    if "." in s:
        s = s.rstrip("0").rstrip(".")
        if s.startswith("."):
            s = "0" + s
        elif s.startswith("-."):
            s = "-0" + s[1:]
    neg = s.startswith("-")
    digits = s[1:] if neg else s
    int_part, dot, frac = digits.partition(".")
    int_part = int_part.lstrip("0") or "0"
    digits = int_part + (dot + frac if frac else "")
    if digits in ("0", ""):
        return "0"
    return ("-" if neg else "") + digits


def extract_gsm8k_answer(text: str | None) -> str | None:
    """Read the final numeric answer from a GSM8K solution or generation.

    Looks, in order, for the last ``The final answer is: N`` (what the adaspec formatter writes),
    the last ``#### N`` (the dataset's own format), then the last number anywhere in the text.

    Args:
        text: A generated solution, or a gold answer field.

    Returns:
        The normalized number (see :func:`normalize_number`), or ``None`` if there is none.

    """
    if not text:
        return None
    for pattern in (_FINAL_ANSWER, _HASHES):
        found = pattern.findall(text)
        if found:
            value = normalize_number(found[-1])
            if value is not None:
                return value
    for candidate in reversed(_ANY_NUMBER.findall(text)):
        value = normalize_number(candidate)
        if value is not None:
            return value
    return None


def gsm8k_correct(generation: str, gold: str) -> bool:
    """Whether ``generation``'s final answer equals ``gold`` (a number or a full gold solution)."""
    gold_value = extract_gsm8k_answer(gold)
    if gold_value is None:
        raise ValueError(
            f"GSM8K gold answer {gold!r} contains no number; pass the dataset's 'answer' field "
            "(ending in '#### N') or the bare number"
        )
    return extract_gsm8k_answer(generation) == gold_value


def gsm8k_accuracy(generations: Sequence[str], golds: Sequence[str]) -> float:
    """Fraction of generations whose final answer matches the gold answer.

    Args:
        generations: Generated solutions.
        golds: Gold answers (bare numbers or full solutions ending in ``#### N``), same length.

    Returns:
        Accuracy in ``[0, 1]`` (0.0 for empty input).

    """
    if len(generations) != len(golds):
        raise ValueError(
            f"gsm8k_accuracy got {len(generations)} generations but {len(golds)} gold answers; "
            "pass one gold answer per generation"
        )
    if not generations:
        return 0.0
    return sum(gsm8k_correct(g, a) for g, a in zip(generations, golds)) / len(generations)


# --------------------------------------------------------------------------------------------
# ROUGE-L
# --------------------------------------------------------------------------------------------

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokenize(text: str, use_stemmer: bool = False) -> list[str]:
    """Tokenize like ``rouge_score``'s default tokenizer.

    Lowercases, replaces every run of characters outside ``[a-z0-9]`` by a space, and splits on
    whitespace. With ``use_stemmer``, tokens longer than 3 characters are Porter-stemmed (needs
    ``nltk``; ``rouge_score`` ships its own copy of the same algorithm).
    """
    tokens = _NON_ALNUM.sub(" ", text.lower()).split()
    if use_stemmer:
        try:
            from nltk.stem.porter import PorterStemmer
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "rouge_l(use_stemmer=True) needs nltk for the Porter stemmer: pip install nltk "
                "(or leave use_stemmer=False, the default)"
            ) from err
        stemmer = PorterStemmer()
        tokens = [stemmer.stem(t) if len(t) > 3 else t for t in tokens]
    return tokens


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence of two sequences (O(len(a) * len(b)) time)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str, use_stemmer: bool = False) -> dict[str, float]:
    """Sentence-level ROUGE-L between a prediction and a reference.

    Args:
        prediction: Generated text.
        reference: Reference text (the gold summary).
        use_stemmer: Porter-stem tokens longer than 3 characters (off by default; needs nltk).

    Returns:
        ``{"precision": lcs / len(prediction), "recall": lcs / len(reference), "f": F1}`` over
        tokens; all zero when either side has no token.

    """
    pred = rouge_tokenize(prediction, use_stemmer)
    ref = rouge_tokenize(reference, use_stemmer)
    if not pred or not ref:
        return {"precision": 0.0, "recall": 0.0, "f": 0.0}
    lcs = lcs_length(pred, ref)
    precision = lcs / len(pred)
    recall = lcs / len(ref)
    f = 0.0 if lcs == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f": f}


def corpus_rouge_l(
    predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = False
) -> dict[str, float]:
    """Mean of the sentence-level :func:`rouge_l` scores over a corpus (0.0 for empty input)."""
    if len(predictions) != len(references):
        raise ValueError(
            f"corpus_rouge_l got {len(predictions)} predictions but {len(references)} "
            "references; pass one reference per prediction"
        )
    scores = [rouge_l(p, r, use_stemmer) for p, r in zip(predictions, references)]
    return mean_dicts(scores, keys=("precision", "recall", "f"))


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

TASK_ALIASES = {
    "gsm8k": "gsm8k",
    "mbpp": "mbpp",
    "xsum": "xsum",
    "cnn_dailymail": "cnn_dailymail",
    "cnn_dm": "cnn_dailymail",
    "cnndm": "cnn_dailymail",
    "cnn": "cnn_dailymail",
    "synthetic": "synthetic",
}


def canonical_task(task: str | None) -> str | None:
    """Map a task name to its metric family (``None`` for tasks without a quality metric)."""
    if task is None:
        return None
    return TASK_ALIASES.get(task.lower().replace("-", "_").replace("/", "_"))


def _meta(example: Any) -> Mapping[str, Any]:
    meta = getattr(example, "meta", None)
    if meta is None and isinstance(example, Mapping):
        meta = example.get("meta", example)
    return meta or {}


def score(
    task: str | None, generation: str, example: Any, timeout: float = 5.0
) -> dict[str, float]:
    """Quality metrics of one generation for its task.

    Args:
        task: ``gsm8k``, ``mbpp``, ``xsum``, ``cnn_dailymail`` (aliases ``cnn_dm``, ``cnndm``),
            ``synthetic``; any other task gives no metric.
        generation: The generated text (prompt excluded).
        example: The data layer's ``Example`` (or a dict) whose ``meta`` holds ``answer``
            (GSM8K), ``test_list`` and ``test_setup_code`` (MBPP) or ``reference`` (summaries).
        timeout: MBPP execution limit in seconds.

    Returns:
        ``{"accuracy": 0/1}`` for GSM8K, ``{"pass@1": 0/1}`` for MBPP,
        ``{"rougeL_precision", "rougeL_recall", "rougeL_f"}`` for summaries,
        ``{"exact_match": 0/1}`` (whole response) for the synthetic task, ``{}`` otherwise.

    Raises:
        KeyError: If the example lacks the field the task needs, naming it.

    """
    kind = canonical_task(task)
    if kind is None:
        return {}
    if kind == "synthetic":
        response = getattr(example, "response", None)
        if response is None and isinstance(example, Mapping):
            response = example.get("response")
        if response is None:
            raise KeyError("task 'synthetic' scores exact match and needs example.response")
        return {"exact_match": float(generation.strip() == str(response).strip())}
    meta = _meta(example)
    need = {"gsm8k": "answer", "mbpp": "test_list"}.get(kind, "reference")
    if need not in meta:
        raise KeyError(
            f"task {task!r} needs example.meta[{need!r}] but the example's meta has "
            f"{sorted(meta)}; build the examples with the adaspec.data formatter for {kind}"
        )
    if kind == "gsm8k":
        return {"accuracy": float(gsm8k_correct(generation, str(meta["answer"])))}
    if kind == "mbpp":
        passed = mbpp_pass_at_1(
            extract_code(generation),
            list(meta["test_list"]),
            meta.get("test_setup_code", "") or "",
            timeout=timeout,
        )
        return {"pass@1": float(passed)}
    r = rouge_l(generation, str(meta["reference"]))
    return {"rougeL_precision": r["precision"], "rougeL_recall": r["recall"], "rougeL_f": r["f"]}


def mean_dicts(
    rows: Iterable[Mapping[str, float]], keys: Sequence[str] | None = None
) -> dict[str, float]:
    """Per-key mean of a list of metric dicts (keys missing from a row are skipped for it)."""
    rows = list(rows)
    if keys is None:
        keys = sorted({k for r in rows for k in r})
    out = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if k in r]
        out[k] = sum(vals) / len(vals) if vals else 0.0
    return out
