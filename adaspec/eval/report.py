"""Evaluation reports: JSON results, a markdown table, and an acceptance-by-position plot.

Every writer is deterministic: JSON keys keep their insertion order and floats are written as
Python prints them, the table's rows and columns come in the order given, and the PNG is rendered
with the Agg backend with no timestamp in its metadata.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adaspec._base.atomic import write_text_atomic


def _to_jsonable(value: Any) -> Any:
    """Turn tensors, numpy values, paths, dataclasses and non-finite floats into JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # torch tensors, numpy arrays and scalars
        return _to_jsonable(value.tolist())
    if hasattr(value, "to_dict"):
        return _to_jsonable(value.to_dict())
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_jsonable(dataclasses.asdict(value))
    return str(value)


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON, atomically (non-finite floats become ``null``).

    Args:
        data: Nested dicts/lists of numbers, strings, tensors, numpy values or dataclasses.
        path: Output file; parent directories are created.

    Returns:
        The path written.

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, json.dumps(_to_jsonable(data), indent=2, allow_nan=False) + "\n")


def format_cell(value: Any, digits: int = 4) -> str:
    """Format a table cell: floats to ``digits`` decimals, ``None``/NaN as ``-``, ``|`` escaped."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | Mapping[str, str],
    digits: int = 4,
) -> str:
    """Render rows as a GitHub markdown table.

    Args:
        rows: One mapping per row; a missing key gives ``-``.
        columns: Keys to show, in order; or a mapping key -> header text.
        digits: Decimals for floats.

    Returns:
        The table text, ending with a newline.

    """
    if isinstance(columns, Mapping):
        keys, headers = list(columns), [str(h) for h in columns.values()]
    else:
        keys, headers = list(columns), [str(c) for c in columns]
    if not keys:
        raise ValueError("markdown_table needs at least one column")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in keys) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(k), digits) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def plot_acceptance_by_position(
    results: Mapping[str, Sequence[float]] | Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike,
    title: str = "Acceptance by position in the draft block",
    key: str = "acceptance_by_position",
) -> Path:
    """Plot one line per draft: acceptance rate at block positions 1..gamma.

    Args:
        results: Draft name -> list of per-position rates, or draft name -> a result dict that
            holds such a list under ``key``. Drafts are drawn in the given order; ``None``
            entries (positions never reached) are left as gaps.
        path: Output PNG file; parent directories are created.
        title: Plot title.
        key: Where the rates sit in a result dict.

    Returns:
        The path written.

    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=100)
    try:
        longest = 0
        for name, entry in results.items():
            rates = entry[key] if isinstance(entry, Mapping) else entry
            ys = [float("nan") if r is None else float(r) for r in rates]
            xs = list(range(1, len(ys) + 1))
            longest = max(longest, len(ys))
            ax.plot(xs, ys, marker="o", label=str(name))
        ax.set_xlabel("position in the draft block")
        ax.set_ylabel("acceptance rate (earlier positions accepted)")
        ax.set_ylim(0.0, 1.05)
        if longest:
            ax.set_xticks(list(range(1, longest + 1)))
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if results:
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


def write_eval_outputs(
    results: Mapping[str, Any], output_dir: str | os.PathLike
) -> dict[str, Path]:
    """Write an evaluation's ``results.json``, ``results.md`` and ``acceptance_by_position.png``.

    Args:
        results: The dict of :func:`adaspec.eval.evaluate.evaluate_models` (``settings``,
            ``drafts`` and ``table`` are used).
        output_dir: Folder to write into (created).

    Returns:
        File role (``json``, ``markdown``, ``plot``) -> path written.

    """
    from adaspec.eval.aggregate import summary_rows

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(results, out / "results.json")}
    rows = results.get("table") or summary_rows(results)
    columns = list(rows[0]) if rows else ["draft"]
    s = results.get("settings", {})
    header = (
        f"# adaspec eval\n\ntask: {s.get('task')}, prompts: {s.get('num_prompts')}, "
        f"gamma: {s.get('gamma')}, max_new_tokens: {s.get('max_new_tokens')}, "
        f"device: {s.get('device')}, dtype: {s.get('dtype')}\n\n"
    )
    md = out / "results.md"
    md.write_text(header + markdown_table(rows, columns))
    paths["markdown"] = md
    paths["plot"] = plot_acceptance_by_position(
        results.get("drafts", {}), out / "acceptance_by_position.png"
    )
    return paths
