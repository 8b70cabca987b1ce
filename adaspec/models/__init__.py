"""Pretrained targets that install offline: a registry of known models and their preparation.

``adaspec models prepare smollm2-135m-instruct DIR`` converts the GGUF file shipped inside a pip
package into a plain safetensors folder (model, tokenizer, chat template) that every other command
loads with ``from_pretrained``; see :mod:`adaspec.models.prepare`.
"""

from adaspec.models.layers import first_layers_draft
from adaspec.models.prepare import (
    MARKER,
    ModelSourceError,
    PrepareResult,
    find_gguf,
    load_gguf,
    prepare_model,
    write_model_folder,
)
from adaspec.models.registry import REGISTRY, ModelEntry, get_entry

__all__ = [
    "MARKER",
    "REGISTRY",
    "ModelEntry",
    "ModelSourceError",
    "PrepareResult",
    "find_gguf",
    "first_layers_draft",
    "get_entry",
    "load_gguf",
    "prepare_model",
    "write_model_folder",
]
