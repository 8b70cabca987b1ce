r"""Task formatters: one raw record in, one :class:`~adaspec.data.example.Example` out.

Each formatter declares the fields it needs; a record missing one raises a
:class:`~adaspec.data.example.DataError` naming the field, the file, the line (or index) and the
fields the record does have. Prompts are chosen so that they end at a token boundary for
byte-level BPE tokenizers (a newline), which lets :func:`adaspec.data.sft.tokenize_examples` use
the natural joint tokenization of prompt and response.

Formats:

* ``gsm8k``: the official AdaSPEC format. ``prompt = question + GSM8K_QUESTION_PROMPT``;
  ``response = answer.replace("####", "The final answer is: ")`` (exactly as the official code,
  which leaves two spaces before the number); ``meta["answer"]`` is the gold number (text after
  ``####``, stripped, commas removed).
* ``alpaca``: the Stanford Alpaca templates (with and without input); ``response = output``;
  for a chat template the user turn is the instruction (and the input after a blank line).
* ``mbpp``: ``"You are an expert Python programmer, and here is your task: {text} Your code should
  pass these tests:\n\n{tests}\n"`` with one test per line; ``response = code`` with ``\r\n``
  turned into ``\n``; ``meta`` keeps ``task_id``, ``test_list``, ``test_setup_code`` and
  ``challenge_test_list``.
* ``cnn_dailymail`` (article, highlights) and ``xsum`` (document, summary):
  ``prompt = "Summarize the following article.\n\n{text}\n\nSummary:\n"``,
  ``response = summary``, ``meta["reference"] = summary``; the chat user turn leaves out the
  trailing ``Summary:``.
* ``prompt_response``: any two fields (``prompt`` and ``response`` by default) used as they are;
  all other fields go to ``meta``.
* ``synthetic``: records made by :mod:`adaspec.data.synthetic` (prompt, response, kind, answer).

For a chat model every example is one conversation, a user turn and the assistant's response
(:mod:`adaspec.data.chat`); GSM8K and MBPP use their prompt as the user turn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from adaspec.data.example import (
    LINE_KEY,
    SOURCE_KEY,
    DataError,
    Example,
    record_fields,
    record_location,
)

GSM8K_QUESTION_PROMPT = (
    "\nAnswer the above question. First think step by step and then answer the final number.\n"
)
GSM8K_ANSWER_PROMPT = "The final answer is: "

ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)

MBPP_PROMPT = (
    "You are an expert Python programmer, and here is your task: {text} "
    "Your code should pass these tests:\n\n{tests}\n"
)

SUMMARY_PROMPT = "Summarize the following article.\n\n{text}\n\nSummary:\n"

#: Standard MBPP splits by task id (inclusive ranges), as in the MBPP paper and the HF dataset.
MBPP_SPLITS: dict[str, tuple[int, int]] = {
    "prompt": (1, 10),
    "test": (11, 510),
    "validation": (511, 600),
    "train": (601, 974),
}


def _get(record: Mapping[str, Any], field: str, task: str, kind: type | tuple = str) -> Any:
    """Fetch a required field, raising a located error when it is missing or of the wrong type."""
    if field not in record or record[field] is None:
        raise DataError(
            f"{record_location(record)}: record is missing field {field!r} required by the "
            f"{task!r} formatter; fields present: {record_fields(record)}. Fix the data, or pick "
            "the formatter (data.task) that matches it"
        )
    value = record[field]
    if not isinstance(value, kind):
        raise DataError(
            f"{record_location(record)}: field {field!r} of the {task!r} formatter must be "
            f"{getattr(kind, '__name__', kind)}, got {type(value).__name__} ({str(value)[:60]!r})"
        )
    return value


def _base_meta(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in (SOURCE_KEY, LINE_KEY) if k in record}


def gsm8k_final_answer(answer: str) -> str | None:
    """Return the gold number of a GSM8K answer: the text after ``####``, no commas."""
    if "####" not in answer:
        return None
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def _format_gsm8k(record: Mapping[str, Any]) -> Example:
    question = _get(record, "question", "gsm8k")
    answer = _get(record, "answer", "gsm8k")
    gold = gsm8k_final_answer(answer)
    if gold is None:
        raise DataError(
            f"{record_location(record)}: GSM8K field 'answer' has no final '#### <number>' line "
            f"({answer[-80:]!r}); use the 'prompt_response' formatter for other math data"
        )
    meta = _base_meta(record) | {"answer": gold}
    return Example(
        question + GSM8K_QUESTION_PROMPT, answer.replace("####", GSM8K_ANSWER_PROMPT), meta
    )


def _format_alpaca(record: Mapping[str, Any]) -> Example:
    instruction = _get(record, "instruction", "alpaca")
    output = _get(record, "output", "alpaca")
    inp = record.get("input") or ""
    if inp.strip():
        prompt = ALPACA_PROMPT_INPUT.format(instruction=instruction, input=inp)
        user = f"{instruction.strip()}\n\n{inp.strip()}"
    else:
        prompt = ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)
        user = instruction.strip()
    return Example(prompt, output, _base_meta(record), user=user)


def _format_mbpp(record: Mapping[str, Any]) -> Example:
    text = _get(record, "text", "mbpp")
    code = _get(record, "code", "mbpp")
    tests = _get(record, "test_list", "mbpp", (list, tuple))
    prompt = MBPP_PROMPT.format(text=text.strip(), tests="\n".join(tests))
    meta = _base_meta(record) | {
        "task_id": record.get("task_id"),
        "test_list": list(tests),
        "test_setup_code": record.get("test_setup_code") or "",
        "challenge_test_list": list(record.get("challenge_test_list") or []),
    }
    return Example(prompt, code.replace("\r\n", "\n"), meta)


