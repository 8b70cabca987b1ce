"""What produced a result: package versions, the adaspec commit, and the machine.

Every results file (pipeline comparison, sweep, benchmark) carries :func:`environment`, so a table
in the docs can say which versions made it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "deepspeed")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (``None`` when absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the adaspec checkout (with ``+dirty`` for uncommitted changes), or ``None``.

    ``None`` for an installed wheel, or where git is missing.
    """
    root = Path(path) if path is not None else Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Versions, commit, Python, platform, CPU threads and accelerator of this process."""
    import torch

    from adaspec import __version__

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "adaspec": __version__,
        "commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        **package_versions(),
    }


def describe_environment(env: dict[str, Any]) -> str:
    """One line for a results table: the versions and commit that produced it."""
    parts = [f"adaspec {env.get('adaspec')}"]
    if env.get("commit"):
        parts[0] += f" ({env['commit'][:12]}{'+dirty' if env['commit'].endswith('+dirty') else ''})"
    parts += [f"{name} {env[name]}" for name in ("torch", "transformers") if env.get(name)]
    parts.append(f"{env.get('device')}, {env.get('torch_threads')} threads")
    return "Produced with " + ", ".join(parts) + "."
