from dataclasses import dataclass
from typing import Literal

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
    with pytest.raises(ConfigError, match="lr must be a number.*, got 'fast'"):
        Numbers.from_dict({"lr": "fast"})


# ---- type checks of every field (issue 14, item 6) ------------------------------------------


@dataclass
class Typed(ConfigBase):
    flag: bool = cfg_field(False, help="a bool")
    count: int = cfg_field(1, help="an int")
    ratio: float = cfg_field(0.5, help="a float")
    maybe_ratio: float | None = cfg_field(None, help="an optional float")
    names: list[str] = cfg_field(["a"], help="a list of strings")
    sizes: tuple[int, ...] = cfg_field((1, 2), help="a tuple of ints")
    mode: Literal["fast", "slow"] = cfg_field("fast", help="a literal")
    table: dict[str, str] = cfg_field({}, help="a mapping")
    inner: Inner = cfg_field(Inner, help="a section")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("flag", "maybe", "true or false"),
        ("flag", 1, "true or false"),
        ("count", 1.5, "a whole number"),
        ("count", True, "a whole number"),
        ("count", [1], "a whole number"),
        ("ratio", [0.4], "a number"),
        ("ratio", None, "a number"),
        ("ratio", True, "a number"),
        ("maybe_ratio", "x", "a number (float) or null"),
        ("names", "abc", "a list"),
        ("names", [1], "names[0] must be a string, got 1"),
        ("sizes", "12", "a list"),
        ("mode", "medium", "one of"),
        ("table", ["a"], "a mapping"),
        ("table", {"a": 1}, "table['a'] must be a string, got 1"),
        ("inner", 5, "a section"),
    ],
)
def test_config_wrong_type_names_field_value_and_type(key, value, expected):
    with pytest.raises(ConfigError) as err:
        Typed.from_dict({key: value})
    message = str(err.value)
    assert message.startswith(key) and expected in message, message
    assert repr(value) in message or expected.endswith("got 1"), message


def test_config_right_types_accepted():
    cfg = Typed.from_dict(
        {"flag": True, "count": 2.0, "ratio": 1, "maybe_ratio": None, "names": ["x", "y"]}
    )
    assert cfg.count == 2 and isinstance(cfg.count, int) and cfg.ratio == 1.0
    assert Typed.from_dict({"sizes": [3, 4], "mode": "slow", "table": {"a": "b"}}).sizes == [3, 4]


def test_config_wrong_type_nested_path_named():
    with pytest.raises(ConfigError, match=r"^inner\.k must be a number.*got \[0\.4\]"):
        Typed.from_dict({"inner": {"k": [0.4]}})


def test_config_wrong_type_checked_on_direct_construction():
    with pytest.raises(ConfigError, match="count must be a whole number"):
        Typed(count="3")


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("draft.loss.k=[0.4]", r"draft\.loss\.k must be a number.*\[0\.4\]"),
        ("draft.loss.k=null", r"draft\.loss\.k must be a number.*None"),
        ("draft.budget.modes=equal_steps", r"draft\.budget\.modes must be a list.*'equal_steps'"),
        ("teacher_cache=maybe", r"teacher_cache must be true or false.*'maybe'"),
        (
            "reference.optim.per_device_batch_size=1.5",
            r"reference\.optim\.per_device_batch_size must be a whole number.*1\.5",
        ),
    ],
)
def test_pipeline_config_issue_cases_refused(tmp_path, override, pattern):
    from adaspec.pipeline_config import PipelineConfig

    path = tmp_path / "c.yaml"
    path.write_text("seed: 0\n")
    with pytest.raises(ConfigError, match=pattern):
        PipelineConfig.from_yaml(path, overrides=[override])


def test_config_optional_section_written_as_null_stays_off():
    from adaspec.pipeline_config import PipelineConfig

    off = PipelineConfig.from_dict({"draft_pretrain": None, "draft": {"optim": None}})
    assert off.draft_pretrain is None and off.draft.optim is None
    on = PipelineConfig.from_dict({"draft_pretrain": {"epochs": 2}})
    assert on.draft_pretrain.epochs == 2
    # A section that is not optional written as null takes its defaults.
    assert PipelineConfig.from_dict({"evaluation": None}).evaluation.gamma == 4
