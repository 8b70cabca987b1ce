"""Kill-and-resume of each stage kind and each model family against an uninterrupted run."""

import json

import pytest
import torch
from helpers import make_tiny_model
from transformers import TrainerCallback

import adaspec.training.stages as stages_module
from adaspec.data import (
    DataCollatorForCompletion,
    make_synthetic_examples,
    to_hf_dataset,
    tokenize_examples,
)
from adaspec.modeling import load_model
from adaspec.training.checkpoints import COMMIT_MARKER
from adaspec.training.config import LossConfig, OptimConfig
from adaspec.training.stages import run_stage

STEPS = 6


class Killed(Exception):
    """Stands in for a SIGKILL in the in-process tests."""


class KillAtStep(TrainerCallback):
    """Raises :class:`Killed` at the end of optimizer step ``step`` (before it is logged or saved)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed at step {self.step}")


@pytest.fixture(scope="module")
def dataset(tiny_tokenizer):
    examples = make_synthetic_examples(24, seed=0)
    features, _ = tokenize_examples(examples, tiny_tokenizer, max_length=64)
    return to_hf_dataset(features)


def _optim(**kw):
    base = dict(
        max_steps=STEPS,
        learning_rate=1e-2,
        per_device_batch_size=4,
        logging_steps=1,
        save_steps=2,
        save_total_limit=2,
        disable_tqdm=True,
        seed=0,
    )
    base.update(kw)
    return OptimConfig(**base)


def _run(stage, family, out, tokenizer, dataset, callbacks=None, **optim):
    n = len(tokenizer)
    kwargs = {}
    if stage != "target":
        kwargs["target_model"] = make_tiny_model(family, seed=1, vocab_size=n)
        kwargs["loss"] = LossConfig(k=0.5 if stage == "draft" else 1.0)
    if stage == "draft":
        kwargs["ref_model"] = make_tiny_model(family, seed=2, vocab_size=n)
    return run_stage(
        stage,
        make_tiny_model(family, seed=3, vocab_size=n).train(),
        tokenizer,
        dataset,
        _optim(**optim),
        out,
        data_collator=DataCollatorForCompletion(tokenizer),
        callbacks=callbacks,
        **kwargs,
    )


def _losses(folder):
    history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def _assert_same_run(resumed_dir, straight_dir):
    want, got = _losses(straight_dir), _losses(resumed_dir)
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-4, abs=1e-6), step
    a = load_model(str(straight_dir)).state_dict()
    b = load_model(str(resumed_dir)).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("stage", ["target", "reference", "draft"])
@pytest.mark.parametrize("family", ["gpt_neox", "llama", "qwen2"])
def test_run_stage_killed_then_resumed_matches_uninterrupted(
    tmp_path, tiny_tokenizer, dataset, family, stage
):
    straight = tmp_path / "straight"
    _run(stage, family, straight, tiny_tokenizer, dataset)
    resumed = tmp_path / "resumed"
    with pytest.raises(Killed):
        _run(stage, family, resumed, tiny_tokenizer, dataset, callbacks=[KillAtStep(3)])
    assert not resumed.exists()
    ckpts = resumed.with_name("resumed-checkpoints")
    assert (ckpts / "checkpoint-2" / COMMIT_MARKER).exists()
    _run(stage, family, resumed, tiny_tokenizer, dataset)
    _assert_same_run(resumed, straight)


@pytest.mark.parametrize("family", ["gpt_neox", "llama", "qwen2"])
def test_run_stage_killed_during_final_save_keeps_the_trained_head(
    tmp_path, tiny_tokenizer, dataset, family, monkeypatch
):
    straight = tmp_path / "straight"
    _run("reference", family, straight, tiny_tokenizer, dataset)
    resumed = tmp_path / "resumed"
    real_save = stages_module.save_final

    def dies(*args, **kwargs):
        raise Killed("killed during the final save")

    monkeypatch.setattr(stages_module, "save_final", dies)
    with pytest.raises(Killed):
        _run("reference", family, resumed, tiny_tokenizer, dataset)
    monkeypatch.setattr(stages_module, "save_final", real_save)
    _run("reference", family, resumed, tiny_tokenizer, dataset)
    a = load_model(str(straight)).get_output_embeddings().weight
    b = load_model(str(resumed)).get_output_embeddings().weight
    init = make_tiny_model(family, seed=3, vocab_size=len(tiny_tokenizer))
    assert not torch.equal(b, init.get_output_embeddings().weight)
    torch.testing.assert_close(b, a)
