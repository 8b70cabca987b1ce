"""Token ids and response (loss) masks for head training, from chat templates or prompt/response.

* With a chat template: ``apply_chat_template(..., return_assistant_tokens_mask=True,
  return_dict=True)`` where the template marks assistant text with ``{% generation %}``; for
  templates without those markers the mask is derived by rendering the conversation up to each
  assistant turn (``add_generation_prompt=True``) and marking the tokens that turn adds. No
  per-model mask code is written by hand.
* Without a chat template: ``adaspec.data.tokenize_examples`` (BOS + prompt + response + EOS,
  labels -100 on the prompt); the loss mask is ``labels != -100``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import torch

from adaspec.data.chat import messages as chat_messages
from adaspec.data.chat import user_message

logger = logging.getLogger(__name__)

CHAT_MODES = ("auto", "always", "never")
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


def _ids(out: Any) -> list[int]:
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    if isinstance(out, torch.Tensor):
        out = out.tolist()
    if out and isinstance(out[0], list):
        out = out[0]
    return list(out)


def _render(tokenizer: Any, messages: list[dict], generation_prompt: bool) -> list[int]:
    return _ids(
        tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=generation_prompt
        )
    )


def chat_loss_mask(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int
) -> dict[str, list[int]]:
    """Tokenize a conversation with the tokenizer's chat template and mark assistant tokens.

    Args:
        tokenizer: A tokenizer with ``chat_template`` set.
        messages: ``[{"role": ..., "content": ...}, ...]``.
        max_length: Longest sequence kept (truncated on the right).

    Returns:
        ``input_ids``, ``attention_mask`` and ``loss_mask`` (1 on assistant tokens) lists.

    Raises:
        ValueError: If the tokenizer has no chat template or no assistant turn was found.

    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat_template; use prompt/response tokenization")
    ids: list[int] = []
    mask: list[int] = []
    if _GENERATION.search(tokenizer.chat_template):
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_assistant_tokens_mask=True, return_dict=True
        )
        ids, mask = _ids(out), _ids({"input_ids": out["assistant_masks"]})
    if not any(mask):  # no generation markers: prefix differences per assistant turn
        ids = _render(tokenizer, messages, False)
        mask = [0] * len(ids)
        for j, msg in enumerate(messages):
            if msg.get("role") != "assistant":
                continue
            start = len(_render(tokenizer, messages[:j], True))
            end = len(_render(tokenizer, messages[: j + 1], False))
            for t in range(start, min(end, len(ids))):
                mask[t] = 1
    if not any(mask):
        raise ValueError(f"no assistant tokens found in conversation {messages!r:.200}")
    ids, mask = ids[:max_length], mask[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "loss_mask": mask}


def tokenize_for_heads(
    examples: Sequence[Any], tokenizer: Any, max_length: int, chat_template: str = "auto"
) -> list[dict[str, list[int]]]:
    """Token ids and loss masks for head training.

    Args:
        examples: ``adaspec.data.Example`` objects (prompt/response), or dicts with
            ``messages`` (a chat) or ``prompt``/``response``.
        tokenizer: The target's tokenizer.
        max_length: Longest sequence kept.
        chat_template: ``"auto"`` (use the template when the tokenizer has one), ``"always"``
            or ``"never"``.

    Returns:
        One dict per example with ``input_ids``, ``attention_mask`` and ``loss_mask``.

    """
    if chat_template not in CHAT_MODES:
        raise ValueError(f"chat_template must be one of {CHAT_MODES}, got {chat_template!r}")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat_template == "always" and not has_template:
        raise ValueError(
            "chat_template='always' but the tokenizer has no chat_template; set it to 'auto' or "
            "'never', or give a tokenizer with a template"
        )
    use_chat = has_template and chat_template != "never"
    out: list[dict[str, list[int]]] = []
    plain = []
    for ex in examples:
        messages = ex.get("messages") if isinstance(ex, dict) else None
        prompt = ex["prompt"] if isinstance(ex, dict) and "prompt" in ex else None
        if messages is None and use_chat:
            if prompt is None:
                messages = chat_messages(ex)  # the formatter's user turn (Alpaca: instruction)
            else:
                messages = [
                    {"role": "user", "content": user_message(prompt)},
                    {"role": "assistant", "content": ex["response"]},
                ]
        if messages is not None:
            if not has_template:
                raise ValueError("an example has 'messages' but the tokenizer has no chat template")
            out.append(chat_loss_mask(tokenizer, messages, max_length))
        else:
            plain.append(ex)
    if plain:
        from adaspec.data.example import Example
        from adaspec.data.sft import tokenize_examples

        exs = [
            e if isinstance(e, Example) else Example(prompt=e["prompt"], response=e["response"])
            for e in plain
        ]
        feats, _ = tokenize_examples(exs, tokenizer, max_length)
        for f in feats:
            out.append(
                {
                    "input_ids": f["input_ids"],
                    "attention_mask": f["attention_mask"],
                    "loss_mask": [int(lab != -100) for lab in f["labels"]],
                }
            )
    return out


def collate(features: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad token features to a batch; float tensors (dumped features) are padded with 0.

    Returns:
        ``input_ids``/``attention_mask``/``loss_mask`` [B, T] long tensors, plus ``hidden``
        [B, T, H] / ``aux`` [B, T, kH] when the features carry them.

    """
    length = max(len(f["input_ids"]) for f in features)
    batch: dict[str, torch.Tensor] = {}
    for key, pad in (("input_ids", pad_id), ("attention_mask", 0), ("loss_mask", 0)):
        rows = []
        for f in features:
            row = torch.as_tensor(f[key], dtype=torch.long)
            rows.append(torch.cat((row, row.new_full((length - row.numel(),), pad))))
        batch[key] = torch.stack(rows)
    for key in ("hidden", "aux"):
        if key in features[0]:
            rows = []
            for f in features:
                x = f[key]
                rows.append(torch.cat((x, x.new_zeros((length - x.shape[0], x.shape[1])))))
            batch[key] = torch.stack(rows)
    return batch
