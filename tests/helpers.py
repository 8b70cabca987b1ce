"""Helpers shared by the tests (importable as ``helpers`` through pytest's pythonpath)."""

from __future__ import annotations

from adaspec.modeling import build_model, tiny_config


def make_tiny_model(family: str = "gpt_neox", seed: int = 0, vocab_size: int = 256, **kw):
    """A random tiny causal LM (hidden 32, 2 layers) for tests."""
    return build_model(tiny_config(family, vocab_size=vocab_size, **kw), seed=seed)
