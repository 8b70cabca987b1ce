"""Config machinery: nested dataclasses with help text and range checks, built from dicts/YAML.

Every config in the project is a dataclass deriving from :class:`ConfigBase`. Fields carry their
help text in ``metadata={"help": ...}`` (use :func:`cfg_field`), checks live in ``validate``, and
unknown keys are refused with the list of valid ones. This module sits at the bottom of the
package (it imports nothing from ``adaspec``), so the decoding core can use it; the public name
is :mod:`adaspec.config`, which re-exports it and adds saving and ``--help-config`` text.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import numbers
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


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """Turn YAML strings such as ``1e-5`` (which YAML 1.1 reads as text) into the field's number type.

    Whole floats such as ``2.0`` become ints for int fields and ints become floats for float
    fields; anything else is left for :func:`check_type` to judge.
    """
    tp = strip_optional(hint)
    if value is None or tp not in (int, float) or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if tp is float:
            return float(value)
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _type_error(name, hint, value) from None
        if tp is int:
            if not number.is_integer():
                raise _type_error(name, hint, value)
            return int(number)
        return number
    return value


def _expected(tp: Any) -> str:
    """How a type hint reads in an error message ("a whole number (int)", "a list of strings")."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_expected(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number (int)"
    if tp is float:
        return "a number (float)"
    if tp is str:
        return "a string"
    if tp in (list, tuple) or origin in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        return "a list" + (f" of {_expected(inner[0])} items" if len(inner) == 1 else "")
    if tp is dict or origin is dict:
        return "a mapping" + (f" of {_expected(args[0])} to {_expected(args[1])}" if args else "")
    if isinstance(tp, type) and issubclass(tp, ConfigBase):
        return f"a section (a mapping of {tp.__name__} keys)"
    return getattr(tp, "__name__", str(tp))


def _type_error(name: str, tp: Any, value: Any) -> ConfigError:
    shown = "None (null)" if value is None else f"{value!r} ({type(value).__name__})"
    fix = ""
    if isinstance(value, str) and _expected(tp).startswith("a list"):
        fix = f": write a YAML list, e.g. [{value}]"
    elif value is None:
        fix = ": null is not allowed here, give a value or leave the key out for the default"
    return ConfigError(f"{name} must be {_expected(tp)}, got {shown}{fix}")


def _matches(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the type ``tp`` (shallow for containers)."""
    origin = typing.get_origin(tp)
    if tp is Any or isinstance(tp, (str, TypeVar)):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple))
    if tp is dict or origin in (dict, collections.abc.Mapping):
        return isinstance(value, collections.abc.Mapping)
    check = origin or tp
    return not isinstance(check, type) or isinstance(value, check)


def check_type(name: str, tp: Any, value: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` fits the type hint ``tp``.

    Bools are not numbers, ints accept no fractions, floats accept ints, lists accept lists and
    tuples (never a bare string), mappings and the items of lists and mappings are checked too,
    ``Literal`` values must be listed, ``X | None`` accepts null.

    Args:
        name: The field's path, used in the message (``draft.loss.k``).
        tp: The field's type hint.
        value: The value read.

    Raises:
        ConfigError: Naming the field, the value, its type and the expected type.
    """
    if not _matches(tp, value):
        raise _type_error(name, tp, value)
    if value is None:
        return
    tp = strip_optional(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple, collections.abc.Sequence) and args:
        item_types = [a for a in args if a is not Ellipsis]
        if len(item_types) == 1:
            for i, item in enumerate(value):
                check_type(f"{name}[{i}]", item_types[0], item)
    elif origin in (dict, collections.abc.Mapping) and len(args) == 2:
        for key, item in value.items():
            check_type(f"{name} key", args[0], key)
            check_type(f"{name}[{key!r}]", args[1], item)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name in hints}


class ConfigBase:
    """Base class: YAML loading with unknown-key rejection, validation, and saving.

    Subclasses are dataclasses (frozen or not: the base itself is a plain class with no fields,
    so a frozen settings object such as :class:`adaspec.losses.SelectiveLossSettings` can derive
    from it too).
    """

    def validate(self) -> None:
        """Check types, ranges and choices; subclasses extend and call ``super().validate()`` first.

        Every field is checked against its type hint (see :func:`check_type`) before any range
        check runs, so ``k: [0.4]`` or ``teacher_cache: maybe`` are refused by name.
        """
        for name, tp in _field_types(type(self)).items():
            check_type(name, tp, getattr(self, name))
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
            section = isinstance(tp, type) and issubclass(tp, ConfigBase)
            if section and value is None and tp is not hints[name]:
                kwargs[name] = None  # an optional section written as null stays off
            elif section and (isinstance(value, dict) or value is None):
                kwargs[name] = tp.from_dict(value, prefix=f"{prefix}{name}.")
            else:
                kwargs[name] = _coerce(prefix + name, hints[name], value)
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
