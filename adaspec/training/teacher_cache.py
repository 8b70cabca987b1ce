"""Precomputed target logits: one target forward over the training set, reused by every stage.

The reference and every draft (each budget, the compute-matched baselines) are distilled from the
same frozen target on the same data, so the target's logits can be computed once and kept. Only
the response positions are stored, in the target's own dtype by default, so the loss equals the
online path's exactly. This trades host memory (response tokens x vocabulary x bytes) for the
target forward of every distillation step, which dominates the step time of a small draft.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

logger = logging.getLogger(__name__)
IGNORE_INDEX = -100
INDEX_KEY = "example_index"


class TeacherCache:
    """Target logits at the response positions of each training example.

    Args:
        logits: Per example, a ``[n_response_i, V]`` tensor: the target's logits at the positions
            whose next-token label is a response token (the shifted ``labels[1:] != -100``), in
            sequence order.
    """

    def __init__(self, logits: Sequence[Tensor]) -> None:
        self.logits = list(logits)

    def __len__(self) -> int:
        return len(self.logits)

    @property
    def nbytes(self) -> int:
        """Host memory the cache holds."""
        return sum(t.numel() * t.element_size() for t in self.logits)

    def gather(self, indices: Tensor, device: torch.device | str | None = None) -> Tensor:
        """Concatenate the cached logits of ``indices`` (a ``[B]`` tensor) into ``[N, V]``.

        The row order matches ``logits[:, :-1][labels[:, 1:] != -100]`` of the collated batch
        (row-major over examples, then positions).
        """
        rows = [self.logits[i] for i in indices.tolist()]
        out = torch.cat(rows) if rows else torch.empty(0)
        return out.to(device) if device is not None else out

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        target: torch.nn.Module,
        dataset: Any,
        collator: Any,
        batch_size: int = 16,
        vocab_size: int | None = None,
        dtype: torch.dtype | None = None,
        progress: bool = True,
    ) -> TeacherCache:
        """Run ``target`` once over ``dataset`` and keep its logits at response positions.

        Args:
            target: The frozen target (its device is used).
            dataset: Indexable tokenized examples with ``input_ids``, ``attention_mask``, ``labels``.
            collator: Pads a list of examples into a batch (right padding).
            batch_size: Examples per forward.
            vocab_size: Keep the first ``vocab_size`` logit columns (padded embedding rows cut).
            dtype: Storage dtype; ``None`` keeps the target's logits dtype (exact).
            progress: Show a progress bar.

        Returns:
            The cache, one entry per example of ``dataset`` in order.
        """
        from tqdm.auto import tqdm

        target.eval()
        device = next(target.parameters()).device
        out: list[Tensor] = []
        starts = range(0, len(dataset), batch_size)
        for start in tqdm(starts, desc="teacher logits", disable=not progress):
            feats = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            feats = [{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in feats]
            batch = collator(feats)
            logits = target(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                use_cache=False,
            ).logits[:, :-1]
            if vocab_size is not None:
                logits = logits[..., :vocab_size]
            valid = (batch["labels"][:, 1:] != IGNORE_INDEX).to(device)
            for row in range(logits.shape[0]):
                kept = logits[row][valid[row]]
                out.append((kept.to(dtype) if dtype is not None else kept).cpu().clone())
        cache = cls(out)
        logger.info("teacher cache: %d examples, %.1f MB", len(cache), cache.nbytes / 2**20)
        return cache


def with_example_index(dataset: Any) -> Any:
    """A copy of a ``datasets.Dataset`` with an ``example_index`` column (0..n-1)."""
    if INDEX_KEY in dataset.column_names:
        return dataset
    return dataset.add_column(INDEX_KEY, list(range(len(dataset))))
