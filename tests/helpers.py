"""Helpers shared by the tests (importable as ``helpers`` through pytest's pythonpath)."""

from __future__ import annotations

from adaspec.modeling import build_model, tiny_config


def make_tiny_model(family: str = "gpt_neox", seed: int = 0, vocab_size: int = 256, **kw):
    """A random tiny causal LM (hidden 32, 2 layers) for tests."""
    return build_model(tiny_config(family, vocab_size=vocab_size, **kw), seed=seed)


# A tiny pipeline config (synthetic data, GPT-NeoX models of width 32 and 16) for pipeline tests.
TINY_PIPELINE = {
    "seed": 0,
    "tokenizer": {"bpe_vocab_size": 300},
    "data": {
        "task": "synthetic",
        "num_synthetic_train": 48,
        "num_synthetic_eval": 3,
        "max_length": 96,
    },
    "target": {
        "model": {"family": "gpt_neox", "hidden_size": 32, "num_layers": 2, "num_heads": 4},
        "optim": {
            "epochs": 1,
            "learning_rate": 3e-3,
            "per_device_batch_size": 16,
            "disable_tqdm": True,
        },
    },
    "draft_model": {"family": "gpt_neox", "hidden_size": 16, "num_layers": 1, "num_heads": 2},
    "reference": {
        "optim": {
            "epochs": 1,
            "learning_rate": 3e-3,
            "per_device_batch_size": 16,
            "disable_tqdm": True,
        }
    },
    "draft": {"loss": {"k": 0.5}, "budget": {"modes": ["equal_steps", "equal_tokens"]}},
    "evaluation": {"num_examples": 2, "gamma": 3, "max_new_tokens": 12},
}
