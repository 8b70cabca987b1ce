"""The unit of data every task is turned into, and the error raised for bad records.

A raw record (one JSON line, one parquet row, one hub dataset row) goes through a formatter and
becomes an :class:`Example`: the ``prompt`` the model is conditioned on, the ``response`` it is
trained (and distilled) on, and ``meta`` with whatever the evaluation needs to score a generation
(the GSM8K gold number, the MBPP tests, the reference summary).

Records read by :func:`adaspec.data.sources.load_records` carry two bookkeeping keys, ``_source``
(the file or hub name) and ``_line`` (1-based line for ``.jsonl`` files, 0-based index for JSON
lists, parquet files and hub datasets), so that an error can point at the exact record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

SOURCE_KEY = "_source"
LINE_KEY = "_line"


class DataError(ValueError):
    """A data file or record is wrong; the message names the file, the record and the fix."""


@dataclasses.dataclass
class Example:
    """One prompt/response pair.

    Attributes:
        prompt: Text the model is conditioned on (labels are ``-100`` on its tokens).
        response: Text the model learns to produce; the tokenizer's EOS is appended at
            tokenization time, never stored here.
        meta: Task-specific data for scoring generations (for example ``answer`` for GSM8K,
            ``test_list`` for MBPP, ``reference`` for summarization), plus ``_source`` and
            ``_line`` when the example came from a file.
        user: The user turn for a chat template when it differs from the prompt (the Alpaca
            instruction without the Alpaca template around it); None: the prompt, stripped of
            trailing whitespace (see :mod:`adaspec.data.chat`).

    """

    prompt: str
    response: str
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    user: str | None = None

    @property
    def text(self) -> str:
        """Prompt and response joined, as a language model sees them (without special tokens)."""
        return self.prompt + self.response


def record_location(record: Mapping[str, Any]) -> str:
    """Where a record came from, for error messages: ``"data.jsonl line 3"``.

    Records without bookkeeping keys (built in memory) give ``"<in-memory record>"``.
    """
    source = record.get(SOURCE_KEY)
    line = record.get(LINE_KEY)
    if source is None and line is None:
        return "<in-memory record>"
    where = str(source) if source is not None else "<records>"
    if line is None:
        return where
    unit = "line" if str(where).endswith(".jsonl") else "index"
    return f"{where} {unit} {line}"


def record_fields(record: Mapping[str, Any]) -> list[str]:
    """Return the record's data fields, without the bookkeeping keys that start with ``_``."""
    return sorted(k for k in record if not str(k).startswith("_"))
