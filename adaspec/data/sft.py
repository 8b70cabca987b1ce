"""Tokenization for completion training: prompt tokens masked with ``-100``, truncation reported.

Sequence layout: ``[BOS] + prompt_ids + response_ids + [EOS]``.

* BOS rule: BOS is prepended exactly when the tokenizer prepends it itself with
  ``add_special_tokens=True`` (Llama-style tokenizers do; Pythia/GPT-NeoX, Qwen2 and the project's
  tiny BPE do not). Everything else is tokenized with ``add_special_tokens=False``, so the
  tokenizer never inserts special tokens in the middle.
* Exact boundary: the prompt is tokenized on its own. The response ids are the tail of the joint
  tokenization of ``prompt + response`` when the prompt's ids are a prefix of it (the natural
  tokenization a pretrained model saw); otherwise (for example a SentencePiece tokenizer that
  merges across the boundary) the response is tokenized on its own and concatenated. Either way
  the prompt ids are identical to :func:`build_prompt_ids`, which evaluation uses, and labels are
  ``-100`` on exactly those tokens.
* EOS (``tokenizer.eos_token_id``) is appended to every response and is a trained label.
* Chat models (``chat_template="auto"`` / ``"always"`` with a tokenizer that has a template): the
  prompt and response ids come from the chat template instead (:mod:`adaspec.data.chat`), the
  response ending with the end-of-turn token; truncation and masking are the same.
* Truncation to ``max_length``: ``"right"`` cuts the end of the sequence (the response tail and
  perhaps its EOS first); ``"left"`` removes prompt tokens after BOS first and, if the response
  alone is still too long, cuts the response tail. An example with no response token left is
  dropped. Both are counted in a :class:`TruncationReport`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from adaspec.data.chat import chat_prompt_ids, chat_token_ids, use_chat_template
from adaspec.data.example import DataError, Example

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclasses.dataclass
class TruncationReport:
    """What tokenization did to the examples.

    Attributes:
        num_examples: Examples given.
        num_truncated: Examples that lost tokens (dropped ones included).
        num_dropped: Examples removed because no response token was left after truncation.
        max_length: The length limit used.
        longest: Length of the longest example before truncation (BOS and EOS included).
        num_separately_tokenized: Examples whose response was tokenized on its own because the
            prompt's ids were not a prefix of the joint tokenization.
        num_tokens: Tokens in the kept examples after truncation.

    """

    num_examples: int
    num_truncated: int
    num_dropped: int
    max_length: int
    longest: int
    num_separately_tokenized: int = 0
    num_tokens: int = 0

    def summary(self) -> str:
        """Return a one-line human-readable summary."""
        pct = 100.0 * self.num_truncated / max(self.num_examples, 1)
        text = (
            f"tokenized {self.num_examples} examples (max_length={self.max_length}, "
            f"longest={self.longest}, {self.num_tokens} tokens kept): "
            f"{self.num_truncated} truncated ({pct:.1f}%), {self.num_dropped} dropped with no "
            "response token left"
        )
        if self.num_truncated:
            text += "; raise data.max_length to keep them whole"
        return text


def adds_bos_token(tokenizer: Any) -> bool:
    """Whether the tokenizer prepends its BOS token by itself (``add_special_tokens=True``)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def _prefix_ids(tokenizer: Any) -> list[int]:
    return [tokenizer.bos_token_id] if adds_bos_token(tokenizer) else []


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def build_prompt_ids(
    example: Example | str, tokenizer: Any, chat_template: str | bool = "never"
) -> list[int]:
    """Token ids of the prompt alone, as generation starts from (BOS per the module's rule).

    Args:
        example: An :class:`Example` or a prompt string.
        tokenizer: A Hugging Face tokenizer.
        chat_template: ``"never"`` (default), ``"auto"`` or ``"always"``: whether the prompt
            goes through the tokenizer's chat template (:mod:`adaspec.data.chat`).

    Returns:
        ``[BOS] + prompt_ids`` (BOS only for tokenizers that add it), or the chat template's
        rendering of the user turn with the assistant header; the exact prefix that
        :func:`tokenize_examples` masks with the same ``chat_template``.

    """
    if use_chat_template(tokenizer, chat_template):
        return chat_prompt_ids(tokenizer, example)
    prompt = example.prompt if isinstance(example, Example) else example
    return _prefix_ids(tokenizer) + _encode(tokenizer, [prompt])[0]


def _truncate(
    prefix: list[int], prompt: list[int], response: list[int], max_length: int, side: str
) -> tuple[list[int], list[int]]:
    """Return (context, target) ids after truncation; ``target`` is empty when nothing is left."""
    total = len(prefix) + len(prompt) + len(response)
    if total <= max_length:
        return prefix + prompt, response
    if side == "right":
        context = (prefix + prompt)[:max_length]
        return context, response[: max_length - len(context)]
    excess = total - max_length
    if excess <= len(prompt):
        return prefix + prompt[excess:], response
    return prefix, response[: max(max_length - len(prefix), 0)]


