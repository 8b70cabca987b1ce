"""Every committed EAGLE training and benchmark config loads and validates."""

from pathlib import Path

import pytest

from adaspec_eagle.bench_config import BenchConfig
from adaspec_eagle.train import EagleTrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("folder", "cls"), [("eagle", EagleTrainConfig), ("bench", BenchConfig)], ids=["eagle", "bench"]
)
def test_committed_eagle_configs_load(folder, cls):
    paths = sorted((ROOT / "configs" / folder).glob("*.yaml"))
    assert paths, f"no config in configs/{folder}"
    for path in paths:
        assert isinstance(cls.from_yaml(path), cls), path
