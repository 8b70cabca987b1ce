"""A standalone draft language model (for example the AdaSPEC distilled draft) as a drafter.

:class:`DraftModelDrafter` drafts chains, static trees and EAGLE-2 dynamic trees from any Hugging
Face causal LM that shares the target's tokenizer. It keeps its own KV cache in step with the
committed sequence:

* each level of a tree is one draft forward over the nodes expanded at that level, with the same
  4D tree mask machinery as verification (nodes see the committed prefix, their ancestors and
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
from adaspec.decoding.sampling import SamplingConfig, logits_to_probs, sample_without_replacement
from adaspec.decoding.tree import DraftTree, DynamicTree, StaticTree, TreePolicy


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
        if isinstance(policy, StaticTree):
            tree, slots = self._static(policy, root, sampling, generator)
        elif isinstance(policy, DynamicTree):
            tree, slots = self._dynamic(policy, root, sampling, generator)
        else:
            raise TypeError(f"unsupported tree policy {policy!r}; use StaticTree or DynamicTree")
        self._slots = slots
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

    def _expand(self, nodes, tokens, depths, anc, fed, slots) -> torch.Tensor:
        """One draft forward over tree ``nodes``; returns their logits ``[k, V]``."""
        fed_all = torch.cat(fed + [nodes])
        allowed = anc[nodes][:, fed_all]
        pos = (self._tokens.shape[1] - 1 + depths[nodes])[None]
        slots[nodes] = torch.arange(fed_all.shape[0] - nodes.shape[0], fed_all.shape[0],
                                    device=nodes.device)  # fmt: skip
        fed.append(nodes)
        out = forward(self.model, tokens[nodes][None], self._cache, allowed, pos)
        return out.logits[0, :, : self.vocab_size]

    def _children(self, logits, width, sampling, generator):
        """Children of each row: (tokens [k, w], log q [k, w], valid [k, w], q [k, V] or None)."""
        if sampling.greedy:
            logp = torch.log_softmax(logits.float(), dim=-1)
            top = logp.topk(width, dim=-1)
            return top.indices, top.values, torch.ones_like(top.indices, dtype=torch.bool), None
        q = logits_to_probs(logits, sampling)
        toks, valid = sample_without_replacement(q, width, generator)
        return toks, torch.log(q.gather(-1, toks)), valid, q

    def _static(self, policy: StaticTree, root, sampling, generator):
        st = policy.tensors(root.device)
        buffers = st["buffers"]
        parents, anc, depths = st["parents"], buffers.ancestors, buffers.depths
        n = policy.num_nodes
        device = root.device
        tokens = torch.zeros(n, dtype=torch.long, device=device)
        logq = torch.zeros(n, device=device)
        valid = torch.ones(n, dtype=torch.bool, device=device)
        slots = torch.full((n,), -1, dtype=torch.long, device=device)
        q_index = torch.full((n + 1,), -1, dtype=torch.long, device=device)
        q_rows, fed, rows = [], [], 0
        for d, level in enumerate(st["levels"], start=1):
            expand = level["expand"]
            if d == 1:
                logits = root[None]
            else:
                logits = self._expand(expand, tokens, depths, anc, fed, slots)
            toks, lq, ok, q = self._children(logits, level["width"], sampling, generator)
            if q is not None:
                q_rows.append(q)
                q_index[expand + 1] = torch.arange(rows, rows + q.shape[0], device=device)
                rows += q.shape[0]
            nodes, pp, rk = level["nodes"], level["parent_pos"], level["ranks"]
            tokens[nodes], logq[nodes], valid[nodes] = toks[pp, rk], lq[pp, rk], ok[pp, rk]
        tree = DraftTree(
            tokens, parents, depths, logq.exp(),
            torch.cat(q_rows) if q_rows else None,
            q_index if q_rows else None,
            buffers,
        )  # fmt: skip
        if not sampling.greedy and not bool(valid.all()):
            keep = (~((~valid)[None, :] & anc).any(1)).nonzero().squeeze(1)
            return tree.select(keep), slots[keep]
        return tree, slots

    def _dynamic(self, policy: DynamicTree, root, sampling, generator):
        k, depth, device = policy.top_k, policy.depth, root.device
        k = min(k, self.vocab_size)
        cap = k + (depth - 1) * k * k
        tokens = torch.zeros(cap, dtype=torch.long, device=device)
        parents = torch.full((cap,), -1, dtype=torch.long, device=device)
        depths = torch.ones(cap, dtype=torch.long, device=device)
        logq = torch.zeros(cap, device=device)
        score = torch.zeros(cap, device=device)
        valid = torch.ones(cap, dtype=torch.bool, device=device)
        slots = torch.full((cap,), -1, dtype=torch.long, device=device)
        anc = torch.zeros(cap, cap, dtype=torch.bool, device=device)
        q_index = torch.full((cap + 1,), -1, dtype=torch.long, device=device)
        q_rows, fed, rows = [], [], 0
        count, frontier = 0, torch.full((1,), -1, dtype=torch.long, device=device)
        for d in range(1, depth + 1):
            if d == 1:
                logits = root[None]
            else:
                logits = self._expand(frontier, tokens, depths, anc, fed, slots)
            toks, lq, ok, q = self._children(logits, k, sampling, generator)
            if q is not None:
                q_rows.append(q)
                q_index[frontier + 1] = torch.arange(rows, rows + q.shape[0], device=device)
                rows += q.shape[0]
            new = torch.arange(count, count + toks.numel(), device=device)
            par = frontier.repeat_interleave(k)
            tokens[new], parents[new], depths[new] = toks.reshape(-1), par, d
            logq[new] = lq.reshape(-1)
            parent_score = torch.where(par >= 0, score[par.clamp(min=0)], 0.0)
            parent_ok = torch.where(par >= 0, valid[par.clamp(min=0)], True)
            valid[new] = ok.reshape(-1) & parent_ok
            score[new] = torch.where(valid[new], parent_score + logq[new], float("-inf"))
            anc[new] = torch.where((par >= 0)[:, None], anc[par.clamp(min=0)], False)
            anc[new, new] = True
            # Expand the best nodes next, in decreasing score (keeps sibling groups ordered).
            frontier = new[score[new].topk(min(k, new.numel())).indices]
            count += new.numel()
        if sampling.greedy:
            order = torch.sort(score[:count], descending=True, stable=True).indices
            keep = order[: policy.total_tokens].sort().values
        else:
            keep = valid[:count].nonzero().squeeze(1)[: policy.total_tokens]
        # Remap to the kept nodes (ancestor-closed in both cases).
        remap = torch.full((cap + 1,), -1, dtype=torch.long, device=device)
        remap[keep + 1] = torch.arange(keep.shape[0], device=device)
        tree = DraftTree(
            tokens[keep],
            remap[parents[keep] + 1],
            depths[keep],
            logq[keep].exp(),
            torch.cat(q_rows) if q_rows else None,
            torch.cat([q_index[:1], q_index[keep + 1]]) if q_rows else None,
        )
        return tree, slots[keep]