def _summary_formatter(task: str, text_field: str, summary_field: str) -> Callable:
    def fmt(record: Mapping[str, Any]) -> Example:
        text = _get(record, text_field, task)
        summary = _get(record, summary_field, task)
        meta = _base_meta(record) | {"reference": summary}
        if "id" in record:
            meta["id"] = record["id"]
        user = SUMMARY_PROMPT.format(text=text.strip()).rsplit("\n\nSummary:", 1)[0]
        return Example(SUMMARY_PROMPT.format(text=text.strip()), summary.strip(), meta, user=user)

    return fmt


def _format_synthetic(record: Mapping[str, Any]) -> Example:
    prompt = _get(record, "prompt", "synthetic")
    response = _get(record, "response", "synthetic")
    meta = _base_meta(record) | {
        k: record[k] for k in ("kind", "answer", "hard_spans") if k in record
    }
    return Example(prompt, response, meta)


@dataclasses.dataclass(frozen=True)
class Formatter:
    """A named record-to-Example mapping with the fields it needs.

    Attributes:
        name: Registry name (``data.task`` in the config).
        required: Fields every record must have.
        optional: Fields used when present.
        fn: The mapping itself; raises :class:`DataError` on bad records.

    """

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    fn: Callable[[Mapping[str, Any]], Example]

    def __call__(self, record: Mapping[str, Any]) -> Example:
        """Format one record (checking all required fields first, for a complete message)."""
        missing = [f for f in self.required if record.get(f) is None]
        if missing:
            raise DataError(
                f"{record_location(record)}: record is missing field"
                f"{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} required by "
                f"the {self.name!r} formatter; fields present: {record_fields(record)}. Fix the "
                "data, or pick the formatter (data.task) that matches it"
            )
        return self.fn(record)


def prompt_response_formatter(
    prompt_field: str = "prompt", response_field: str = "response"
) -> Formatter:
    """Build a generic formatter using two fields as prompt and response, the rest as ``meta``.

    Args:
        prompt_field: Record field holding the prompt text (used unchanged).
        response_field: Record field holding the response text (used unchanged).

    """

    def fmt(record: Mapping[str, Any]) -> Example:
        prompt = _get(record, prompt_field, "prompt_response")
        response = _get(record, response_field, "prompt_response")
        meta = {k: v for k, v in record.items() if k not in (prompt_field, response_field)}
        return Example(prompt, response, meta)

    return Formatter("prompt_response", (prompt_field, response_field), (), fmt)


FORMATTERS: dict[str, Formatter] = {
    "gsm8k": Formatter("gsm8k", ("question", "answer"), (), _format_gsm8k),
    "alpaca": Formatter("alpaca", ("instruction", "output"), ("input",), _format_alpaca),
    "mbpp": Formatter(
        "mbpp",
        ("text", "code", "test_list"),
        ("test_setup_code", "challenge_test_list", "task_id"),
        _format_mbpp,
    ),
    "cnn_dailymail": Formatter(
        "cnn_dailymail",
        ("article", "highlights"),
        ("id",),
        _summary_formatter("cnn_dailymail", "article", "highlights"),
    ),
    "xsum": Formatter(
        "xsum", ("document", "summary"), ("id",), _summary_formatter("xsum", "document", "summary")
    ),
    "prompt_response": prompt_response_formatter(),
    "synthetic": Formatter(
        "synthetic", ("prompt", "response"), ("kind", "answer", "hard_spans"), _format_synthetic
    ),
}


def get_formatter(
    name: str, prompt_field: str = "prompt", response_field: str = "response"
) -> Formatter:
    """Look a formatter up by name (field names apply to ``prompt_response`` only).

    Raises:
        DataError: Naming the unknown task and the valid ones.

    """
    if name == "prompt_response":
        return prompt_response_formatter(prompt_field, response_field)
    if name not in FORMATTERS:
        raise DataError(f"unknown task {name!r}; valid tasks: {sorted(FORMATTERS)}")
    return FORMATTERS[name]


def format_records(records: list[Mapping[str, Any]], formatter: Formatter | str) -> list[Example]:
    """Apply a formatter (or a registry name) to every record."""
    fmt = get_formatter(formatter) if isinstance(formatter, str) else formatter
    return [fmt(r) for r in records]


def mbpp_split(records: list[Mapping[str, Any]], split: str) -> list[Mapping[str, Any]]:
    """Keep the MBPP records of a standard split by ``task_id`` (see :data:`MBPP_SPLITS`).

    Raises:
        DataError: If the split is unknown or a record has no integer ``task_id``.

    """
    if split not in MBPP_SPLITS:
        raise DataError(f"unknown MBPP split {split!r}; valid splits: {sorted(MBPP_SPLITS)}")
    low, high = MBPP_SPLITS[split]
    out = []
    for r in records:
        task_id = r.get("task_id")
        try:
            task_id = int(task_id)
        except (TypeError, ValueError):
            raise DataError(
                f"{record_location(r)}: MBPP split {split!r} needs an integer 'task_id', got "
                f"{task_id!r}; fields present: {record_fields(r)}"
            ) from None
        if low <= task_id <= high:
            out.append(r)
    return out
