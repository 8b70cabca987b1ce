"""Batch collation for completion training: pad ids, mask and labels to one length."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from adaspec.data.example import DataError
from adaspec.data.sft import IGNORE_INDEX


@dataclasses.dataclass
class DataCollatorForCompletion:
    """Pad tokenized features (from :func:`adaspec.data.sft.tokenize_examples`) into tensors.

    ``input_ids`` are padded with the pad id, ``labels`` with ``-100`` and ``attention_mask``
    with 0, on the right by default (what training with causal-LM labels expects; positions are
    then ``0..n-1`` without help). An ``example_index`` (an int per feature, which the cached-teacher
    path of the trainers uses to find each example's precomputed target logits) is passed through
    as a ``[batch]`` tensor; other keys are dropped.

    Attributes:
        tokenizer: Source of the pad id (``pad_token_id``, else ``eos_token_id``) when
            ``pad_token_id`` is not given.
        pad_token_id: Explicit pad id; overrides the tokenizer's.
        pad_to_multiple_of: Round the padded length up to a multiple of this (e.g. 8 for tensor
            cores); None pads to the longest sequence of the batch.
        padding_side: ``"right"`` (training) or ``"left"`` (batched generation).
        label_pad_token_id: Label value at padded positions.

    """

    tokenizer: Any = None
    pad_token_id: int | None = None
    pad_to_multiple_of: int | None = None
    padding_side: str = "right"
    label_pad_token_id: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if self.pad_token_id is None and self.tokenizer is not None:
            self.pad_token_id = self.tokenizer.pad_token_id
            if self.pad_token_id is None:
                self.pad_token_id = self.tokenizer.eos_token_id
        if self.pad_token_id is None:
            raise DataError(
                "DataCollatorForCompletion needs a pad id: pass pad_token_id, or a tokenizer with "
                "a pad_token or eos_token (e.g. tokenizer.pad_token = tokenizer.eos_token)"
            )
        if self.padding_side not in ("right", "left"):
            raise DataError(f"padding_side must be 'right' or 'left', got {self.padding_side!r}")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise DataError(
                f"pad_to_multiple_of must be >= 1 or None, got {self.pad_to_multiple_of}"
            )

    def _pad(self, rows: list[list[int]], length: int, value: int) -> torch.Tensor:
        out = torch.full((len(rows), length), value, dtype=torch.long)
        for i, row in enumerate(rows):
            if not row:
                continue
            t = torch.as_tensor(row, dtype=torch.long)
            if self.padding_side == "right":
                out[i, : len(row)] = t
            else:
                out[i, length - len(row) :] = t
        return out

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate a list of features.

        Args:
            features: Dicts with ``input_ids`` (list or 1-D tensor), optional ``labels`` and
                ``attention_mask`` of the same length.

        Returns:
            ``input_ids``, ``attention_mask`` and (when given) ``labels``, each a ``[batch,
            length]`` long tensor.

        """
        if not features:
            raise DataError("cannot collate an empty batch")
        ids = [_as_list(f["input_ids"]) for f in features]
        length = max(len(r) for r in ids)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            length = (length + m - 1) // m * m
        masks = [
            _as_list(f["attention_mask"]) if "attention_mask" in f else [1] * len(r)
            for f, r in zip(features, ids)
        ]
        batch = {
            "input_ids": self._pad(ids, length, int(self.pad_token_id)),
            "attention_mask": self._pad(masks, length, 0),
        }
        if "labels" in features[0]:
            labels = [_as_list(f["labels"]) for f in features]
            for lab, r in zip(labels, ids):
                if len(lab) != len(r):
                    raise DataError(
                        f"labels ({len(lab)}) and input_ids ({len(r)}) differ in length in one "
                        "feature; build features with adaspec.data.tokenize_examples"
                    )
            batch["labels"] = self._pad(labels, length, self.label_pad_token_id)
        if "example_index" in features[0]:
            batch["example_index"] = torch.tensor([int(f["example_index"]) for f in features])
        return batch


def _as_list(x: Any) -> list[int]:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return list(x)
