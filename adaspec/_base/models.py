"""Facts about a loaded model that the decoding core and the model layer both need."""

from __future__ import annotations

import torch


def model_vocab_size(model: torch.nn.Module) -> int:
    """Rows of the model's output embedding (may exceed the tokenizer's size when padded)."""
    out = model.get_output_embeddings()
    if out is not None:
        return int(out.weight.shape[0])
    return int(model.config.vocab_size)
