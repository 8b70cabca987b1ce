"""The target's greedy continuations, kept on disk so that runs with the same target share them.

Every evaluation decodes the target greedily on each held-out prompt; on a real target that is most
of the evaluation's time (SmolLM2-135M on 2 CPU cores: ~8 of its ~13 minutes for 50 prompts), and
it is the same for every seed, draft and recipe. :class:`TargetOutputCache` stores each
continuation under a key made of the target's weights (a SHA-256 of every parameter and buffer), the
prompt's token ids, ``max_new_tokens`` and the EOS ids, so a changed target, prompt or length never
reads a stale entry. The file is jsonl, appended and flushed one line per prompt; a torn last line
(a killed run) is skipped on reading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

FORMAT = "adaspec.target_outputs/1"


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(
        list(model.named_parameters()) + list(model.named_buffers()), key=lambda kv: kv[0]
    ):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class TargetOutputCache:
    """Greedy continuations of one target in a jsonl file (see the module docstring).

    Args:
        path: The jsonl file (created with its folder on the first :meth:`put`).
        target: The target model whose outputs are stored.

    """

    def __init__(self, path: str | os.PathLike, target: torch.nn.Module) -> None:
        self.path = Path(path)
        self.fingerprint = weights_fingerprint(target)
        self.hits = 0
        self._entries: dict[str, tuple[list[int], float]] = {}
        # A torn last line gets its newline before the next entry is appended.
        self._newline = self.path.exists() and not self.path.read_bytes().endswith(b"\n")
        if self.path.exists():
            for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    rec = json.loads(line)
                    self._entries[rec["key"]] = ([int(t) for t in rec["tokens"]], rec["seconds"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    logger.warning("%s line %d is not a cache entry (torn write?): skipped",
                                   self.path, number)  # fmt: skip

    def key(self, prompt_ids: Sequence[int], max_new_tokens: int, eos: Sequence[int]) -> str:
        """The entry key of one greedy generation of this target."""
        text = json.dumps(
            [FORMAT, self.fingerprint, list(map(int, prompt_ids)), int(max_new_tokens),
             sorted(map(int, eos))]
        )  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> tuple[list[int], float] | None:
        """``(new tokens, seconds it took)`` for ``key``, or None."""
        hit = self._entries.get(key)
        if hit is not None:
            self.hits += 1
        return hit

    def put(self, key: str, tokens: Sequence[int], seconds: float) -> None:
        """Store one continuation (appended to the file and flushed at once)."""
        entry = ([int(t) for t in tokens], float(seconds))
        self._entries[key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            if self._newline and self.path.stat().st_size:
                f.write("\n")
            self._newline = False
            f.write(json.dumps({"key": key, "tokens": entry[0], "seconds": entry[1]}) + "\n")
            f.flush()
            os.fsync(f.fileno())
