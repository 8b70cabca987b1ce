"""The speculative decoding loop (batch size 1) and a plain autoregressive baseline.

One step of :class:`SpeculativeDecoder`:

1. ``drafter.propose`` drafts a tree continuing the committed sequence, whose last token (the
   root) the target has not run on yet;
2. the target runs once over ``[root] + nodes`` with the tree's 4D mask and tree position ids on
   top of its cache (:func:`adaspec.decoding.cache.forward`);
3. a verification rule (:mod:`adaspec.decoding.verify`) picks the accepted path and the target's
   bonus/correction token;
4. the target cache keeps the root and the accepted nodes by index (the rest is cropped), the
   new tokens are cut at EOS / ``max_new_tokens`` and handed to ``drafter.commit``.

Steps 1-4 (less the cut) are :func:`adaspec.decoding.step.speculative_step`, a function of its
inputs (as gpt-fast's ``speculative_decode``); :meth:`SpeculativeDecoder.generate` is the loop
around it. Timing is opt-in (``generate(..., timing=True)``): only then is the accelerator synchronized
around each phase to fill the per-step seconds; otherwise they are 0 and a step performs only the
host reads it needs (the verification result and the EOS check).

Batch size. Only one sequence at a time is supported: ``generate`` raises ``ValueError`` for
``input_ids`` with more than one row. Batches would need ragged acceptance (each row accepts a
different number of tokens per step), so per-row cache lengths and KV compaction, left-padded
prompts with per-row position ids and masks, and per-row stopping; none of which the stock
``DynamicCache`` tracks.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import torch

from adaspec._base.models import model_vocab_size
from adaspec.decoding.cache import causal_allowed, forward, model_device, new_cache
from adaspec.decoding.drafter import Drafter, TargetFeatures
from adaspec.decoding.sampling import GREEDY, SamplingConfig, logits_to_probs, sample
from adaspec.decoding.step import speculative_step
from adaspec.decoding.tree import TreePolicy, chain, tree_from_spec


@dataclasses.dataclass
class StepRecord:
    """What happened in one decoding step (one target forward).

    Attributes:
        proposed_depth: Length of the longest drafted path (gamma for a chain; 0 baseline).
        num_nodes: Draft tokens verified.
        accepted: Draft tokens the verifier accepted (before any EOS / length cut).
        committed: Tokens appended this step: accepted + the target's bonus/correction token,
            fewer when EOS or ``max_new_tokens`` cut the step.
        rejected_depth: Depth of the first rejected drafted position (``accepted + 1``), or None
            when the accepted path reached a leaf.
        stopped: ``"eos"``, ``"max_new_tokens"`` or None.
        draft_s: Seconds in the drafter (its forwards and tree building); 0 unless timed.
        verify_s: Seconds in the target forward; 0 unless timed.
        overhead_s: The rest of the step (verification rule, cache commit, bookkeeping); 0
            unless timed.
    """

    proposed_depth: int
    num_nodes: int
    accepted: int
    committed: int
    rejected_depth: int | None
    stopped: str | None
    draft_s: float = 0.0
    verify_s: float = 0.0
    overhead_s: float = 0.0

    @property
    def accepted_depths(self) -> list[int]:
        """Depths of the accepted draft tokens (``1 .. accepted``)."""
        return list(range(1, self.accepted + 1))


@dataclasses.dataclass
class DecodeResult:
    """Output of one generation.

    Attributes:
        sequences: LongTensor ``[1, L + N]``: prompt and generated tokens.
        new_tokens: LongTensor ``[1, N]``.
        steps: One :class:`StepRecord` per target forward after the prefill.
        stopped: Why generation ended (``"eos"``, ``"max_new_tokens"``).
        prefill_s: Seconds of the prompt forwards (target and drafter); 0 unless timed.
        total_s: Wall time of the whole call (the device is synchronized once, at the end).
    """

    sequences: torch.Tensor
    new_tokens: torch.Tensor
    steps: list[StepRecord]
    stopped: str | None
    prefill_s: float = 0.0
    total_s: float = 0.0

    @property
    def num_new_tokens(self) -> int:
        """Generated tokens ``N``."""
        return int(self.new_tokens.shape[1])

    @property
    def mean_accepted_length(self) -> float:
        """Tokens committed per target forward (tau)."""
        return self.num_new_tokens / max(len(self.steps), 1)


def _eos_tensor(eos_token_id, device) -> torch.Tensor | None:
    if eos_token_id is None:
        return None
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    return torch.tensor(ids, dtype=torch.long, device=device) if ids else None


def _check_input(input_ids: torch.Tensor, max_new_tokens: int) -> None:
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must have shape [1, L], got {tuple(input_ids.shape)}")
    if input_ids.shape[0] != 1:
        raise ValueError(
            f"speculative decoding supports batch size 1 only, got input_ids with "
            f"{input_ids.shape[0]} rows; loop over the prompts (see adaspec.decoding.decoder)"
        )
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


def _cut(new: torch.Tensor, eos: torch.Tensor | None, room: int) -> tuple[int, str | None]:
    """How many of ``new`` [k] to commit given EOS ids and ``room`` tokens left."""
    keep, stopped = new.shape[0], None
    if eos is not None:
        hits = torch.isin(new, eos).nonzero()
        if hits.numel():
            keep, stopped = int(hits[0, 0]) + 1, "eos"
    if keep >= room:
        if keep > room or stopped is None:
            stopped = "max_new_tokens"
        keep = room
    return keep, stopped


class _Clock:
    """Phase laps; synchronizes the accelerator at each lap only when timing was asked for."""

    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled
        self.cuda = device.type == "cuda"
        self.t = time.perf_counter()

    def lap(self) -> float:
        if not self.enabled:
            return 0.0
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        return dt

    def finish(self, start: float) -> float:
        """Wall seconds since ``start``, after the device has finished its queued work."""
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start


class SpeculativeDecoder:
    """Draft-then-verify generation with a target model and a :class:`Drafter`.

    Args:
        target: Hugging Face causal LM.
        drafter: Any :class:`~adaspec.decoding.drafter.Drafter`.
        tree: A tree policy, or a spec for :func:`~adaspec.decoding.tree.tree_from_spec`
            (``"chain:4"``, ``"static:mc_sim_7b_63"``, ``"dynamic:depth=5,top_k=8,total=60"``);
            a chain of 4 by default.
        sampling: Target sampling settings; greedy by default.
    """

    def __init__(
        self,
        target,
        drafter: Drafter,
        tree: TreePolicy | str | None = None,
        sampling: SamplingConfig | None = None,
    ) -> None:
        self.target = target
        self.drafter = drafter
        self.tree = tree_from_spec(tree) if tree is not None else chain(4)
        self.sampling = sampling or GREEDY
        self.vocab_size = min(model_vocab_size(target), int(drafter.vocab_size))

    def _target_forward(self, ids, cache, allowed, positions):
        layers = self.drafter.target_layers
        out = forward(self.target, ids, cache, allowed, positions, bool(layers))
        feats = TargetFeatures.from_output(out.hidden_states, layers) if layers else None
        return out.logits[0, :, : self.vocab_size], feats

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int = 128,
        eos_token_id: int | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        *,
        timing: bool = False,
    ) -> DecodeResult:
        """Generate up to ``max_new_tokens`` tokens after ``input_ids``.

        Args:
            input_ids: LongTensor ``[1, L]``.
            max_new_tokens: Exact cap on generated tokens.
            eos_token_id: Id or ids that end generation (included in the output); None: none.
            generator: Random stream for sampling (unused when greedy).
            timing: Fill the per-phase seconds of each step and ``prefill_s`` (synchronizes
                the accelerator around every phase, which slows decoding down a little).

        Returns:
            The :class:`DecodeResult`.

        Raises:
            ValueError: For batch size > 1, empty prompts or ``max_new_tokens < 1``.
        """
        _check_input(input_ids, max_new_tokens)
        device = model_device(self.target)
        input_ids = input_ids.to(device)
        eos = _eos_tensor(eos_token_id, device)
        start = time.perf_counter()
        clock = _Clock(device, timing)
        cache = new_cache()
        length = input_ids.shape[1]
        feats = None
        if length > 1:
            pos = torch.arange(length - 1, device=device)[None]
            allowed = causal_allowed(length - 1, device)
            _, feats = self._target_forward(input_ids[:, :-1], cache, allowed, pos)
        self.drafter.prefill(input_ids, feats)
        prefill_s = clock.lap()

        root = input_ids[:, -1:]
        pieces: list[torch.Tensor] = []
        steps: list[StepRecord] = []
        produced, stopped = 0, None
        while stopped is None:
            out = speculative_step(
                self._target_forward, self.drafter, self.tree, self.sampling, cache, root,
                length - 1 + produced, generator, clock.lap,
            )  # fmt: skip
            new = out.new_tokens
            keep, stopped = _cut(new, eos, max_new_tokens - produced)
            pieces.append(new[:keep])
            produced += keep
            overhead = out.overhead_s + clock.lap()
            draft_s = out.draft_s
            if stopped is None:
                feats = out.features
                step_feats = feats.select(out.keep_slots.to(device)) if feats is not None else None
                self.drafter.commit(new[None], out.verdict.accepted_nodes, step_feats)
                draft_s += clock.lap()
            root = new[None, -1:]
            steps.append(
                StepRecord(
                    proposed_depth=out.tree.get_buffers().max_depth,
                    num_nodes=out.tree.num_nodes,
                    accepted=out.verdict.num_accepted,
                    committed=keep,
                    rejected_depth=out.verdict.rejected_depth,
                    stopped=stopped,
                    draft_s=draft_s,
                    verify_s=out.verify_s,
                    overhead_s=overhead,
                )
            )
        new_tokens = torch.cat(pieces)[None]
        return DecodeResult(
            sequences=torch.cat([input_ids, new_tokens], dim=1),
            new_tokens=new_tokens,
            steps=steps,
            stopped=stopped,
            prefill_s=prefill_s,
            total_s=clock.finish(start),
        )


@torch.no_grad()
def autoregressive_generate(
    target,
    input_ids: torch.Tensor,
    max_new_tokens: int = 128,
    eos_token_id: int | Sequence[int] | None = None,
    sampling: SamplingConfig | None = None,
    generator: torch.Generator | None = None,
    *,
    timing: bool = False,
) -> DecodeResult:
    """Token-by-token generation with the same cache machinery (a baseline for tests/bench).

    Args:
        target: Hugging Face causal LM.
        input_ids: LongTensor ``[1, L]``.
        max_new_tokens: Exact cap on generated tokens.
        eos_token_id: Id or ids that end generation; None: none.
        sampling: Sampling settings; greedy by default.
        generator: Random stream for sampling.
        timing: Fill the per-step seconds (synchronizes the accelerator every step).

    Returns:
        A :class:`DecodeResult` with one step (committing one token) per target forward.
    """
    _check_input(input_ids, max_new_tokens)
    sampling = sampling or GREEDY
    device = model_device(target)
    input_ids = input_ids.to(device)
    eos = _eos_tensor(eos_token_id, device)
    start = time.perf_counter()
    clock = _Clock(device, timing)
    cache = new_cache()
    ids, past = input_ids, 0
    pieces, steps, stopped = [], [], None
    prefill_s = 0.0
    while stopped is None:
        positions = torch.arange(past, past + ids.shape[1], device=device)[None]
        out = forward(target, ids, cache, causal_allowed(ids.shape[1], device), positions)
        fwd = clock.lap()
        logits = out.logits[0, -1]
        if sampling.greedy:
            token = logits.argmax(-1)
        else:
            token = sample(logits_to_probs(logits, sampling), generator)
        keep, stopped = _cut(token.reshape(1), eos, max_new_tokens - len(pieces))
        pieces.append(token.reshape(1))
        past += ids.shape[1]
        ids = token.reshape(1, 1)
        overhead = clock.lap()
        if not steps:
            prefill_s = fwd
        steps.append(StepRecord(0, 0, 0, keep, None, stopped, 0.0, fwd, overhead))
    new_tokens = torch.cat(pieces)[None]
    return DecodeResult(
        torch.cat([input_ids, new_tokens], dim=1),
        new_tokens,
        steps,
        stopped,
        prefill_s,
        clock.finish(start),
    )
