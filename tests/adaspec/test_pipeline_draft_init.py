import json

import pytest

from adaspec.config import ConfigError
from adaspec.modeling import load_model
from adaspec.models.layers import same_prefix_weights
from adaspec.pipeline import run_pipeline
from adaspec.pipeline_config import PipelineConfig

OPTIM = {"epochs": 1, "learning_rate": 3e-3, "per_device_batch_size": 16, "disable_tqdm": True}


def _config(tmp_path, **changes):
    data = {
        "output_dir": str(tmp_path / "run"),
        "tokenizer": {"bpe_vocab_size": 300},
        "data": {
            "task": "synthetic",
            "num_synthetic_train": 32,
            "num_synthetic_eval": 2,
            "max_length": 96,
        },
        "target": {
            "model": {"family": "llama", "hidden_size": 32, "num_layers": 3, "num_heads": 4},
            "optim": OPTIM,
        },
        "reference": {"optim": OPTIM},
    }
    data.update(changes)
    return PipelineConfig.from_dict(data)


def test_pipeline_draft_init_from_target_layers(tmp_path):
    cfg = _config(tmp_path, draft_init={"from_target_layers": 1})
    run_pipeline(cfg, stages=("target", "reference"))
    out = tmp_path / "run"
    target = load_model(str(out / "target"))
    init = load_model(str(out / "draft_init"))
    assert init.config.num_hidden_layers == 1 and init.config.model_type == "llama"
    assert same_prefix_weights(target, init)
    reference = load_model(str(out / "reference"))
    assert reference.config.num_hidden_layers == 1
    record = json.loads((out / "pipeline_target-reference.json").read_text())
    assert record["training_data"] == {"responses": "gold"}
    assert record["chat_template"] is False


def test_pipeline_draft_init_rejects_zero_layers(tmp_path):
    with pytest.raises(ConfigError, match="draft_init.from_target_layers"):
        _config(tmp_path, draft_init={"from_target_layers": 0})


@pytest.mark.parametrize("freeze", [False, True])
def test_pipeline_freeze_embeddings_keeps_head_and_trains_layers(tmp_path, freeze):
    import torch

    cfg = _config(
        tmp_path,
        draft_init={"from_target_layers": 1, "freeze_embeddings": freeze},
        draft={"loss": {"k": 0.5}},
        evaluation={"enabled": False},
    )
    run_pipeline(cfg)
    out = tmp_path / "run"
    init = load_model(str(out / "draft_init")).state_dict()
    for name in ("reference", "adaspec-equal_steps"):
        trained = load_model(str(out / name)).state_dict()
        head_same = torch.equal(
            trained["model.embed_tokens.weight"], init["model.embed_tokens.weight"]
        )
        layer = "model.layers.0.mlp.down_proj.weight"
        assert head_same == freeze, name
        assert not torch.equal(trained[layer], init[layer]), name
