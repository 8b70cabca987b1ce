"""adaspec.training.stages: OptimConfig -> TrainingArguments, model building, stage errors."""

import pytest
import torch
from helpers import make_tiny_model

from adaspec.training.config import ModelSpec, OptimConfig
from adaspec.training.stages import build_or_load_model, run_stage, training_arguments


def test_training_arguments_maps_every_optim_field(tmp_path):
    optim = OptimConfig(
        epochs=2.0,
        max_steps=7,
        learning_rate=3e-4,
        lr_scheduler_type="linear",
        warmup_ratio=0.25,
        weight_decay=0.05,
        per_device_batch_size=3,
        gradient_accumulation_steps=5,
        max_grad_norm=0.5,
        logging_steps=2,
        save_steps=4,
        save_total_limit=1,
        dataloader_num_workers=0,
        seed=11,
    )
    args = training_arguments(optim, tmp_path / "ckpt", run_name="reference")
    assert args.output_dir == str(tmp_path / "ckpt") and args.run_name == "reference"
    assert (args.num_train_epochs, args.max_steps) == (2.0, 7)
    assert args.learning_rate == 3e-4 and args.lr_scheduler_type.value == "linear"
    assert args.warmup_steps == 0.25  # transformers 5: a float below 1 is a ratio
    assert args.weight_decay == 0.05 and args.max_grad_norm == 0.5
    assert args.per_device_train_batch_size == args.per_device_eval_batch_size == 3
    assert args.gradient_accumulation_steps == 5
    assert (args.logging_steps, args.save_steps, args.save_total_limit) == (2, 4, 1)
    assert args.save_strategy.value == "steps"
    assert args.seed == args.data_seed == 11
    assert args.remove_unused_columns is False
    assert args.report_to == []  # no loggers: "none"


def test_training_arguments_drops_none_from_report_to_and_passes_switches(tmp_path):
    optim = OptimConfig(report_to=["none", "tensorboard"], disable_tqdm=True)
    args = training_arguments(optim, tmp_path, run_name="x")
    assert args.report_to == ["tensorboard"]
    assert args.disable_tqdm is True
    unset = training_arguments(OptimConfig(disable_tqdm=None), tmp_path, run_name="x")
    assert unset.disable_tqdm is not None  # left to transformers' default


def test_build_or_load_model_builds_the_spec_deterministically():
    spec = ModelSpec(family="llama", hidden_size=32, num_layers=3, num_heads=4)
    a = build_or_load_model(spec, vocab_size=50, seed=3)
    b = build_or_load_model(spec, vocab_size=50, seed=3)
    c = build_or_load_model(spec, vocab_size=50, seed=4)
    assert a.config.model_type == "llama"
    assert (a.config.hidden_size, a.config.num_hidden_layers) == (32, 3)
    assert a.get_output_embeddings().weight.shape[0] == 50
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_build_or_load_model_fresh_dtype_and_attention():
    spec = ModelSpec(hidden_size=32, num_heads=4, dtype="bfloat16", attn_implementation="eager")
    model = build_or_load_model(spec, vocab_size=40)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"


def test_build_or_load_model_loads_a_saved_folder(tmp_path):
    saved = make_tiny_model("qwen2", vocab_size=64)
    saved.save_pretrained(tmp_path / "m")
    spec = ModelSpec(name_or_path=str(tmp_path / "m"), hidden_size=999)  # fields ignored
    loaded = build_or_load_model(spec, vocab_size=12)
    assert loaded.config.model_type == "qwen2" and loaded.config.hidden_size == 32
    for (name, p), (_, q) in zip(saved.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize(
    ("stage", "match"),
    [
        ("reference", "the reference stage needs target_model"),
        ("draft", "the draft stage needs target_model"),
        ("teacher", "stage must be 'target', 'reference' or 'draft', got 'teacher'"),
    ],
)
def test_run_stage_refuses_a_missing_teacher_or_unknown_stage(tmp_path, stage, match):
    model = make_tiny_model("gpt_neox", vocab_size=32)
    with pytest.raises(ValueError, match=match):
        run_stage(
            stage,
            model,
            None,
            [],
            OptimConfig(max_steps=1),
            tmp_path / "out",
            data_collator=None,
        )
    assert not (tmp_path / "out").exists()
