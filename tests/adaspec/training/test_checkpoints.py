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
