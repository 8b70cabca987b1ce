"""Config machinery: nested dataclasses with help text and range checks, built from dicts/YAML.

Every config in the project is a dataclass deriving from :class:`ConfigBase`. Fields carry their
help text in ``metadata={"help": ...}`` (use :func:`cfg_field`), checks live in ``validate``, and
unknown keys are refused with the list of valid ones. This module sits at the bottom of the
package (it imports nothing from ``adaspec``), so the decoding core can use it; the public name
is :mod:`adaspec.config`, which re-exports it and adds saving and ``--help-config`` text.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T", bound="ConfigBase")


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the field, the value and the fix."""


def cfg_field(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:  # noqa: A002
    """A dataclass field with help text; mutable defaults go through ``default_factory``."""
    metadata = {"help": help}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> None:
    """Raise :class:`ConfigError` unless ``value`` lies in the given (half-)open interval."""
    bad = (low is not None and (value <= low if low_open else value < low)) or (
        high is not None and (value >= high if high_open else value > high)
    )
    if bad:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ConfigError(
            f"{name} must be in {interval}, got {value!r}" + (f": {hint}" if hint else "")
        )


def check_choice(name: str, value: Any, choices: typing.Iterable[Any]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")


def strip_optional(tp: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None``; any other type unchanged."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Turn YAML strings such as ``1e-5`` (which YAML 1.1 reads as text) into the field's number type."""
    if value is None or tp not in (int, float) or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value) if tp is float else value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if tp is int:
            if not number.is_integer():
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
            return int(number)
        return number
    return value


@dataclasses.dataclass
class ConfigBase:
    """Base class: YAML loading with unknown-key rejection, validation, and saving."""

    def validate(self) -> None:
        """Check ranges and choices; subclasses extend and call ``super().validate()``."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ConfigBase):
                value.validate()

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
        """Build from a nested dict, refusing keys the dataclass does not have.

        Raises:
            ConfigError: Naming the unknown key, its path, the closest valid key and all valid keys.
        """
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = [k for k in data if k not in fields]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown config key {prefix + str(key)!r}{hint} valid keys of "
                f"{prefix.rstrip('.') or cls.__name__}: {sorted(fields)}"
            )
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            tp = strip_optional(hints[name])
            if (
                isinstance(tp, type)
                and issubclass(tp, ConfigBase)
                and (isinstance(value, dict) or value is None)
            ):
                kwargs[name] = tp.from_dict(value, prefix=f"{prefix}{name}.")
            else:
                kwargs[name] = _coerce(prefix + name, tp, value)
        try:
            return cls(**kwargs)
        except ConfigError as err:
            if prefix and not str(err).startswith(prefix):
                raise ConfigError(f"{prefix}{err}") from None
            raise

    @classmethod
    def from_yaml(cls: type[T], path: str | os.PathLike, overrides: list[str] | None = None) -> T:
        """Load from a YAML file, then apply ``key.sub=value`` overrides (values parsed as YAML)."""
        text = Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path}: the top level of a config must be a mapping, got {type(data).__name__}"
            )
        for item in overrides or []:
            apply_override(data, item)
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain nested dicts and lists."""
        return dataclasses.asdict(self)

    def replace(self: T, **changes: Any) -> T:
        """A copy with some top-level fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one ``a.b.c=value`` override to a nested dict (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)
