"""Shared fixtures: tiny tokenizers and tiny models of each supported family, built offline."""

from __future__ import annotations

import random

import pytest
import torch

from adaspec.modeling import train_bpe_tokenizer

torch.set_num_threads(1)

_CORPUS = [
    f"Question: what is {a} plus {b}? Answer: {a} plus {b} is {a + b}."
    for a in range(30)
    for b in range(0, 30, 3)
] + ["The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b\n"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE of 256 tokens; ids 0/1/2 are BOS/EOS/PAD."""
    return train_bpe_tokenizer(_CORPUS, vocab_size=256)


@pytest.fixture(params=["gpt_neox", "llama", "qwen2"])
def family(request) -> str:
    return request.param
