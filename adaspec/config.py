"""Config machinery: nested dataclasses with help text and range checks, loaded from YAML.

Every config in the project is a dataclass deriving from :class:`ConfigBase`. Fields carry their
help text in ``metadata={"help": ...}`` (use :func:`cfg_field`), checks live in ``validate``,
unknown keys are refused with the list of valid ones, and the resolved config is written beside
every checkpoint with :func:`save_config`. The machinery itself lives in
:mod:`adaspec._base.config` (below every other module, so the decoding core can use it) and is
re-exported here.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path

import yaml

from adaspec._base.atomic import write_text_atomic
from adaspec._base.config import (
    ConfigBase,
    ConfigError,
    apply_override,
    cfg_field,
    check_choice,
    check_range,
    strip_optional,
)

__all__ = [
    "ConfigBase",
    "ConfigError",
    "apply_override",
    "cfg_field",
    "check_choice",
    "check_range",
    "describe",
    "save_config",
]


def save_config(
    config: ConfigBase, directory: str | os.PathLike, name: str = "adaspec_config.yaml"
) -> Path:
    """Write the resolved config as YAML beside a checkpoint (atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(directory / name, yaml.safe_dump(config.to_dict(), sort_keys=False))


def describe(cls: type[ConfigBase], indent: int = 0) -> str:
    """Human-readable list of a config's fields, defaults and help (for ``--help-config``)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = strip_optional(hints[f.name])
        pad = "  " * indent
        if isinstance(tp, type) and issubclass(tp, ConfigBase):
            lines.append(f"{pad}{f.name}:  # {f.metadata.get('help', '')}")
            lines.append(describe(tp, indent + 1))
        else:
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (
                    f.default_factory()
                    if f.default_factory is not dataclasses.MISSING
                    else "<required>"
                )
            )
            lines.append(f"{pad}{f.name}: {default!r}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)
