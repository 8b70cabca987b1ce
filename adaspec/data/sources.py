"""Reading raw records: local ``.jsonl`` / ``.json`` / ``.parquet`` files, folders, or hub datasets.

Every record returned by :func:`load_records` carries ``_source`` (the path or hub name) and
``_line`` (1-based line number for ``.jsonl``, 0-based index for JSON lists, parquet rows and hub
rows), so that formatters can name the exact record in their errors.

A folder as source holds one file per split: ``{folder}/{split}.jsonl`` (or ``.json`` /
``.parquet``); with a single data file in the folder, that file is used whatever the split.
Anything that is neither an existing path nor looks like a file name is treated as a hub dataset
name and loaded with ``datasets.load_dataset(source, subset, split=split)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from adaspec.data.example import LINE_KEY, SOURCE_KEY, DataError

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")

#: Hub dataset name -> (formatter name, default subset).
HUB_TASKS: dict[str, tuple[str, str | None]] = {
    "gsm8k": ("gsm8k", "main"),
    "openai/gsm8k": ("gsm8k", "main"),
    "tatsu-lab/alpaca": ("alpaca", None),
    "mbpp": ("mbpp", "full"),
    "google-research-datasets/mbpp": ("mbpp", "full"),
    "cnn_dailymail": ("cnn_dailymail", "3.0.0"),
    "abisee/cnn_dailymail": ("cnn_dailymail", "3.0.0"),
    "xsum": ("xsum", None),
    "EdinburghNLP/xsum": ("xsum", None),
}

#: Hub dataset used when a task is given without a source.
DEFAULT_HUB_SOURCE: dict[str, str] = {
    "gsm8k": "openai/gsm8k",
    "alpaca": "tatsu-lab/alpaca",
    "mbpp": "google-research-datasets/mbpp",
    "cnn_dailymail": "abisee/cnn_dailymail",
    "xsum": "EdinburghNLP/xsum",
}


def task_for_source(source: str) -> str | None:
    """Return the formatter of a known hub dataset (``"openai/gsm8k"`` -> ``"gsm8k"``)."""
    entry = HUB_TASKS.get(source)
    return entry[0] if entry else None


def default_subset(source: str) -> str | None:
    """Return the usual subset (config name) of a known hub dataset, e.g. ``"main"`` for GSM8K."""
    entry = HUB_TASKS.get(source)
    return entry[1] if entry else None


def looks_like_path(name: str) -> bool:
    """Tell whether ``name`` is meant as a local path rather than a hub id (``org/name``).

    True for names starting with ``/``, ``./``, ``../`` or ``~``, names with more than one
    separator (hub ids have at most one), and ``folder/name`` where ``folder`` exists here.
    """
    if name in (".", "..") or name.startswith(("/", "./", "../", "~", ".\\", "..\\")):
        return True
    if os.sep != "/" and os.sep in name:
        return True
    parts = name.split("/")
    return len(parts) > 2 or (len(parts) == 2 and bool(parts[0]) and os.path.isdir(parts[0]))


def is_local_source(source: str) -> bool:
    """Tell whether ``source`` is meant as a local path rather than a hub dataset name.

    True when it exists, has a data suffix, or :func:`looks_like_path` (a mistyped path then
    fails at once instead of going to the hub).
    """
    return os.path.exists(source) or source.endswith(FILE_SUFFIXES) or looks_like_path(source)


def _decode(path: Path, data: bytes, lineno: int | None = None) -> str:
    """UTF-8 text of ``data``; a :class:`DataError` naming the file, line and byte otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = lineno if lineno is not None else data.count(b"\n", 0, err.start) + 1
        bad = data[err.start : err.start + 1].hex()
        raise DataError(
            f"{path} line {line}: not UTF-8 text (byte 0x{bad} at offset {err.start}"
            f"{' of the line' if lineno is not None else ''}): data files must be UTF-8; "
            f"convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None


def _read_jsonl(path: Path, limit: int | None) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if limit is not None and len(records) >= limit:
                break
            line = _decode(path, raw, lineno)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{path} line {lineno}: invalid JSON ({err.msg} at column {err.colno}): "
                    f"{line.strip()[:80]!r}; each line of a .jsonl file must be one JSON object"
                ) from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{path} line {lineno}: expected a JSON object, got {type(record).__name__}"
                )
            record[SOURCE_KEY] = str(path)
            record[LINE_KEY] = lineno
            records.append(record)
    return records


