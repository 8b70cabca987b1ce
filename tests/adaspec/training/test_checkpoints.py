import pytest
import torch
from helpers import make_tiny_model

from adaspec.training.checkpoints import (
    COMMIT_MARKER,
    is_complete_model_dir,
    latest_complete_checkpoint,
    save_final,
)


def test_latest_complete_checkpoint_skips_unfinished(tmp_path):
    for step, complete in ((10, True), (20, True), (30, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / COMMIT_MARKER).write_text(str(step))
    assert latest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-20")


def test_latest_complete_checkpoint_none_when_missing(tmp_path):
    assert latest_complete_checkpoint(tmp_path / "absent") is None
    (tmp_path / "checkpoint-5").mkdir()
    assert latest_complete_checkpoint(tmp_path) is None


def test_save_final_atomic_overwrite_roundtrip(tmp_path, tiny_tokenizer):
    from adaspec.modeling import load_model

    target = tmp_path / "model"
    save_final(make_tiny_model(seed=1), target, tiny_tokenizer)
    model = make_tiny_model(seed=2)
    save_final(model, target, tiny_tokenizer)
    assert is_complete_model_dir(target)
    assert not (tmp_path / "model.tmp").exists() and not (tmp_path / "model.old").exists()
    loaded = load_model(str(target))
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_load_checkpoint_weights_maps_gpt_neox_head_and_refuses_missing_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    from adaspec.training.checkpoints import load_checkpoint_weights

    trained = make_tiny_model("gpt_neox", seed=1)
    trained.save_pretrained(tmp_path / "ckpt")
    assert "embed_out.weight" in load_file(tmp_path / "ckpt" / "model.safetensors")
    fresh = make_tiny_model("gpt_neox", seed=2)
    load_checkpoint_weights(fresh, tmp_path / "ckpt")
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    weights = load_file(tmp_path / "ckpt" / "model.safetensors")
    del weights["embed_out.weight"]
    weights["extra.weight"] = torch.zeros(1)
    save_file(weights, tmp_path / "ckpt" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing keys \['lm_head.weight'\].*'extra.weight'"):
        load_checkpoint_weights(make_tiny_model("gpt_neox", seed=2), tmp_path / "ckpt")


def test_save_total_limit_one_deletes_the_old_checkpoint_only_after_the_new_commits(
    tmp_path, tiny_tokenizer, monkeypatch
):
    """With save_total_limit=1, a kill at any moment must leave a committed checkpoint."""
    import shutil

    from transformers import TrainingArguments

    from adaspec.data import (
        DataCollatorForCompletion,
        make_synthetic_examples,
        to_hf_dataset,
        tokenize_examples,
    )
    from adaspec.training.trainers import TargetTrainer

    features, _ = tokenize_examples(make_synthetic_examples(16, seed=0), tiny_tokenizer, 96)
    run_dir = tmp_path / "ckpts"
    deletions = []
    real_rmtree = shutil.rmtree

    def recording_rmtree(path, *args, **kwargs):
        path = type(run_dir)(path)
        if path.parent == run_dir:  # a checkpoint is deleted: is a newer committed one on disk?
            others = [c for c in run_dir.glob("checkpoint-*") if c != path]
            deletions.append(any((c / COMMIT_MARKER).exists() for c in others))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", recording_rmtree)
    args = TrainingArguments(
        output_dir=str(run_dir),
        max_steps=3,
        per_device_train_batch_size=4,
        save_strategy="steps",
        save_steps=1,
        save_total_limit=1,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=True,
    )
    TargetTrainer(
        model=make_tiny_model(vocab_size=len(tiny_tokenizer)),
        args=args,
        train_dataset=to_hf_dataset(features),
        data_collator=DataCollatorForCompletion(tiny_tokenizer),
        processing_class=tiny_tokenizer,
    ).train()
    assert len(deletions) == 2 and all(deletions), deletions
    assert [c.name for c in run_dir.glob("checkpoint-*")] == ["checkpoint-3"]
    assert latest_complete_checkpoint(run_dir) == str(run_dir / "checkpoint-3")
