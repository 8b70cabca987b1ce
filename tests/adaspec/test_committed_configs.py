"""Every committed pipeline config loads, validates and names the run folder its script expects."""

from pathlib import Path

import pytest

from adaspec.pipeline_config import PipelineConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "paper").glob("*.yaml")) + sorted(
    (ROOT / "configs" / "cpu").glob("*.yaml")
)


def test_committed_configs_are_found():
    assert len(CONFIGS) >= 20


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_config_loads(path):
    config = PipelineConfig.from_yaml(path)
    assert 0 < config.draft.loss.k <= 1
    assert config.output_dir
    if path.parent.name == "cpu":
        # scripts/cpu_results.sh TASK reads configs/cpu/TASK.yaml and writes runs/cpu/TASK-s<seed>.
        assert Path(config.output_dir).name == f"{path.stem}-s0"
