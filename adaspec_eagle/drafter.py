"""EAGLE heads as :class:`adaspec.decoding.Drafter` for chains, static and dynamic trees.

The head's KV cache holds one entry per committed (target feature, next token) pair: entry j at
rotary position j consumes ``(h_j, x_{j+1})`` and outputs the predicted feature of position
j + 1, whose logits are the draft distribution of ``x_{j+2}`` (the alignment the heads are trained
with, :mod:`adaspec_eagle.unroll`). With C committed tokens the cache holds C - 1 entries and the
last entry's output drafts the root's children.

Tree nodes are drafted level by level: a node at depth d is fed at position ``C - 2 + d`` with
the token it holds and the *head's own* output of its parent's entry as feature (EAGLE-2), under
a 4D mask letting it see the committed entries, its fed ancestors and itself. On commit the tree
entries are dropped and the accepted tokens are fed again with the target's *real* features (as
EAGLE does), which keeps the head's cache exactly in step with the committed sequence.

The level-by-level tree construction (top-k / sampled children, EAGLE-2 dynamic re-ranking) is
the pure growers of :mod:`adaspec.decoding.growth`, shared with
:class:`adaspec.decoding.DraftModelDrafter`; this drafter only supplies the per-level head forward
(:meth:`EagleDrafter._expand`).
"""

from __future__ import annotations

import torch

from adaspec.decoding.cache import (
    additive_mask,
    cache_length,
    causal_allowed,
    crop_cache,
    new_cache,
)
from adaspec.decoding.drafter import Drafter, TargetFeatures
from adaspec.decoding.growth import Expansion, grow_tree
from adaspec.decoding.sampling import SamplingConfig
from adaspec.decoding.tree import DraftTree, TreePolicy
from adaspec_eagle.heads import Eagle1Head, Eagle3Head


class EagleDrafter(Drafter):
    """Drafts with an EAGLE-1/2 or EAGLE-3 head conditioned on the target's hidden states.

    Args:
        head: The trained head (attached to ``target`` here).
        target: The target model (its embeddings, and lm_head for EAGLE-1, are shared).

    """

    def __init__(self, head: Eagle1Head | Eagle3Head, target: torch.nn.Module) -> None:
        self.head = head.eval()
        head.attach(target)
        self.is_eagle3 = isinstance(head, Eagle3Head)
        self.target_layers = tuple(head.aux_layers) if self.is_eagle3 else (-1,)
        self.vocab_size = int(target.get_output_embeddings().weight.shape[0])
        self._cache = None
        self._entries = 0
        self._committed = 0
        self._root_logits: torch.Tensor | None = None
        self._root_out: torch.Tensor | None = None
        self._tree_out: list[torch.Tensor] = []

    # ------------------------------------------------------------------ head passes
    def _dtype(self) -> torch.dtype:
        return self.head.fc.weight.dtype

    def _features(self, features: TargetFeatures) -> torch.Tensor:
        hs = [h.to(self._dtype()) for h in features.hidden_states]
        return self.head.fuse(torch.cat(hs, dim=-1)) if self.is_eagle3 else hs[0]

    def _run(
        self, feats: torch.Tensor, tokens: torch.Tensor, allowed: torch.Tensor, pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed ``q`` (feature, token) pairs; return outputs [q, H] and target-vocab logits."""
        q = tokens.shape[1]
        past = cache_length(self._cache) + q - allowed.shape[1]
        mask = additive_mask(allowed, past, self._dtype(), tokens.device)
        kw = dict(input_ids=tokens, attention_mask=mask, position_ids=pos, cache=self._cache)
        if self.is_eagle3:
            out = self.head.step(feats, **kw)
            logits = self.head.draft_logits_to_target(self.head.logits(out).float())
        else:
            out = self.head(feats, **kw)
            logits = self.head.logits(out).float()
        return out[0], logits[0, :, : self.vocab_size]

    def _feed_committed(self, feats: torch.Tensor, tokens: torch.Tensor) -> None:
        """Append real (feature, token) pairs after the committed entries."""
        crop_cache(self._cache, self._entries)
        q = tokens.shape[1]
        pos = torch.arange(self._entries, self._entries + q, device=tokens.device)[None]
        out, logits = self._run(feats, tokens, causal_allowed(q, tokens.device), pos)
        self._entries += q
        self._root_out, self._root_logits = out[-1], logits[-1]

    # ------------------------------------------------------------------ protocol
    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, features: TargetFeatures | None) -> None:
        """Start a sequence from the prompt's target features (see ``Drafter.prefill``)."""
        if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] < 1:
            raise ValueError(f"input_ids must be [1, L], got {tuple(input_ids.shape)}")
        self._cache = new_cache()
        self._entries = 0
        self._committed = input_ids.shape[1]
        device = self.head.fc.weight.device
        if features is None or features.length == 0:
            # One-token prompt: no target feature precedes the root; draft from a zero feature
            # (still lossless, only the first step's acceptance suffers).
            h = self.head.config.hidden_size
            feats = torch.zeros(1, 1, h, dtype=self._dtype(), device=device)
            pos = torch.zeros(1, 1, dtype=torch.long, device=device)
            tokens = input_ids[:, -1:].to(device)
            out, logits = self._run(feats, tokens, causal_allowed(1, device), pos)
            crop_cache(self._cache, 0)
            self._root_out, self._root_logits = out[-1], logits[-1]
            return
        if features.length != input_ids.shape[1] - 1:
            raise ValueError(
                f"prefill got features of {features.length} positions for a prompt of "
                f"{input_ids.shape[1]} tokens; expected L - 1 = {input_ids.shape[1] - 1}"
            )
        self._feed_committed(self._features(features), input_ids[:, 1:].to(device))

    @torch.no_grad()
    def propose(
        self,
        policy: TreePolicy,
        sampling: SamplingConfig,
        generator: torch.Generator | None = None,
    ) -> DraftTree:
        """Draft a chain / static tree / dynamic tree (see ``Drafter.propose``)."""
        if self._root_logits is None:
            raise RuntimeError("call prefill() before propose()")
        crop_cache(self._cache, self._entries)
        self._tree_out = []
        tree, _ = grow_tree(policy, self._root_logits, self._expand, sampling, generator)
        return tree

    @torch.no_grad()
    def commit(
        self,
        new_tokens: torch.Tensor,
        accepted_nodes: torch.Tensor,
        features: TargetFeatures | None,
    ) -> None:
        """Drop the tree entries and feed ``[old root] + accepted`` features with ``new_tokens``."""
        if features is None or features.length != new_tokens.shape[1]:
            got = None if features is None else features.length
            raise ValueError(
                f"EagleDrafter.commit needs target features of {new_tokens.shape[1]} positions "
                f"([old root] + accepted tokens), got {got}"
            )
        device = self.head.fc.weight.device
        self._feed_committed(self._features(features), new_tokens.to(device))
        self._committed += new_tokens.shape[1]

    # ------------------------------------------------------------------ tree levels
    def _expand(self, level: Expansion) -> torch.Tensor:
        """Feed one tree level to the head; returns its logits ``[k, V]``.

        Each node's feature is the head's own output at its parent (the root's output for
        children of the root); outputs are kept in feeding order, so a parent's slot indexes them.
        """
        fed = torch.cat([self._root_out[None], *self._tree_out])  # row 0: root, row s + 1: slot s
        feats = fed[level.parent_slots + 1]
        pos = (self._committed - 2 + level.depths)[None]
        out, logits = self._run(feats[None], level.tokens[None], level.allowed, pos)
        self._tree_out.append(out)
        return logits
