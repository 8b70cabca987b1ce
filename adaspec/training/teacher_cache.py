"""Precomputed teacher outputs: one frozen-model forward over the training set, reused by every stage.

The reference and every draft (each budget, the compute-matched baselines) are distilled from the
same frozen target on the same data, so the target's outputs can be computed once and kept; the
drafts are also filtered by the same frozen reference. Only the response positions are stored, in
the model's own dtype by default, so the loss equals the online path's exactly. Two kinds:

* ``"logits"``: the logits themselves (response tokens x vocabulary x bytes). Right for small
  vocabularies; a 49k vocabulary in float32 is 196 KB a token.
* ``"hidden"``: the final (normed) hidden states, ``hidden_size`` values a token (576 for
  SmolLM2-135M: 2.3 KB a token). The trainer recomputes the logits with the frozen model's
  ``lm_head`` inside the chunked loss (:func:`adaspec.losses.chunked_adaspec_loss`), so no
  ``[tokens x vocab]`` tensor is ever held, and the result is the same as the uncached path's.

This trades host memory for the frozen forward of every distillation step, which dominates the
step time of a small draft.
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
CACHE_KINDS = ("logits", "hidden")


def check_cache_kind(kind: str) -> str:
    """Return ``kind`` if it is one of :data:`CACHE_KINDS`, else raise a ``ValueError``."""
    if kind not in CACHE_KINDS:
        raise ValueError(f"cache kind must be one of {CACHE_KINDS}, got {kind!r}")
    return kind


class TeacherCache:
    """A frozen model's logits or final hidden states at the response positions of each example.

    Args:
        values: Per example, a ``[n_response_i, D]`` tensor at the positions whose next-token
            label is a response token (the shifted ``labels[1:] != -100``), in sequence order;
            ``D`` is the vocabulary (``kind="logits"``) or the hidden size (``kind="hidden"``).
        kind: ``"logits"`` or ``"hidden"``.
    """

    def __init__(self, values: Sequence[Tensor], kind: str = "logits") -> None:
        self.values = list(values)
        self.kind = check_cache_kind(kind)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def nbytes(self) -> int:
        """Host memory the cache holds."""
        return sum(t.numel() * t.element_size() for t in self.values)

    def gather(self, indices: Tensor, device: torch.device | str | None = None) -> Tensor:
        """Concatenate the cached rows of ``indices`` (a ``[B]`` tensor) into ``[N, D]``.

        The row order matches ``logits[:, :-1][labels[:, 1:] != -100]`` of the collated batch
        (row-major over examples, then positions).
        """
        rows = [self.values[i] for i in indices.tolist()]
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
        kind: str = "logits",
    ) -> TeacherCache:
        """Run ``target`` once over ``dataset`` and keep its outputs at response positions.

        Args:
            target: The frozen model (the target, or the reference for a reference cache); its
                device is used.
            dataset: Indexable tokenized examples with ``input_ids``, ``attention_mask``, ``labels``.
            collator: Pads a list of examples into a batch (right padding).
            batch_size: Examples per forward.
            vocab_size: Keep the first ``vocab_size`` logit columns (padded embedding rows cut);
                ignored for ``kind="hidden"`` (the loss cuts the head's rows instead).
            dtype: Storage dtype; ``None`` keeps the model's output dtype (exact).
            progress: Show a progress bar.
            kind: ``"logits"`` or ``"hidden"`` (final normed hidden states, the input of
                ``lm_head``).

        Returns:
            The cache, one entry per example of ``dataset`` in order.
        """
        from tqdm.auto import tqdm

        check_cache_kind(kind)
        target.eval()
        device = next(target.parameters()).device
        out: list[Tensor] = []
        starts = range(0, len(dataset), batch_size)
        for start in tqdm(starts, desc=f"teacher {kind}", disable=not progress):
            feats = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            feats = [{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in feats]
            batch = collator(feats)
            inputs = {
                "input_ids": batch["input_ids"].to(device),
                "attention_mask": batch["attention_mask"].to(device),
            }
            if kind == "hidden":
                values = final_hidden_states(target, inputs)[:, :-1]
            else:
                values = target(**inputs, use_cache=False).logits[:, :-1]
                if vocab_size is not None:
                    values = values[..., :vocab_size]
            valid = (batch["labels"][:, 1:] != IGNORE_INDEX).to(device)
            for row in range(values.shape[0]):
                kept = values[row][valid[row]]
                out.append((kept.to(dtype) if dtype is not None else kept).cpu().clone())
        cache = cls(out, kind=kind)
        logger.info(
            "teacher cache (%s): %d examples, %.1f MB", kind, len(cache), cache.nbytes / 2**20
        )
        return cache


def final_hidden_states(model: torch.nn.Module, inputs: dict[str, Tensor]) -> Tensor:
    """``[B, T, H]`` final hidden states (after the final norm: the input of ``lm_head``).

    The LM head runs for one position only (``logits_to_keep=1``), so no ``[B, T, V]`` tensor is
    built.
    """
    out = model(**inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
    return out.hidden_states[-1]


def with_example_index(dataset: Any) -> Any:
    """A copy of a ``datasets.Dataset`` with an ``example_index`` column (0..n-1)."""
    if INDEX_KEY in dataset.column_names:
        return dataset
    return dataset.add_column(INDEX_KEY, list(range(len(dataset))))
