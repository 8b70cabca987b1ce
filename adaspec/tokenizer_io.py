"""Tokenizer provenance: fingerprints stored beside each model, checks, and atomic saves.

Two tokenizers of the same size can map the same text to different ids (a BPE trained on other
text, another model's vocabulary), so models are matched to tokenizers by a fingerprint of the
vocabulary, merges, normalisation, pre-tokenisation and special tokens, not by size. Every model
folder and Trainer checkpoint that the pipeline writes carries :data:`FINGERPRINT_FILE`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from adaspec._base.atomic import atomic_folder, write_text_atomic

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "tokenizer_fingerprint.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A sha256 of everything that decides which ids a tokenizer gives a text.

    Fast tokenizers contribute their whole ``tokenizer.json`` except the runtime padding and
    truncation settings; every tokenizer contributes its vocabulary and special tokens.
    """
    payload: dict[str, Any] = {
        "vocab": sorted(tokenizer.get_vocab().items()),
        "special": sorted((k, str(v)) for k, v in tokenizer.special_tokens_map.items()),
    }
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        for key in ("truncation", "padding", "version"):
            spec.pop(key, None)
        payload["backend"] = spec
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def write_fingerprint(tokenizer: Any, folder: str | os.PathLike) -> Path:
    """Write ``tokenizer``'s fingerprint and size to ``folder/tokenizer_fingerprint.json``."""
    payload = {"sha256": tokenizer_fingerprint(tokenizer), "size": len(tokenizer)}
    return write_text_atomic(Path(folder) / FINGERPRINT_FILE, json.dumps(payload) + "\n")


def folder_fingerprint(folder: str | os.PathLike) -> str | None:
    """The tokenizer fingerprint of a model folder: the stored one, else that of its tokenizer files.

    Returns ``None`` when the folder says nothing about its tokenizer.
    """
    folder = Path(folder)
    stored = folder / FINGERPRINT_FILE
    if stored.exists():
        try:
            return str(json.loads(stored.read_text())["sha256"])
        except (ValueError, KeyError, TypeError):
            logger.warning("%s is unreadable; fingerprinting the tokenizer files instead", stored)
    if not any((folder / name).exists() for name in _TOKENIZER_FILES):
        return None
    from adaspec.modeling import load_tokenizer

    return tokenizer_fingerprint(load_tokenizer(str(folder)))


def check_same_tokenizer(tokenizer: Any, folders: dict[str, str | os.PathLike]) -> None:
    """Refuse model folders whose tokenizer differs from ``tokenizer``.

    Args:
        tokenizer: The tokenizer the run uses.
        folders: Role (``"target"``, ``"draft checkpoint"``, ...) to model folder; folders that
            carry no tokenizer information are skipped.

    Raises:
        ValueError: Naming each folder whose tokenizer differs, and the fix.
    """
    want = tokenizer_fingerprint(tokenizer)
    bad = {}
    for role, folder in folders.items():
        got = folder_fingerprint(folder)
        if got is not None and got != want:
            bad[role] = str(folder)
    if bad:
        raise ValueError(
            f"tokenizer mismatch: {bad} were trained with another tokenizer than the one this run "
            f"uses ({len(tokenizer)} tokens); equal sizes are not enough, the token ids differ. "
            "Set tokenizer.name_or_path to the models' own tokenizer (their folder), or use models "
            "trained with this run's tokenizer"
        )


def save_tokenizer(tokenizer: Any, folder: str | os.PathLike) -> Path:
    """Save ``tokenizer`` (and its fingerprint) to ``folder`` atomically: temp folder, then rename.

    A save cut short (disk full, a kill) leaves at most ``folder.tmp`` behind, never a truncated
    ``tokenizer.json`` in ``folder``.
    """
    with atomic_folder(folder) as tmp:
        tokenizer.save_pretrained(str(tmp))
        write_fingerprint(tokenizer, tmp)
    return Path(folder)