def _read_json(path: Path, split: str | None) -> list[dict[str, Any]]:
    try:
        data = json.loads(_decode(path, path.read_bytes()))
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}; "
            "a .json source must be a list of objects (or an object holding one); "
            "use .jsonl for one object per line"
        ) from None
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if split is not None and split in lists:
            data = lists[split]
        elif len(lists) == 1:
            data = next(iter(lists.values()))
        else:
            raise DataError(
                f"{path}: the top-level JSON object must hold exactly one list of records (or "
                f"one named after the split {split!r}); its list-valued keys are {sorted(lists)}"
            )
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    records = []
    for i, record in enumerate(data):
        if not isinstance(record, dict):
            raise DataError(
                f"{path} index {i}: expected a JSON object, got {type(record).__name__}"
            )
        records.append({**record, SOURCE_KEY: str(path), LINE_KEY: i})
    return records


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return [{**row, SOURCE_KEY: str(path), LINE_KEY: i} for i, row in enumerate(table.to_pylist())]


def _resolve_folder(folder: Path, split: str | None) -> Path:
    files = sorted(p for p in folder.iterdir() if p.suffix in FILE_SUFFIXES and p.is_file())
    if split is not None:
        for suffix in FILE_SUFFIXES:
            candidate = folder / f"{split}{suffix}"
            if candidate.is_file():
                return candidate
    if len(files) == 1:
        return files[0]
    raise DataError(
        f"{folder}: cannot tell which file holds split {split!r}; data files there: "
        f"{[p.name for p in files]}. Name the file itself as source, or name the files "
        "<split>.jsonl / <split>.json / <split>.parquet"
    )


def _load_hub(
    source: str, split: str | None, subset: str | None, limit: int | None
) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a dependency
        raise DataError(f"loading hub dataset {source!r} needs the 'datasets' package") from err
    subset = subset if subset is not None else default_subset(source)
    split = split or "train"
    try:
        ds = datasets.load_dataset(source, subset, split=split)
    except Exception as err:
        raise DataError(
            f"could not load hub dataset {source!r} (subset={subset!r}, split={split!r}): "
            f"{type(err).__name__}: {str(err)[:300]}. If this machine is offline or the name is "
            "wrong, pass a local .jsonl, .json or .parquet file (or a folder of <split>.jsonl "
            "files) as source instead"
        ) from err
    if limit is not None and hasattr(ds, "select"):
        ds = ds.select(range(min(limit, len(ds))))  # avoid converting rows that are not kept
    return [{**row, SOURCE_KEY: source, LINE_KEY: i} for i, row in enumerate(ds)]


def load_records(
    source: str | os.PathLike,
    split: str | None = None,
    subset: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Read raw records from a local file, a folder of split files, or a hub dataset.

    Args:
        source: A ``.jsonl`` file (one object a line), a ``.json`` file (a list of objects, or an
            object holding such a list, picked by ``split`` when several), a ``.parquet`` file,
            a folder holding ``<split>.jsonl`` (or ``.json`` / ``.parquet``), or a hub dataset
            name for ``datasets.load_dataset``.
        split: Split to read; for single local files it only picks a list inside a JSON object.
            Hub datasets default to ``"train"``.
        subset: Hub dataset config name; known datasets get their usual one (``"main"`` for
            GSM8K, ``"3.0.0"`` for CNN/DailyMail) when None. Ignored for local files.
        limit: Keep only the first ``limit`` records (None keeps all).

    Returns:
        Records as dicts, each with ``_source`` and ``_line`` keys added.

    Raises:
        DataError: For a missing file, a bad JSON line (naming file and line), an unexpected
            layout, or a hub dataset that cannot be loaded (suggesting a local file).

    """
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0 or None, got {limit}")
    source_str = os.fspath(source)
    if is_local_source(source_str):
        path = Path(source_str).expanduser()
        if not path.exists():
            raise DataError(
                f"data file {source_str!r} does not exist (looked for {path.absolute()}); give an "
                "existing .jsonl, .json or .parquet file or folder, or a hub dataset name "
                "(org/name)"
            )
        if path.is_dir():
            path = _resolve_folder(path, split)
        suffix = path.suffix
        if suffix == ".jsonl":
            records = _read_jsonl(path, limit)
        elif suffix == ".json":
            records = _read_json(path, split)
        elif suffix == ".parquet":
            records = _read_parquet(path)
        else:
            raise DataError(
                f"{path}: unsupported file type {suffix!r}; use one of {list(FILE_SUFFIXES)}"
            )
    else:
        records = _load_hub(source_str, split, subset, limit)
    return records if limit is None else records[:limit]
