import pytest
from helpers import make_tiny_model

from adaspec.config import ConfigError
from adaspec.pipeline_config import PipelineConfig


@pytest.mark.parametrize("section", ["target.model", "draft_model"])
def test_pipeline_config_max_length_beyond_fresh_model_positions(section):
    data = {"data": {"max_length": 512}}
    node = data
    for part in section.split("."):
        node = node.setdefault(part, {})
    node["max_position_embeddings"] = 256
    with pytest.raises(ConfigError, match=rf"data\.max_length=512.*{section}.*256 positions"):
        PipelineConfig.from_dict(data)


def test_pipeline_max_length_beyond_loaded_model_positions(tmp_path):
    from adaspec.pipeline import Pipeline

    make_tiny_model(max_position_embeddings=32).save_pretrained(tmp_path / "target")
    config = PipelineConfig.from_dict(
        {
            "output_dir": str(tmp_path / "run"),
            "data": {"max_length": 64, "num_synthetic_train": 8, "num_synthetic_eval": 2},
            "tokenizer": {"bpe_vocab_size": 260},
            "target": {"model": {"name_or_path": str(tmp_path / "target")}},
        }
    )
    with pytest.raises(ConfigError, match=r"data\.max_length=64.*target.*32 positions"):
        Pipeline(config).target()
