"""Draft-target alignment on held-out reference responses (teacher-forced).

The acceptance rate α and the token-level acceptance of :mod:`adaspec.eval.evaluate` are measured on
the target's own greedy continuations. When the target is weak (small models trained on a CPU),
greedy decoding falls into repetition loops that any draft predicts, and those numbers say little
about how well a draft learned the task. This module scores the held-out *reference* responses
instead: one forward of each model over prompt + gold response, then at every response position
the token-level acceptance ``Σ_x min(p(x), q(x))`` and whether the two argmaxes agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from adaspec.data import Example, tokenize_examples
from adaspec.eval.token_acceptance import min_overlap, scored_logits
from adaspec.modeling import check_same_vocabulary


@torch.no_grad()
def reference_alignment(
    target: torch.nn.Module,
    drafts: Mapping[str, torch.nn.Module],
    tokenizer: Any,
    examples: Sequence[Example],
    max_length: int = 1024,
    truncation_side: str = "right",
    chat_template: str = "never",
) -> dict[str, dict[str, float]]:
    """Token-level acceptance and argmax agreement of each draft on held-out gold responses.

    Args:
        target: The target causal LM.
        drafts: Draft name -> causal LM sharing the target's tokenizer.
        tokenizer: The shared tokenizer.
        examples: Held-out examples; their ``response`` (with EOS) is scored.
        max_length: Longest scored sequence.
        truncation_side: How a longer one is cut, as in training: ``"right"`` cuts the response
            tail, ``"left"`` the prompt head (keeps the whole response, e.g. summaries).
        chat_template: Tokenize through the chat template, as training did (``"auto"``...).

    Returns:
        Draft name -> ``{"token_acceptance", "greedy_agreement", "tokens"}``, pooled over all
        scored response tokens.
    """
    vocab = check_same_vocabulary({"target": target, **dict(drafts)}, tokenizer)
    features, _ = tokenize_examples(
        list(examples),
        tokenizer,
        max_length,
        truncation_side=truncation_side,
        chat_template=chat_template,
        allow_all_dropped=True,
    )
    sums = {name: [0.0, 0.0] for name in drafts}
    count = 0
    for feat in features:
        labels = torch.tensor(feat["labels"])
        scored = (labels != -100).nonzero()
        if scored.numel() == 0:
            continue
        first = int(scored[0, 0])
        ids = torch.tensor([feat["input_ids"]])
        t_logits = scored_logits(target, ids, first, vocab)[0]
        t_top = t_logits.argmax(-1).cpu()
        count += t_logits.shape[0]
        for name, draft in drafts.items():
            d_logits = scored_logits(draft, ids, first, vocab)[0]
            sums[name][0] += float(min_overlap(t_logits, d_logits.to(t_logits.device)).sum())
            sums[name][1] += float((d_logits.argmax(-1).cpu() == t_top).sum())
    return {
        name: {
            "token_acceptance": s[0] / count if count else float("nan"),
            "greedy_agreement": s[1] / count if count else float("nan"),
            "tokens": count,
        }
        for name, s in sums.items()
    }
