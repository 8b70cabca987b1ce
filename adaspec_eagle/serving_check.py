"""The serving check: an export run as the engines run it, beside the project's own head.

:func:`check_export` loads an EAGLE-3 export with :class:`adaspec_eagle.serving_ref.ServingEagle3`
(an independent re-implementation of SGLang's/vLLM's draft forward, reading only the exported
files) and compares it with the project's head on the same target features:

* the loader's problems (tensors the engine skips, parameters nothing fills, default aux layers);
* draft logits over a few sequences (max abs difference, argmax agreement);
* τ (mean accepted tokens per round) and the accepted count of every round in the project's tree
  decoder, once with the project's head and once with the re-implementation.

This is what catches a head that accepts 98% in training and 10% in the engine. The command line
is ``adaspec-eagle check-export EXPORT_DIR --target TARGET_DIR [--head NATIVE_HEAD_DIR]``.
"""

from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from adaspec.decoding import SpeculativeDecoder
from adaspec_eagle.drafter import EagleDrafter
from adaspec_eagle.heads import Eagle3Head
from adaspec_eagle.serving_ref import ServingEagle3


class _ServingHead(Eagle3Head):
    """An :class:`Eagle3Head`-typed facade over :class:`ServingEagle3`.

    :class:`~adaspec_eagle.drafter.EagleDrafter` dispatches on the head type and drives it through
    the head's public methods (``fuse``, ``step``, ``logits``, ``draft_logits_to_target``); this
    facade answers them with the re-implementation, so the decoder's own tree logic runs
    unchanged. None of :class:`Eagle3Head`'s layers are built.
    """

    def __init__(self, ref: ServingEagle3) -> None:
        nn.Module.__init__(self)
        self.ref = ref
        self.aux_layers = list(ref.aux_layer_ids)
        self.draft_vocab_size = ref.draft_vocab_size
        self.attention_bias = False
        self.config = SimpleNamespace(hidden_size=ref.hidden_size, vocab_size=ref.vocab_size)
        self.fc = SimpleNamespace(weight=ref.fc_weight)  # dtype / device of the head

    def attach(self, target: nn.Module) -> _ServingHead:  # embeddings were given at load time
        return self

    def fuse(self, aux_hidden: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.ref.fuse(aux_hidden)

    def step(self, hidden_states: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # noqa: D102
        return self.ref.step(hidden_states, **kwargs)

    def logits(self, hidden_states: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.ref.logits(hidden_states)

    def draft_logits_to_target(self, draft_logits: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.ref.target_logits(draft_logits)

    def to_target_ids(self, draft_ids: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return draft_ids + self.ref.d2t[draft_ids]


def serving_head(
    directory: str | os.PathLike, target: nn.Module, engine: str = "sglang"
) -> Eagle3Head:
    """The export as ``engine`` would serve it, usable wherever the project takes an EAGLE-3 head."""
    ref = ServingEagle3.load(directory, target.get_input_embeddings().weight, engine=engine)
    return _ServingHead(ref)


@dataclasses.dataclass
class ServingCheckReport:
    """Result of :func:`check_export` (see the module docstring)."""

    engine: str
    problems: list[str]
    max_abs_logit_diff: float
    argmax_agreement: float
    tau_project: float
    tau_serving: float
    accepted_project: list[int]
    accepted_serving: list[int]
    atol: float

    @property
    def ok(self) -> bool:
        """No loader problem, logits within ``atol``, identical rounds in the tree decoder."""
        return (
            not self.problems
            and self.max_abs_logit_diff <= self.atol
            and self.accepted_project == self.accepted_serving
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, ``ok`` included."""
        return {"ok": self.ok, **dataclasses.asdict(self)}


def _logit_gap(head, ref_head, target, ids) -> tuple[float, float]:
    with torch.no_grad():
        hs = target(ids, output_hidden_states=True).hidden_states
        outs = []
        for h in (head, ref_head):
            aux = torch.cat([hs[i] for i in h.aux_layers], -1)
            lg = h.draft_logits_to_target(h.logits(h.step(h.fuse(aux), input_ids=ids)).float())
            outs.append(lg)
    a, b = outs
    both = torch.isfinite(a) & torch.isfinite(b)
    if not torch.equal(torch.isfinite(a), torch.isfinite(b)):
        return float("inf"), float((a.argmax(-1) == b.argmax(-1)).float().mean())
    diff = float((a[both] - b[both]).abs().max()) if both.any() else 0.0
    return diff, float((a.argmax(-1) == b.argmax(-1)).float().mean())


def _rounds(head, target, prompts, max_new_tokens, tree) -> tuple[list[int], float]:
    """Accepted tokens of every round, and τ (new tokens per target forward, all prompts)."""
    accepted, new = [], 0
    for prompt in prompts:
        dec = SpeculativeDecoder(target, EagleDrafter(head, target), tree=tree)
        res = dec.generate(prompt, max_new_tokens=max_new_tokens)
        accepted += [s.accepted for s in res.steps]
        new += res.num_new_tokens
    return accepted, new / max(len(accepted), 1)


def check_export(
    directory: str | os.PathLike,
    target: nn.Module,
    head: Eagle3Head | None = None,
    engine: str = "sglang",
    prompts: list[torch.Tensor] | None = None,
    num_prompts: int = 4,
    prompt_length: int = 8,
    max_new_tokens: int = 32,
    tree: str = "static:small_10",
    atol: float = 1e-4,
    seed: int = 0,
) -> ServingCheckReport:
    """Run an EAGLE-3 export as ``engine`` would, beside the project's head; see the module doc.

    Args:
        directory: The exported folder.
        target: The target model (its features drive both heads; its embedding is shared).
        head: The project's head (e.g. the trained native checkpoint); the export reloaded with
            :func:`adaspec_eagle.export.load_export` when None.
        engine: ``"sglang"`` or ``"vllm"`` (what the loader builds; the forward is the same).
        prompts: Prompt ids ``[1, L]`` each; ``num_prompts`` random ones of ``prompt_length``
            tokens when None.
        num_prompts: Number of random prompts.
        prompt_length: Length of the random prompts.
        max_new_tokens: Tokens generated per prompt in the tree decoder.
        tree: Tree policy spec (see :func:`adaspec.decoding.tree_from_spec`).
        atol: Largest logit difference accepted (raise it for bfloat16 exports).
        seed: Seed of the random prompts.

    """
    from adaspec_eagle.export import load_export

    target.eval()
    if head is None:
        head = load_export(directory)
    head = head.eval().attach(target)
    ref_head = serving_head(directory, target, engine)
    problems = list(ref_head.ref.problems)
    if list(head.aux_layers) != list(ref_head.aux_layers):
        problems.append(
            f"{engine} feeds target layers {ref_head.aux_layers}, the head was trained on "
            f"{list(head.aux_layers)}"
        )
    vocab = head.config.vocab_size if hasattr(head.config, "vocab_size") else None
    vocab = vocab or target.get_input_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(seed)
    if prompts is None:
        prompts = [
            torch.randint(3, vocab, (1, prompt_length), generator=g) for _ in range(num_prompts)
        ]
    diff, agree = float("inf"), 0.0
    if list(head.aux_layers) == list(ref_head.aux_layers):
        diff, agree = _logit_gap(head, ref_head, target, torch.cat(prompts, 1))
    mine, tau_mine = _rounds(head, target, prompts, max_new_tokens, tree)
    theirs, tau_theirs = _rounds(ref_head, target, prompts, max_new_tokens, tree)
    return ServingCheckReport(
        engine, problems, diff, agree, tau_mine, tau_theirs, mine, theirs, atol
    )
