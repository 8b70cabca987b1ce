"""``adaspec-eagle bench``: decoding speed of a target with each drafter and tree, side by side.

For every prompt the methods run in a rotated order (prompt i starts with method i mod M), after
``warmup`` untimed prompts, so drift of the machine is spread over all methods. Per method it
reports tokens/s, speedup over vanilla ``generate`` (ratio of tokens/s measured in the same run),
the mean accepted length τ (tokens committed per target forward), acceptance by depth, target
forwards per token, the decoder's own time per step (everything outside the model forwards), and
whether the greedy output equals vanilla's. Output: ``bench.json``, ``bench.md``, ``bench.png``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from adaspec.data import Example, build_prompt_ids, get_formatter, load_records
from adaspec.decoding import DraftModelDrafter, SpeculativeDecoder, acceptance_counts
from adaspec.eval.report import markdown_table, write_json
from adaspec.modeling import load_model, load_tokenizer
from adaspec_eagle.bench_config import BenchConfig, BenchMethod

logger = logging.getLogger(__name__)


def load_prompts(config: BenchConfig) -> list[Example]:
    """The first ``num_prompts`` prompts of the prompt file (MT-bench turns, dataset, or prompt)."""
    records = load_records(config.prompts)
    out = []
    for rec in records[: config.num_prompts]:
        if "turns" in rec:
            out.append(Example(prompt=str(rec["turns"][0]) + "\n", response=""))
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
        raise ValueError(f"{config.prompts} holds no prompt")
    return out


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

    def draft(self, path: str) -> Any:
        if path not in self._drafts:
            self._drafts[path] = load_model(path, dtype=self.config.dtype).to(self.device).eval()
        return self._drafts[path]

    def decoder(self, method: BenchMethod) -> SpeculativeDecoder:
        if method.name not in self._decoders:
            if method.drafter == "eagle":
                from adaspec_eagle.checkpoint import load_head
                from adaspec_eagle.drafter import EagleDrafter

                head = load_head(method.head, target=self.target).to(self.device)
                drafter = EagleDrafter(head, self.target)
            else:
                drafter = DraftModelDrafter(self.draft(method.draft or self.config.draft))
            self._decoders[method.name] = SpeculativeDecoder(self.target, drafter, tree=method.tree)
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
                ids, max_new_tokens=n, eos_token_id=self.eos, timing=True
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
        if method.kind == "assisted":
            kwargs["assistant_model"] = self.draft(method.draft or self.config.draft)
        out = self.target.generate(ids, **kwargs)
        self._sync()
        seconds = time.perf_counter() - start
        tokens = out[0, ids.shape[1] :].tolist()
        forwards = len(tokens) if method.kind == "vanilla" else None
        return {"tokens": tokens, "seconds": seconds, "forwards": forwards, "steps": None}


def _summarize(
    method: BenchMethod, runs: list[dict[str, Any]], reference: list[list[int]] | None
) -> dict:
    tokens = sum(len(r["tokens"]) for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    row: dict[str, Any] = {
        "method": method.name,
        "kind": method.kind,
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
    steps = [s for r in runs if r["steps"] for s in r["steps"]]
    if steps:
        counts = acceptance_counts(steps)
        row["tau"] = tokens / len(steps)
        row["alpha"] = counts["alpha"]
        row["acceptance_by_depth"] = counts["alpha_by_depth"]
        row["draft_ms_per_step"] = 1e3 * sum(s.draft_s for s in steps) / len(steps)
        row["verify_ms_per_step"] = 1e3 * sum(s.verify_s for s in steps) / len(steps)
        row["overhead_ms_per_step"] = 1e3 * sum(s.overhead_s for s in steps) / len(steps)
    elif method.kind == "vanilla":
        row["tau"] = 1.0
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
    "tau": "τ (tokens / target forward)",
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
    ids = [torch.tensor([build_prompt_ids(p, tokenizer)], device=device) for p in prompts]
    for prompt in ids[: config.warmup]:
        for method in methods:
            runner.run(method, prompt)
    runs: dict[str, list[dict[str, Any]]] = {m.name: [] for m in methods}
    for i, prompt in enumerate(tqdm(ids, desc="bench prompts")):
        order = methods[i % len(methods) :] + methods[: i % len(methods)]
        for method in order:
            runs[method.name].append(runner.run(method, prompt))
    vanilla = next((m.name for m in methods if m.kind == "vanilla"), None)
    reference = [r["tokens"] for r in runs[vanilla]] if vanilla else None
    rows = [_summarize(m, runs[m.name], reference) for m in methods]
    base = next((r["tokens_per_s"] for r in rows if r["method"] == vanilla), None)
    for row in rows:
        tps = row.get("tokens_per_s")
        row["speedup"] = tps / base if base and tps else None
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
        "methods": rows,
    }
    table = markdown_table(rows, COLUMNS, digits=3)
    results["markdown"] = table
    write_json(results, out / "bench.json")
    (out / "bench.md").write_text(table)
    _plot(rows, out / "bench.png")
    return results
