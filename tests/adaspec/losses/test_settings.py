import dataclasses

import pytest
import torch

from adaspec.config import ConfigError
from adaspec.losses import (
    SelectiveLossSettings,
    adaspec_token_loss,
    divergences,
    selection,
    token_divergence,
)


def test_selective_loss_settings_frozen_and_rejects_bad_values_when_built():
    settings = SelectiveLossSettings(k=1)
    assert settings.k == 1.0 and isinstance(settings.k, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.k = 0.5
    for changes, pattern in [
        ({"k": 0.0}, r"k must be in \(0, 1\]"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"beta": 1.5}, r"beta must be in \[0, 1\]"),
        ({"selection": "confidence"}, "selection signal must be one of"),
        ({"chunk_size": 0}, "chunk_size must be a positive int"),
        ({"k": "0.4"}, "k must be a number"),
    ]:
        with pytest.raises(ConfigError, match=pattern):
            SelectiveLossSettings(**changes)


def test_selective_loss_settings_from_dict_rejects_unknown_keys():
    assert SelectiveLossSettings.from_dict({"k": 0.5, "selection": "random"}).selection == "random"
    with pytest.raises(ConfigError, match="unknown config key 'kk'"):
        SelectiveLossSettings.from_dict({"kk": 0.5})


def test_selective_loss_settings_plain_kd_keeps_every_token():
    plain = SelectiveLossSettings(k=0.3, selection="random", divergence="jsd").plain_kd()
    assert (plain.k, plain.selection, plain.divergence) == (1.0, "delta", "jsd")


def test_adaspec_token_loss_validates_settings_only_when_built(monkeypatch):
    settings = SelectiveLossSettings(k=0.4, divergence="jsd", temperature=2.0, beta=0.3)
    calls = []
    for module, name in [
        (divergences, "check_temperature_beta"),
        (divergences, "check_divergence"),
        (selection, "check_signal"),
    ]:
        original = getattr(module, name)
        monkeypatch.setattr(
            module, name, lambda *a, _o=original, _n=name: calls.append(_n) or _o(*a)
        )
    draft, target, ref = (torch.randn(3, 7, 11) for _ in range(3))
    valid = torch.rand(3, 7) > 0.2
    out = adaspec_token_loss(draft, target, ref, valid, settings)
    assert calls == []  # no check runs again per call
    want = token_divergence(draft, target, "jsd", 2.0, 0.3)
    torch.testing.assert_close(out.per_token[valid], want[valid])
