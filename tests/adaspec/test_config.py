from dataclasses import dataclass

import pytest

from adaspec.config import ConfigBase, ConfigError, cfg_field, check_range, save_config


@dataclass
class Inner(ConfigBase):
    k: float = cfg_field(0.4, help="fraction kept")

    def validate(self) -> None:
        super().validate()
        check_range("k", self.k, 0.0, 1.0, low_open=True)


@dataclass
class Outer(ConfigBase):
    name: str = cfg_field("x", help="a name")
    inner: Inner = cfg_field(Inner, help="inner section")
    tags: list = cfg_field([], help="tags")


def test_config_from_dict_nested():
    cfg = Outer.from_dict({"name": "y", "inner": {"k": 0.5}})
    assert cfg.inner.k == 0.5 and cfg.name == "y"


def test_config_unknown_key_named_with_suggestion():
    with pytest.raises(ConfigError, match=r"'inner\.kk'.*did you mean 'k'"):
        Outer.from_dict({"inner": {"kk": 0.5}})


def test_config_range_check_names_field_and_value():
    with pytest.raises(ConfigError, match=r"inner\.k must be in \(0\.0, 1\.0\], got 1\.5"):
        Outer.from_dict({"inner": {"k": 1.5}})


def test_config_yaml_roundtrip_with_override(tmp_path):
    path = save_config(Outer(), tmp_path)
    cfg = Outer.from_yaml(path, overrides=["inner.k=0.25"])
    assert cfg.inner.k == 0.25


def test_check_range_open_low():
    with pytest.raises(ConfigError):
        check_range("k", 0.0, 0.0, 1.0, low_open=True)
    check_range("k", 1.0, 0.0, 1.0, low_open=True)


@dataclass
class Numbers(ConfigBase):
    lr: float = cfg_field(1e-3, help="a float")
    steps: int = cfg_field(1, help="an int")


def test_config_yaml_scientific_notation_is_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-05\nsteps: '20'\n")
    cfg = Numbers.from_yaml(path)
    assert cfg.lr == 1e-5 and cfg.steps == 20


def test_config_non_number_named(tmp_path):
    with pytest.raises(ConfigError, match="lr must be a number, got 'fast'"):
        Numbers.from_dict({"lr": "fast"})
