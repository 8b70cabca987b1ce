"""Loading the target, the drafts and the shared tokenizer of an evaluation, with vocabulary checks.

A draft that does not share the target's tokenizer cannot be verified token for token, so it is
refused before any decoding: the models' logit widths must cover the tokenizer
(:func:`adaspec.modeling.check_same_vocabulary`), and a draft checkpoint that ships its own
tokenizer must have exactly the target tokenizer's vocabulary.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from adaspec.eval.config import EvalConfig
from adaspec.modeling import check_same_vocabulary, freeze, load_model, load_tokenizer

logger = logging.getLogger(__name__)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _has_tokenizer(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, f)) for f in _TOKENIZER_FILES
    )


def check_same_tokenizer(reference: Any, other: Any, name: str) -> None:
    """Raise unless two tokenizers map the same strings to the same ids.

    Args:
        reference: The target's tokenizer.
        other: A draft's tokenizer.
        name: The draft's name, for the message.

    Raises:
        ValueError: Naming the draft, both vocabulary sizes and a few differing tokens.

    """
    a, b = reference.get_vocab(), other.get_vocab()
    if a == b:
        return
    differ = sorted(set(a.items()) ^ set(b.items()))[:5]
    raise ValueError(
        f"draft {name!r} does not share the target's tokenizer: vocabularies of {len(a)} and "
        f"{len(b)} tokens differ (e.g. {differ}); speculative decoding needs one tokenizer for "
        "target and draft: use a draft trained with the target's tokenizer"
    )


def load_eval_models(
    config: EvalConfig, device: torch.device
) -> tuple[torch.nn.Module, dict[str, torch.nn.Module], Any]:
    """Load the frozen target and drafts on ``device`` and the shared tokenizer.

    Args:
        config: The evaluation config (``target``, ``drafts``, ``tokenizer``, ``dtype``).
        device: Where the models go.

    Returns:
        ``(target, drafts, tokenizer)``.

    Raises:
        ValueError: If a draft's tokenizer or vocabulary does not match the target's.

    """
    tokenizer = load_tokenizer(config.tokenizer or config.target)
    for name, path in config.drafts.items():
        if _has_tokenizer(path):
            check_same_tokenizer(tokenizer, load_tokenizer(path), name)
    kwargs = {}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    dtype = _default_dtype(config.dtype, device)
    target = freeze(load_model(config.target, dtype=dtype, **kwargs).to(device))
    drafts = {
        name: freeze(load_model(path, dtype=dtype, **kwargs).to(device))
        for name, path in config.drafts.items()
    }
    check_same_vocabulary({"target": target, **drafts}, tokenizer)
    return target, drafts, tokenizer


def _default_dtype(dtype: str, device: torch.device) -> str:
    """``auto`` keeps the checkpoint's dtype on GPU and uses float32 on CPU."""
    if dtype == "auto" and device.type == "cpu":
        return "float32"
    return dtype


@torch.no_grad()
def check_finite_logits(models: dict[str, Any], input_ids: torch.Tensor) -> None:
    """Refuse models whose logits on ``input_ids`` hold NaN or inf (corrupted or diverged).

    Without this check such a model is evaluated as α = 0 without a word.

    Args:
        models: Name -> causal LM (``"target"``, ``"draft 'adaspec'"``...).
        input_ids: ``[1, T]`` prompt ids (moved to each model's device).

    Raises:
        ValueError: Naming the model and how many of its weights are non-finite.
    """
    for name, model in models.items():
        device = next(model.parameters()).device
        logits = model(input_ids=input_ids.to(device)).logits
        if torch.isfinite(logits).all():
            continue
        params = list(model.parameters())
        bad = sum(int((~torch.isfinite(p)).sum()) for p in params)
        total = sum(p.numel() for p in params)
        raise ValueError(
            f"{name} gives non-finite logits (NaN or inf) on the first prompt; {bad} of {total} "
            "weights are non-finite: the checkpoint is corrupted or its training diverged (check "
            "its loss curve); retrain it or load another checkpoint"
        )