def _plain_token_ids(
    tokenizer: Any, examples: list[Example]
) -> tuple[list[list[int]], list[list[int]], int]:
    """Prompt ids and response ids (the joint tokenization's tail when the prompt is a prefix)."""
    prompts = _encode(tokenizer, [e.prompt for e in examples])
    joints = _encode(tokenizer, [e.prompt + e.response for e in examples])
    responses: list[list[int]] = []
    fallback_idx = []
    for i, (p, j) in enumerate(zip(prompts, joints)):
        if j[: len(p)] == p:
            responses.append(j[len(p) :])
        else:
            responses.append([])
            fallback_idx.append(i)
    for i, ids in zip(
        fallback_idx, _encode(tokenizer, [examples[i].response for i in fallback_idx])
    ):
        responses[i] = ids
    return prompts, responses, len(fallback_idx)


def tokenize_examples(
    examples: Sequence[Example],
    tokenizer: Any,
    max_length: int,
    *,
    truncation_side: str = "right",
    chat_template: str | bool = "never",
    allow_all_dropped: bool = False,
) -> tuple[list[dict[str, list[int]]], TruncationReport]:
    """Tokenize prompt/response pairs for training with the prompt masked out of the labels.

    Args:
        examples: The examples.
        tokenizer: A Hugging Face tokenizer with an EOS token.
        max_length: Longest sequence kept, BOS and EOS included.
        truncation_side: ``"right"`` (cut the response tail) or ``"left"`` (cut the prompt head).
        chat_template: ``"never"`` (default), ``"auto"`` or ``"always"``: with the template, the
            prompt is the rendered user turn and assistant header and the response ends with the
            end-of-turn token instead of EOS (:mod:`adaspec.data.chat`); no BOS is added.
        allow_all_dropped: Return no feature instead of raising when truncation drops every
            example (for measurements that report the count; training needs examples).

    Returns:
        ``(features, report)``: one dict per kept example with ``input_ids``,
        ``attention_mask`` and ``labels`` (lists of ints of equal length; labels are
        ``-100`` on BOS and prompt tokens and equal ``input_ids`` on response tokens and EOS),
        and the :class:`TruncationReport`. A warning is logged when anything was truncated.

    Raises:
        DataError: If the tokenizer has no EOS token, an argument is out of range, or every
            example is dropped by truncation. Empty responses are counted in a warning.

    """
    if truncation_side not in ("right", "left"):
        raise DataError(f"truncation_side must be 'right' or 'left', got {truncation_side!r}")
    if max_length < 2:
        raise DataError(f"max_length must be >= 2 (a prompt token and EOS), got {max_length}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError(
            "the tokenizer has no eos_token; set tokenizer.eos_token (for example to the model's "
            "end-of-text token) so responses can be terminated"
        )
    examples = list(examples)
    if use_chat_template(tokenizer, chat_template):
        prefix, end = [], []  # the template writes its own specials and end-of-turn token
        prompts, responses, num_fallback = chat_token_ids(tokenizer, examples)
    else:
        prefix, end = _prefix_ids(tokenizer), [eos]
        prompts, responses, num_fallback = _plain_token_ids(tokenizer, examples)

    features: list[dict[str, list[int]]] = []
    num_truncated = num_dropped = longest = num_tokens = num_empty = 0
    for p, r in zip(prompts, responses):
        num_empty += not r
        r = r + end
        full_len = len(prefix) + len(p) + len(r)
        longest = max(longest, full_len)
        context, target = _truncate(prefix, p, r, max_length, truncation_side)
        if len(context) + len(target) < full_len:
            num_truncated += 1
        if not target:
            num_dropped += 1
            continue
        input_ids = context + target
        num_tokens += len(input_ids)
        features.append(
            {
                "input_ids": input_ids,
                "attention_mask": [1] * len(input_ids),
                "labels": [IGNORE_INDEX] * len(context) + list(target),
            }
        )
    report = TruncationReport(
        num_examples=len(examples),
        num_truncated=num_truncated,
        num_dropped=num_dropped,
        max_length=max_length,
        longest=longest,
        num_separately_tokenized=num_fallback,
        num_tokens=num_tokens,
    )
    if examples and not features and not allow_all_dropped:
        raise DataError(
            f"all {len(examples)} examples were dropped: with max_length={max_length} and "
            f"truncation_side={truncation_side!r} no response token is left (longest={longest} "
            f"tokens); raise data.max_length (to {longest} to keep every example whole), or use "
            "data.truncation_side='left' to cut prompts instead of responses"
        )
    if num_truncated:
        logger.warning(report.summary())
    if num_empty:
        logger.warning(
            "%d of %d examples have an empty response: they train on EOS alone; check the "
            "response field (data.response_field) and the source",
            num_empty,
            len(examples),
        )
    return features, report


def label_every_token(dataset):
    """A copy of a tokenized ``datasets.Dataset`` whose labels are its ``input_ids``.

    Cross-entropy then also covers the prompt (language modelling of the whole sequence), which a
    target trained from scratch needs in order to read its prompts: a pretrained target has learnt
    that before fine-tuning, and is fine-tuned on response tokens only.

    Args:
        dataset: Rows with ``input_ids`` (and ``labels``, which are replaced).

    Returns:
        The dataset with ``labels`` equal to ``input_ids`` on every row (BOS is never predicted:
        causal-LM labels are shifted by one).

    """
    return dataset.map(lambda row: {"labels": list(row["input_ids"])})


def to_hf_dataset(features: list[dict[str, list[int]]]):
    """Wrap tokenized features in a ``datasets.Dataset`` (for the Hugging Face Trainer)."""
    import datasets

    if not features:
        return datasets.Dataset.from_dict({"input_ids": [], "attention_mask": [], "labels": []})
    return datasets.Dataset.from_list(features)
