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


def run_pipeline_killed_at(argv: list[str], folder_name: str, step: int, hard: bool = True) -> int:
    """Run the ``adaspec`` CLI, killed at the end of optimizer step ``step`` of one stage.

    The stage is the one writing ``output_dir/<folder_name>``. ``hard`` sends this process
    SIGKILL (call it in a subprocess); otherwise :class:`StageKilled` is raised.
    """
    import os
    import signal
    from pathlib import Path

    from transformers import TrainerCallback

    import adaspec.pipeline as pipeline_module
    from adaspec.cli import main

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                if hard:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise StageKilled(f"{folder_name} killed at step {step}")

    real = pipeline_module.run_stage

    def run_stage(kind, model, tokenizer, dataset, optim, folder, **kwargs):
        if Path(folder).name == folder_name:
            kwargs["callbacks"] = [Kill()]
        return real(kind, model, tokenizer, dataset, optim, folder, **kwargs)

    pipeline_module.run_stage = run_stage
    try:
        return main(argv)
    finally:
        pipeline_module.run_stage = real


class StageKilled(BaseException):
    """Stands in for SIGKILL in in-process tests (a BaseException, so no handler swallows it)."""
