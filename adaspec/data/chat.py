"""Chat templates: the prompt and response token ids of an example for a chat model.

A chat model is trained and prompted through its tokenizer's chat template. For an
:class:`~adaspec.data.example.Example` the conversation is one user turn (:func:`user_message`:
``example.user`` when the formatter set one, else the prompt without trailing whitespace) and one
assistant turn (the response):

* prompt ids: ``apply_chat_template([user], add_generation_prompt=True)`` (system prompt, user turn
  and the assistant header, whatever the template writes), tokenized without added special tokens;
* response ids: the tokens the assistant turn adds to the rendered conversation, cut after the first
  special token that follows the text (the end-of-turn token, ``<|im_end|>`` for ChatML). When the
  prompt's ids are not a prefix of the whole conversation's, the response is tokenized on its own
  and the tokenizer's EOS appended.

``chat_template`` modes (a config field in data, eval and bench configs): ``auto`` uses the
template when the tokenizer has one, ``always`` requires one, ``never`` uses plain prompt/response
text (BOS + prompt + response + EOS, see :mod:`adaspec.data.sft`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adaspec.data.example import DataError, Example

CHAT_MODES = ("auto", "always", "never")


def use_chat_template(tokenizer: Any, mode: str | bool = "auto") -> bool:
    """Whether examples go through ``tokenizer``'s chat template under ``mode``.

    Args:
        tokenizer: A Hugging Face tokenizer.
        mode: ``"auto"``, ``"always"``, ``"never"`` (or a bool: True is ``always``).

    Raises:
        DataError: For an unknown mode, or ``always`` with a tokenizer that has no template.

    """
    if isinstance(mode, bool):
        mode = "always" if mode else "never"
    if mode not in CHAT_MODES:
        raise DataError(f"chat_template must be one of {CHAT_MODES}, got {mode!r}")
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "always" and not has:
        raise DataError(
            "chat_template is 'always' but the tokenizer has no chat template; use 'auto' or "
            "'never', or give the chat model's own tokenizer"
        )
    return has and mode != "never"


def user_message(example: Example | str) -> str:
    """The user turn of an example: ``example.user``, else its prompt without trailing whitespace."""
    if isinstance(example, str):
        return example.rstrip()
    return example.user if example.user is not None else example.prompt.rstrip()


def messages(example: Example, with_response: bool = True) -> list[dict[str, str]]:
    """The example as a conversation: a user turn and (optionally) the assistant's response."""
    out = [{"role": "user", "content": user_message(example)}]
    if with_response:
        out.append({"role": "assistant", "content": example.response})
    return out


def _render(tokenizer: Any, convo: list[dict[str, str]], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        convo, tokenize=False, add_generation_prompt=generation_prompt
    )
    if not isinstance(text, str):
        raise DataError(f"the chat template rendered {type(text).__name__}, not text")
    return text


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def chat_prompt_ids(tokenizer: Any, example: Example | str) -> list[int]:
    """Token ids a chat model generates the response from (ends with the assistant header)."""
    convo = [{"role": "user", "content": user_message(example)}]
    return _encode(tokenizer, [_render(tokenizer, convo, True)])[0]


def chat_token_ids(
    tokenizer: Any, examples: Sequence[Example]
) -> tuple[list[list[int]], list[list[int]], int]:
    """Prompt and response ids of ``examples`` through the chat template (see the module doc).

    Returns:
        ``(prompts, responses, num_separately_tokenized)``; every response ends with the
        end-of-turn token.

    """
    prompts = _encode(tokenizer, [_render(tokenizer, messages(e, False), True) for e in examples])
    fulls = _encode(tokenizer, [_render(tokenizer, messages(e), False) for e in examples])
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    if tokenizer.eos_token_id is not None:
        special.add(int(tokenizer.eos_token_id))
    responses: list[list[int]] = []
    fallback = []
    for i, (p, f) in enumerate(zip(prompts, fulls)):
        tail = f[len(p) :]
        end = next((j for j, t in enumerate(tail) if t in special), None)
        if f[: len(p)] != p or end is None:
            responses.append([])
            fallback.append(i)
        else:
            responses.append(tail[: end + 1])
    if fallback:
        if tokenizer.eos_token_id is None:
            raise DataError("the tokenizer has no eos_token to end a chat response with")
        texts = _encode(tokenizer, [examples[i].response for i in fallback])
        for i, ids in zip(fallback, texts):
            responses[i] = ids + [int(tokenizer.eos_token_id)]
    return prompts, responses, len(fallback)
