"""A seeded synthetic task with easy and hard tokens, for the offline demo and the tests.

AdaSPEC helps because a small draft cannot learn every token its target can: it filters out the
tokens the draft finds hard and spends its capacity on the ones it can match. This task makes
that split explicit. Every example mixes

* EASY tokens: fixed template text ("Task: ...", "The answer is", "Done.") and copies of
  content that appears earlier in the sequence (operands, list items, words), and
* HARD tokens: values that need computation or memorization beyond a tiny model's capacity:
  sums of two-digit numbers, letter counts, and codes from a fixed pseudo-random lookup table
  (the same table for every seed, so a larger target can memorize it).

Kinds: ``add`` (three-number sum in two steps), ``copy``, ``reverse`` (a list), ``count``
(letters in a word), ``lookup`` (codes of three words), and ``mixed`` (a uniform mix). Each
example is about 40-65 tokens with a 512-token BPE trained on :func:`synthetic_tokenizer_texts`
(a 256-token byte-level BPE has no merges and gives about 85-145).
``meta`` holds ``kind``, ``answer`` (the exact answer string for scoring) and ``hard_spans``
(character ``[start, end)`` spans of the hard values inside the response).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from adaspec.data.example import DataError, Example
from adaspec.data.formatters import FORMATTERS

KINDS = ("add", "copy", "reverse", "count", "lookup")
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
NUM_LOOKUP_WORDS = 128


def _lookup_words() -> list[str]:
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    words = sorted({a + b for a in syllables for b in syllables})
    random.Random(1234).shuffle(words)
    return sorted(words[:NUM_LOOKUP_WORDS])


LOOKUP_WORDS: tuple[str, ...] = tuple(_lookup_words())


def lookup_code(word: str) -> int:
    """Return the fixed, seed-independent code (100-999) of a lookup word (a stable hash)."""
    digest = hashlib.sha256(word.encode("utf-8")).hexdigest()
    return 100 + int(digest[:8], 16) % 900


class _Builder:
    """Accumulates a response and records the character spans of hard values."""

    def __init__(self) -> None:
        self.text = ""
        self.hard: list[list[int]] = []

    def easy(self, s: str) -> _Builder:
        self.text += s
        return self

    def hard_value(self, s: str) -> _Builder:
        self.hard.append([len(self.text), len(self.text) + len(s)])
        self.text += s
        return self


def _add(rng: random.Random) -> dict[str, Any]:
    a, b, c = (rng.randint(10, 99) for _ in range(3))
    s1, s2 = a + b, a + b + c
    prompt = f"Task: addition.\nQ: add {a}, {b} and {c}.\n"
    r = _Builder().easy(f"A: step 1: {a} + {b} = ").hard_value(str(s1))
    r.easy(f". step 2: {s1} + {c} = ").hard_value(str(s2)).easy(f". The answer is {s2}.")
    return {"prompt": prompt, "response": r.text, "answer": str(s2), "hard_spans": r.hard}


def _items(rng: random.Random) -> list[str]:
    return [rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(5, 8))]


def _copy(rng: random.Random) -> dict[str, Any]:
    items = ", ".join(_items(rng))
    prompt = f"Task: copy.\nQ: copy the list [{items}].\n"
    response = f"A: the list is [{items}]. Done."
    return {"prompt": prompt, "response": response, "answer": f"[{items}]", "hard_spans": []}


def _reverse(rng: random.Random) -> dict[str, Any]:
    items = _items(rng)
    fwd, rev = ", ".join(items), ", ".join(reversed(items))
    prompt = f"Task: reverse.\nQ: reverse the list [{fwd}].\n"
    response = f"A: reversed, the list is [{rev}]. Done."
    return {"prompt": prompt, "response": response, "answer": f"[{rev}]", "hard_spans": []}


def _count(rng: random.Random) -> dict[str, Any]:
    word = "".join(rng.choice("abcde") for _ in range(rng.randint(8, 12)))
    letter = rng.choice("abcde")
    n = word.count(letter)
    prompt = f"Task: count.\nQ: how many times does the letter {letter} appear in '{word}'?\n"
    r = _Builder().easy(f"A: the letter {letter} appears ").hard_value(str(n))
    r.easy(f" times in '{word}'. The answer is {n}.")
    return {"prompt": prompt, "response": r.text, "answer": str(n), "hard_spans": r.hard}


def _lookup(rng: random.Random) -> dict[str, Any]:
    words = rng.sample(LOOKUP_WORDS, 3)
    prompt = f"Task: lookup.\nQ: what are the codes of {words[0]}, {words[1]} and {words[2]}?\n"
    r = _Builder().easy("A:")
    for i, w in enumerate(words):
        r.easy(f" the code of {w} is ").hard_value(str(lookup_code(w))).easy("," if i < 2 else ".")
    r.easy(" Done.")
    answer = ",".join(str(lookup_code(w)) for w in words)
    return {"prompt": prompt, "response": r.text, "answer": answer, "hard_spans": r.hard}


_GENERATORS = {"add": _add, "copy": _copy, "reverse": _reverse, "count": _count, "lookup": _lookup}


def make_synthetic_records(n: int, seed: int = 0, kind: str = "mixed") -> list[dict[str, Any]]:
    """Raw synthetic records (``prompt``, ``response``, ``kind``, ``answer``, ``hard_spans``).

    Args:
        n: Number of records.
        seed: Seed; the same seed gives the same records on every machine.
        kind: One of :data:`KINDS`, or ``"mixed"`` for a uniform mix.

    Raises:
        DataError: For an unknown kind or a negative ``n``.

    """
    if kind != "mixed" and kind not in _GENERATORS:
        raise DataError(f"unknown synthetic kind {kind!r}; valid kinds: {['mixed', *KINDS]}")
    if n < 0:
        raise DataError(f"number of synthetic examples must be >= 0, got {n}")
    rng = random.Random(f"adaspec-synthetic-{seed}")
    records = []
    for _ in range(n):
        k = rng.choice(KINDS) if kind == "mixed" else kind
        records.append({**_GENERATORS[k](rng), "kind": k})
    return records


def make_synthetic_examples(n: int, seed: int = 0, kind: str = "mixed") -> list[Example]:
    """Synthetic :class:`Example` objects (see :func:`make_synthetic_records`)."""
    return [FORMATTERS["synthetic"](r) for r in make_synthetic_records(n, seed, kind)]


def synthetic_tokenizer_texts(n: int = 2000, seed: int = 1_000_003) -> list[str]:
    """Texts for training a tiny BPE tokenizer that covers the synthetic task.

    Includes ``n`` full examples of every kind (a different seed from the usual training data)
    and every lookup word, so that e.g. ``train_bpe_tokenizer(synthetic_tokenizer_texts(), 512)``
    gives a vocabulary fit for the demo.
    """
    texts = [r["prompt"] + r["response"] for r in make_synthetic_records(n, seed)]
    return texts + [" ".join(LOOKUP_WORDS)]
