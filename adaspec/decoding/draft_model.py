"""A standalone draft language model (for example the AdaSPEC distilled draft) as a drafter.

:class:`DraftModelDrafter` drafts chains, static trees and EAGLE-2 dynamic trees from any Hugging
Face causal LM that shares the target's tokenizer. It keeps its own KV cache in step with the
committed sequence:

* trees are grown by :mod:`adaspec.decoding.growth`; each level is one draft forward
  (:meth:`DraftModelDrafter._expand`) over the nodes expanded at that level, with the same 4D
  tree mask machinery as verification (nodes see the committed prefix, their ancestors and
  themselves);
* on :meth:`commit`, the KV entries already computed for accepted nodes are kept (gathered on
  the sequence dimension), the rest of the tree is cropped, and the tokens the draft has not
  seen yet (unexpanded accepted nodes and the target's bonus token) are fed at the next
  :meth:`propose` in one causal chunk ("catch-up").
"""

from __future__ import annotations

import torch

from adaspec._base.models import model_vocab_size
from adaspec.decoding.cache import (
    causal_allowed,
    crop_cache,
    forward,
    keep_positions,
    model_device,
    new_cache,
)
from adaspec.decoding.drafter import Drafter, TargetFeatures
from adaspec.decoding.growth import Expansion, grow_tree
from adaspec.decoding.sampling import SamplingConfig
from adaspec.decoding.tree import DraftTree, TreePolicy


class DraftModelDrafter(Drafter):
    """Drafts with a standalone causal LM.

    Args:
        model: A Hugging Face causal LM sharing the target's tokenizer.
        vocab_size: Columns of its logits to use (defaults to its output embedding rows); set it
            to the shared vocabulary when the target's embedding is padded differently.
    """

    target_layers: tuple[int, ...] = ()

    def __init__(self, model, vocab_size: int | None = None) -> None:
        self.model = model
        self.vocab_size = int(vocab_size or model_vocab_size(model))
        self._tokens: torch.Tensor | None = None
        self._cache = None
        self._cache_len = 0
        self._root_logits: torch.Tensor | None = None
        self._slots: torch.Tensor | None = None

    # ------------------------------------------------------------------ protocol
    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, features: TargetFeatures | None = None) -> None:
        """Start a sequence: run the draft over the prompt (see :class:`Drafter`)."""
        if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] < 1:
            raise ValueError(
                f"input_ids must have shape [1, L] with L >= 1, got {tuple(input_ids.shape)}"
            )
        self._tokens = input_ids.to(model_device(self.model))
        self._cache = new_cache()
        self._cache_len = 0
        self._slots = None
        self._root_logits = self._catch_up()

    @torch.no_grad()
    def propose(
        self,
        policy: TreePolicy,
        sampling: SamplingConfig,
        generator: torch.Generator | None = None,
    ) -> DraftTree:
        """Draft a chain / static tree / dynamic tree (see :class:`Drafter`)."""
        if self._tokens is None:
            raise RuntimeError("call prefill() before propose()")
        root = self._root_logits if self._root_logits is not None else self._catch_up()
        self._root_logits = None
        tree, self._slots = grow_tree(policy, root, self._expand, sampling, generator)
        return tree

    @torch.no_grad()
    def commit(
        self,
        new_tokens: torch.Tensor,
        accepted_nodes: torch.Tensor,
        features: TargetFeatures | None = None,
    ) -> None:
        """Keep the accepted nodes' KV entries, crop the rest, append ``new_tokens``."""
        committed = self._tokens.shape[1]
        kept = 0
        if self._slots is not None and accepted_nodes.numel():
            slots = self._slots[accepted_nodes.to(self._slots.device)]
            # Fed (expanded) nodes on a root-to-node path form a prefix of it.
            kept = int((slots >= 0).sum())
            keep_positions(self._cache, committed, slots[:kept])
        else:
            crop_cache(self._cache, committed)
        self._cache_len = committed + kept
        self._tokens = torch.cat([self._tokens, new_tokens.to(self._tokens.device)], dim=1)
        self._slots = None

    # ------------------------------------------------------------------ internals
    def _catch_up(self) -> torch.Tensor:
        """Feed committed tokens the draft has not seen; return the root's logits ``[V]``."""
        total = self._tokens.shape[1]
        if self._cache_len >= total:  # root already cached: recompute its logits
            self._cache_len = total - 1
        crop_cache(self._cache, self._cache_len)
        new = self._tokens[:, self._cache_len :]
        q = new.shape[1]
        pos = torch.arange(self._cache_len, total, device=new.device)[None]
        out = forward(self.model, new, self._cache, causal_allowed(q, new.device), pos)
        self._cache_len = total
        return out.logits[0, -1, : self.vocab_size]

    def _expand(self, level: Expansion) -> torch.Tensor:
        """One draft forward over a tree level; returns its logits ``[k, V]``."""
        pos = (self._tokens.shape[1] - 1 + level.depths)[None]
        out = forward(self.model, level.tokens[None], self._cache, level.allowed, pos)
        return out.logits[0, :, : self.vocab_size]
