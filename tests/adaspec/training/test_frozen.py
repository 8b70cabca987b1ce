import pytest
import torch
from helpers import make_tiny_model
from transformers import Trainer, TrainingArguments

from adaspec.training.frozen import deepspeed_zero_stage, prepare_frozen_model


def _trainer(tmp_path, **kw):
    args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, save_strategy="no", **kw
    )
    return Trainer(model=make_tiny_model(seed=9), args=args)


@pytest.mark.parametrize(
    "precision, dtype", [({}, torch.float32), ({"bf16": True}, torch.bfloat16)]
)
def test_prepare_frozen_model_freezes_and_casts(tmp_path, precision, dtype):
    trainer = _trainer(tmp_path, **precision)
    assert deepspeed_zero_stage(trainer) is None
    model = make_tiny_model(seed=1).train()
    frozen = prepare_frozen_model(model, trainer)
    assert not frozen.training
    assert all(not p.requires_grad for p in frozen.parameters())
    assert {p.dtype for p in frozen.parameters()} == {dtype}
    assert {p.device for p in frozen.parameters()} == {trainer.args.device}
    # The student is untouched.
    assert all(p.requires_grad for p in trainer.model.parameters())
