import pytest

from adaspec.config import ConfigError
from adaspec.training.config import LossConfig


def test_loss_config_k_at_follows_schedule():
    const = LossConfig(k=0.4)
    assert [const.k_at(p) for p in (0.0, 0.5, 1.0)] == [0.4, 0.4, 0.4]
    step = LossConfig(k=0.4, k_schedule="step", k_start=1.0, k_schedule_fraction=0.5)
    assert [step.k_at(p) for p in (0.0, 0.49, 0.5, 0.9)] == [1.0, 1.0, 0.4, 0.4]
    linear = LossConfig(k=0.4, k_schedule="linear", k_start=1.0, k_schedule_fraction=0.5)
    assert linear.k_at(0.0) == 1.0
    assert linear.k_at(0.25) == pytest.approx(0.7)
    assert linear.k_at(0.5) == linear.k_at(1.0) == 0.4


def test_loss_config_plain_kd_drops_schedule_and_signal():
    cfg = LossConfig(k=0.4, k_schedule="linear", k_start=0.8, selection="random").plain_kd()
    assert (cfg.k, cfg.k_schedule, cfg.selection) == (1.0, "constant", "delta")
    assert cfg.k_at(0.0) == 1.0


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"selection": "confidence"}, "selection"),
        ({"k_schedule": "cosine"}, "k_schedule"),
        ({"k_start": 0.0}, "k_start"),
        ({"k_schedule_fraction": 1.5}, "k_schedule_fraction"),
    ],
)
def test_loss_config_rejects_bad_selection_settings(changes, field):
    with pytest.raises(ConfigError, match=field):
        LossConfig.from_dict(changes)
