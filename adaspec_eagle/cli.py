"""The ``adaspec-eagle`` command line: dump features, train heads, export and check them, bench.

All argument parsing of the package lives here; each command maps onto a config dataclass and a
function that can be called from Python as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from adaspec.cli import add_set_option, command_parser, dispatch

DTYPES = ("float32", "bfloat16", "float16")
EXAMPLE = "k=0.5"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``adaspec-eagle`` command."""
    parser, sub = command_parser(
        "adaspec-eagle",
        "EAGLE draft heads trained with AdaSPEC, their export, and the tree-decoder benchmark.",
    )

    dump = sub.add_parser(
        "dump-features", help="dump the target's hidden states to safetensors shards"
    )
    dump.add_argument("config", help="EAGLE training YAML config (configs/eagle/...)")
    add_set_option(dump, EXAMPLE)

    train = sub.add_parser("train", help="train the reference head, then the AdaSPEC head")
    train.add_argument("config", help="EAGLE training YAML config (configs/eagle/...)")
    add_set_option(train, EXAMPLE)

    export = sub.add_parser(
        "export", help="export a trained head for SGLang/vLLM (EAGLE-3) or EAGLE (EAGLE-1)"
    )
    export.add_argument(
        "head",
        help="folder of a trained head (e.g. runs/eagle/adaspec/final), or an exported folder "
        "(re-exported, e.g. to cast it)",
    )
    export.add_argument("out", help="output folder")
    export.add_argument("--dtype", choices=DTYPES, help="cast the weights (default: as trained)")

    check = sub.add_parser(
        "check-export",
        help="run an EAGLE-3 export as SGLang/vLLM would, beside the project's head: logits and "
        "tau in the tree decoder must match",
    )
    check.add_argument("export", help="exported EAGLE-3 folder")
    check.add_argument("--target", required=True, help="target model folder (Hugging Face)")
    check.add_argument("--head", help="the trained native head folder (default: the export)")
    check.add_argument("--engine", choices=("sglang", "vllm"), default="sglang")
    check.add_argument("--prompts", type=int, default=4, help="number of random prompts")
    check.add_argument("--prompt-length", type=int, default=8)
    check.add_argument("--max-new-tokens", type=int, default=32)
    check.add_argument("--tree", default="static:small_10", help="tree policy spec")
    check.add_argument("--atol", type=float, default=1e-4, help="largest logit difference")

    demo = sub.add_parser(
        "demo",
        help="prepare SmolLM2-135M-Instruct, train a plain and an AdaSPEC EAGLE-3 head on its own "
        "answers, and time both against vanilla decoding on MT-bench prompts",
    )
    demo.add_argument("config", nargs="?", help="optional demo YAML config (DemoConfig keys)")
    add_set_option(demo, "examples=64")

    bench = sub.add_parser("bench", help="speed of vanilla, assisted, chain and tree decoding")
    bench.add_argument("config", help="benchmark YAML config (configs/bench/...)")
    add_set_option(bench, "num_prompts=4")
    return parser


def _run_dump(args: argparse.Namespace) -> int:
    from adaspec_eagle.train import EagleTrainConfig, dump_features

    dump_features(EagleTrainConfig.from_yaml(args.config, overrides=args.overrides))
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from adaspec_eagle.train import EagleTrainConfig, run_train

    result = run_train(EagleTrainConfig.from_yaml(args.config, overrides=args.overrides))
    print(json.dumps({"heads": result.heads, "metrics": result.metrics}, indent=2, default=str))
    return 0


def _run_export(args: argparse.Namespace) -> int:
    import torch

    from adaspec_eagle.export import export_head, load_any

    head = load_any(args.head)
    kwargs = {"dtype": getattr(torch, args.dtype)} if args.dtype else {}
    path = export_head(head, args.out, **kwargs)
    print(f"exported {type(head).__name__} to {path}")
    return 0


def _run_check_export(args: argparse.Namespace) -> int:
    from transformers import AutoModelForCausalLM

    from adaspec_eagle.checkpoint import load_head
    from adaspec_eagle.serving_check import check_export

    target = AutoModelForCausalLM.from_pretrained(args.target)
    head = load_head(args.head) if args.head else None
    report = check_export(
        args.export,
        target,
        head=head,
        engine=args.engine,
        num_prompts=args.prompts,
        prompt_length=args.prompt_length,
        max_new_tokens=args.max_new_tokens,
        tree=args.tree,
        atol=args.atol,
    )
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1


def _run_bench(args: argparse.Namespace) -> int:
    from adaspec_eagle.bench import BenchConfig, run_benchmark

    result = run_benchmark(BenchConfig.from_yaml(args.config, overrides=args.overrides))
    if isinstance(result, dict) and result.get("markdown"):
        print(result["markdown"])
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from adaspec.config import apply_override
    from adaspec_eagle.demo import DemoConfig, run_demo

    if args.config:
        config = DemoConfig.from_yaml(args.config, overrides=args.overrides)
    else:
        data: dict = {}
        for item in args.overrides or []:
            apply_override(data, item)
        config = DemoConfig.from_dict(data)
    result = run_demo(config)
    print(result["markdown"])
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items())
    print(f"wall time: {steps}; results in {config.workdir}/demo.json")
    return 0


COMMANDS = {
    "dump-features": _run_dump,
    "train": _run_train,
    "export": _run_export,
    "check-export": _run_check_export,
    "bench": _run_bench,
    "demo": _run_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``adaspec-eagle`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    return dispatch("adaspec-eagle", build_parser(), COMMANDS, argv)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
