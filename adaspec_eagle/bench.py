"""``adaspec-eagle bench``: decoding speed of a target with each drafter and tree, side by side.

For every prompt the methods run in a rotated order (prompt i starts with method i mod M), after
``warmup`` untimed prompts, so drift of the machine is spread over all methods. Per method it
reports tokens/s, speedup over vanilla ``generate`` (ratio of tokens/s measured in the same run),
the mean accepted length τ (tokens committed per target forward), acceptance by depth, target
forwards per token, the draft and verify times per step and the decoder's own time (everything
outside the model forwards), the τ-bound ``τ · t_vanilla / (t_draft + t_verify)`` (the speedup
the step's model time allows), and whether the greedy output equals vanilla's. Output: ``bench.json``, ``bench.md``, ``bench.png``.

τ is given pooled (all new tokens / all target forwards, the prefill's included for transformers'
``generate`` rows, counted by a forward hook on the target) and per request (the mean over prompts
of each prompt's ratio). Prompts go through the tokenizer's chat template when it has one
(``chat_template: auto``; MT-bench first turns become one user turn); ``bench.json`` records
whether it was used. Rows: vanilla ``generate`` (in the config's dtype, and in another dtype such as
bfloat16 as its own row), assisted generation with a standalone draft, prompt-lookup decoding, and
the project's speculative decoder with a draft model or an EAGLE head.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from adaspec.data import (
    Example,
    build_prompt_ids,
    get_formatter,
    load_records,
    use_chat_template,
)
from adaspec.decoding import (
    DraftModelDrafter,
    SamplingConfig,
    SpeculativeDecoder,
    acceptance_counts,
    transpose_linears,
)
from adaspec.eval.report import markdown_table, write_json
from adaspec.modeling import load_model, load_tokenizer
from adaspec.provenance import describe_environment, environment
from adaspec_eagle.bench_config import BenchConfig, BenchMethod

logger = logging.getLogger(__name__)


def _first_turn(rec: dict[str, Any], path: str) -> str:
    """The first turn of an MT-bench record; a clear error for anything but a list of text."""
    turns = rec["turns"]
    where = f"{path} line {rec.get('_line', '?')}"
    if not isinstance(turns, list) or not turns:
        raise ValueError(
            f"{where}: field 'turns' must be a non-empty list of strings (the MT-bench "
            f"question.jsonl layout), got {type(turns).__name__} {str(turns)[:60]!r}"
        )
    if not isinstance(turns[0], str) or not turns[0].strip():
        raise ValueError(
            f"{where}: field 'turns' must start with a non-empty string (the first user turn), "
            f"got {type(turns[0]).__name__} {str(turns[0])[:60]!r}"
        )
    return turns[0]


def load_prompts(config: BenchConfig) -> list[Example]:
    """``num_prompts`` prompts of the prompt file (MT-bench turns, dataset records, or prompts).

    Records ``first_record``, ``first_record + every``, ... are taken, in file order.

    Raises:
        ValueError: Naming file, line and field for an MT-bench record whose ``turns`` is not a
            non-empty list of strings, or a record with no usable field.

    """
    records = load_records(config.prompts)
    out = []
    picked = records[config.first_record :: config.every][: config.num_prompts]
    for rec in picked:
        if "turns" in rec:
            out.append(Example(prompt=_first_turn(rec, config.prompts) + "\n", response=""))
        elif config.task:
            out.append(get_formatter(config.task)(rec))
        elif "prompt" in rec:
            out.append(Example(prompt=str(rec["prompt"]), response=""))
        else:
            raise ValueError(
                f"{config.prompts}: record {rec.get('_line', '?')} has neither 'turns' nor 'prompt' "
                f"(fields: {sorted(k for k in rec if not k.startswith('_'))}); set task: to format it"
            )
    if not out:
        raise ValueError(
            f"{config.prompts} holds no prompt from record {config.first_record} on "
            f"({len(records)} records): lower first_record"
        )
    return out


def _with_linear(model: Any, linear: str) -> Any:
    """``model`` with its linear layers stored transposed when ``linear`` is ``transposed``."""
    if linear == "transposed":
        transpose_linears(model)
    return model


class _Runner:
    """Runs one method on one prompt and returns its measurements."""

    def __init__(
        self, config: BenchConfig, target: Any, tokenizer: Any, device: torch.device
    ) -> None:
        self.config = config
        self.target = target
        self.tokenizer = tokenizer
        self.device = device
        self.eos = tokenizer.eos_token_id
        self._drafts: dict[str, Any] = {}
        self._decoders: dict[str, SpeculativeDecoder] = {}
        self._targets: dict[tuple[str, str], Any] = {(config.dtype, "stock"): target}
        self.sampling = SamplingConfig(temperature=config.temperature)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)

    def target_in(self, dtype: str | None, linear: str = "stock") -> Any:
        """The target in ``dtype`` with ``linear`` layers (loaded once each; None: the config's)."""
        key = (dtype or self.config.dtype, linear)
        if key not in self._targets:
            model = load_model(self.config.target, dtype=key[0]).to(self.device).eval()
            self._targets[key] = _with_linear(model, linear)
        return self._targets[key]

    def draft(self, path: str, linear: str = "stock") -> Any:
        if (path, linear) not in self._drafts:
            model = load_model(path, dtype=self.config.dtype).to(self.device).eval()
            self._drafts[(path, linear)] = _with_linear(model, linear)
        return self._drafts[(path, linear)]

    def decoder(self, method: BenchMethod) -> SpeculativeDecoder:
        if method.name not in self._decoders:
            target = self.target_in(None, method.linear)
            if method.drafter == "eagle":
                from adaspec_eagle.checkpoint import load_head
                from adaspec_eagle.drafter import EagleDrafter

                head = load_head(method.head, target=target).to(self.device)
                drafter = EagleDrafter(_with_linear(head, method.linear), target)
            else:
                draft = self.draft(method.draft or self.config.draft, method.linear)
                drafter = DraftModelDrafter(draft)
            self._decoders[method.name] = SpeculativeDecoder(
                target, drafter, tree=method.tree, sampling=self.sampling
            )
        return self._decoders[method.name]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    @torch.no_grad()
    def run(self, method: BenchMethod, ids: torch.Tensor) -> dict[str, Any]:
        n = self.config.max_new_tokens
        mask = torch.ones_like(ids)
        self._sync()
        start = time.perf_counter()
        if method.kind == "speculative":
            result = self.decoder(method).generate(
                ids, max_new_tokens=n, eos_token_id=self.eos, generator=self.generator, timing=True
            )
            self._sync()
            seconds = time.perf_counter() - start
            return {
                "tokens": result.new_tokens[0].tolist(),
                "seconds": seconds,
                "forwards": len(result.steps),
                "steps": result.steps,
            }
        kwargs: dict[str, Any] = dict(
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=n,
            eos_token_id=self.eos,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if not self.sampling.greedy:  # plain temperature sampling: the model's top-k/p off
            kwargs.update(do_sample=True, temperature=self.sampling.temperature, top_k=0, top_p=1.0)
        if method.kind == "assisted":
            kwargs["assistant_model"] = self.draft(method.draft or self.config.draft, method.linear)
        elif method.kind == "prompt_lookup":
            kwargs["prompt_lookup_num_tokens"] = method.prompt_lookup_num_tokens
            if method.max_matching_ngram_size is not None:
                kwargs["max_matching_ngram_size"] = method.max_matching_ngram_size
        model = self.target_in(method.dtype, method.linear)
        calls = [0]

        def count(*_: Any) -> None:
            calls[0] += 1

        handle = model.register_forward_pre_hook(count)
        try:
            out = model.generate(ids, **kwargs)
        finally:
            handle.remove()
        self._sync()
        seconds = time.perf_counter() - start
        tokens = out[0, ids.shape[1] :].tolist()
        return {"tokens": tokens, "seconds": seconds, "forwards": calls[0], "steps": None}


def _summarize(
    method: BenchMethod, runs: list[dict[str, Any]], reference: list[list[int]] | None
) -> dict:
    tokens = sum(len(r["tokens"]) for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    row: dict[str, Any] = {
        "method": method.name,
        "kind": method.kind,
        "dtype": method.dtype,
        "linear": method.linear,
        "drafter": method.drafter if method.kind == "speculative" else None,
        "tree": method.tree if method.kind == "speculative" else None,
        "new_tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds else None,
    }
    if reference is not None:
        row["identical_to_vanilla"] = sum(r["tokens"] == ref for r, ref in zip(runs, reference))
    forwards = [r["forwards"] for r in runs]
    if all(f is not None for f in forwards) and tokens:
        row["target_forwards_per_token"] = sum(forwards) / tokens
        row["tau"] = tokens / sum(forwards)  # pooled: all tokens / all target forwards
        row["tau_per_request"] = sum(
            len(r["tokens"]) / r["forwards"] for r in runs if r["forwards"]
        ) / max(sum(1 for r in runs if r["forwards"]), 1)
    steps = [s for r in runs if r["steps"] for s in r["steps"]]
    if steps:
        counts = acceptance_counts(steps)
        row["alpha"] = counts["alpha"]
        row["acceptance_by_depth"] = counts["alpha_by_depth"]
        row["draft_ms_per_step"] = 1e3 * sum(s.draft_s for s in steps) / len(steps)
        row["verify_ms_per_step"] = 1e3 * sum(s.verify_s for s in steps) / len(steps)
        row["overhead_ms_per_step"] = 1e3 * sum(s.overhead_s for s in steps) / len(steps)
    return row


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["method"] for r in rows]
    ax1.bar(names, [r.get("speedup") or 0.0 for r in rows], color="tab:blue")
    ax1.axhline(1.0, color="gray", lw=0.8)
    ax1.set_ylabel("speedup over vanilla generate")
    ax1.tick_params(axis="x", rotation=30)
    for r in rows:
        depths = r.get("acceptance_by_depth")
        if depths:
            ax2.plot(range(1, len(depths) + 1), depths, marker="o", label=r["method"])
    ax2.set_xlabel("depth")
    ax2.set_ylabel("acceptance rate at depth")
    ax2.set_ylim(0, 1.05)
    if ax2.lines:
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


COLUMNS = {
    "method": "method",
    "tokens_per_s": "tokens/s",
    "speedup": "speedup",
    "speedup_bound": "τ-bound (τ · t_vanilla / (t_draft + t_verify))",
    "tau": "τ pooled (tokens / target forward)",
    "tau_per_request": "τ per request (mean over prompts)",
    "alpha": "α",
    "target_forwards_per_token": "target forwards / token",
    "draft_ms_per_step": "draft ms / step",
    "verify_ms_per_step": "verify ms / step",
    "overhead_ms_per_step": "decoder ms / step",
    "identical_to_vanilla": "output = vanilla",
}


def run_benchmark(config: BenchConfig) -> dict[str, Any]:
    """Run the benchmark described by ``config``; returns the results (``markdown`` included)."""
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu")
        if config.device == "auto"
        else config.device
    )
    methods = config.parsed_methods()
    tokenizer = load_tokenizer(config.tokenizer or config.target)
    target = load_model(config.target, dtype=config.dtype).to(device).eval()
    runner = _Runner(config, target, tokenizer, device)
    prompts = load_prompts(config)
    chat = use_chat_template(tokenizer, config.chat_template)
    ids = [torch.tensor([build_prompt_ids(p, tokenizer, chat)], device=device) for p in prompts]
    for prompt in ids[: config.warmup]:
        for method in methods:
            runner.run(method, prompt)
    runs: dict[str, list[dict[str, Any]]] = {m.name: [] for m in methods}
    for i, prompt in enumerate(tqdm(ids, desc="bench prompts")):
        order = methods[i % len(methods) :] + methods[: i % len(methods)]
        for method in order:
            runs[method.name].append(runner.run(method, prompt))
    vanilla = next(
        (
            m.name
            for m in methods
            if m.kind == "vanilla" and m.dtype in (None, config.dtype) and m.linear == "stock"
        ),
        None,
    )
    # Sampled outputs differ from vanilla's by chance: compared only under greedy decoding.
    reference = [r["tokens"] for r in runs[vanilla]] if vanilla and not config.temperature else None
    rows = [_summarize(m, runs[m.name], reference) for m in methods]
    base = next((r["tokens_per_s"] for r in rows if r["method"] == vanilla), None)
    for row in rows:
        tps = row.get("tokens_per_s")
        row["speedup"] = tps / base if base and tps else None
        # The τ-bound: τ target tokens per step that costs draft + verify, against vanilla's
        # time per token; the decoder's own time is what separates it from the speedup.
        step_ms = (row.get("draft_ms_per_step") or 0.0) + (row.get("verify_ms_per_step") or 0.0)
        if base and row.get("tau") and step_ms > 0:
            row["speedup_bound"] = row["tau"] * (1e3 / base) / step_ms
        for key, value in list(row.items()):
            if isinstance(value, float) and not math.isfinite(value):
                row[key] = None
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "config": config.to_dict(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "num_prompts": len(ids),
        "chat_template": chat,
        "temperature": config.temperature,
        "prompt_tokens": sum(int(x.shape[1]) for x in ids),
        "methods": rows,
    }
    results["environment"] = environment()
    table = markdown_table(rows, COLUMNS, digits=3)
    results["markdown"] = table
    write_json(results, out / "bench.json")
    (out / "bench.md").write_text(
        table + "\n" + describe_environment(results["environment"]) + "\n"
    )
    _plot(rows, out / "bench.png")
    return results
