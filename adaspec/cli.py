"""The ``adaspec`` command line: train stages, run the pipeline, the offline demo, and evaluation.

All argument parsing of the package lives here; every command maps onto a config dataclass and a
``run_...`` function that can be called from Python as well.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from adaspec.config import ConfigError, describe
from adaspec.pipeline_guard import OutputDirInUse

STAGE_ALIASES = {"target": "target", "ref": "reference", "reference": "reference", "draft": "draft"}


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set draft.loss.k=0.5 (repeatable)",
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="start stages from scratch instead of resuming"
    )
    parser.add_argument(
        "--retrain-changed",
        action="store_true",
        help="retrain from scratch the trained stages whose settings differ from this config "
        "(default: refuse to run, listing the changed settings; see docs/resume.md)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``adaspec`` command."""
    parser = argparse.ArgumentParser(
        prog="adaspec",
        description="AdaSPEC selective distillation of speculative-decoding drafters.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="run one stage of a pipeline config")
    train.add_argument("stage", choices=sorted(STAGE_ALIASES), help="target, ref or draft")
    train.add_argument("config", help="pipeline YAML config")
    _add_overrides(train)

    pipe = sub.add_parser("pipeline", help="run all stages, then compare DistillSpec and AdaSPEC")
    pipe.add_argument("config", help="pipeline YAML config")
    _add_overrides(pipe)

    demo = sub.add_parser("demo", help="the offline default: tiny models on a synthetic task (CPU)")
    demo.add_argument("--output-dir", default="runs/demo", help="where models and results go")
    _add_overrides(demo)

    ev = sub.add_parser("eval", help="acceptance rate and quality of drafts against a target")
    ev.add_argument("config", nargs="?", help="evaluation YAML config (flags below override it)")
    ev.add_argument("--target", help="target checkpoint (directory or hub id)")
    ev.add_argument(
        "--draft", action="append", default=[], metavar="NAME=PATH", help="a draft (repeatable)"
    )
    ev.add_argument("--task", help="gsm8k, mbpp, xsum, cnn_dailymail, alpaca, ...")
    ev.add_argument("--source", help="prompt source: local jsonl/json/parquet file or hub dataset")
    ev.add_argument("--num-prompts", type=int, help="prompts to evaluate")
    ev.add_argument("--gamma", type=int, help="draft tokens per round (default 4)")
    ev.add_argument("--max-new-tokens", type=int, help="generation length (default 512)")
    ev.add_argument("--output-dir", help="where results.json, results.md and the plot go")
    ev.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    show = sub.add_parser("config", help="list a config's fields, defaults and help")
    show.add_argument("kind", choices=["pipeline", "eval"], help="which config")
    return parser


def _print_result(result: dict) -> None:
    comparison = result.get("comparison") or {}
    table = comparison.get("markdown") if isinstance(comparison, dict) else None
    if table:
        print(table)
    print(json.dumps({k: v for k, v in result.items() if k != "comparison"}, indent=2, default=str))


def _run_train(args: argparse.Namespace) -> int:
    from adaspec.pipeline import run_pipeline
    from adaspec.pipeline_config import PipelineConfig

    config = PipelineConfig.from_yaml(args.config, overrides=args.overrides)
    stage = STAGE_ALIASES[args.stage]
    result = run_pipeline(
        config, stages=(stage,), resume=not args.no_resume, retrain_changed=args.retrain_changed
    )
    _print_result(result)
    return 0


def _run_pipeline(args: argparse.Namespace) -> int:
    from adaspec.pipeline import run_pipeline
    from adaspec.pipeline_config import PipelineConfig

    config = PipelineConfig.from_yaml(args.config, overrides=args.overrides)
    _print_result(
        run_pipeline(config, resume=not args.no_resume, retrain_changed=args.retrain_changed)
    )
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from adaspec.demo import run_demo

    _print_result(
        run_demo(
            args.output_dir,
            overrides=args.overrides,
            resume=not args.no_resume,
            retrain_changed=args.retrain_changed,
        )
    )
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from adaspec.eval import EvalConfig, run_eval

    data = {}
    if args.config:
        import yaml

        with open(args.config) as fh:
            data = yaml.safe_load(fh) or {}
    from adaspec.config import apply_override

    flag_values = {
        "target": args.target,
        "task": args.task,
        "source": args.source,
        "num_prompts": args.num_prompts,
        "gamma": args.gamma,
        "max_new_tokens": args.max_new_tokens,
        "output_dir": args.output_dir,
    }
    for key, value in flag_values.items():
        if value is not None:
            data[key] = value
    if args.draft:
        drafts = {}
        for item in args.draft:
            if "=" not in item:
                raise ConfigError(f"--draft {item!r} must look like NAME=PATH")
            name, path = item.split("=", 1)
            drafts[name] = path
        data["drafts"] = drafts
    for item in args.overrides:
        apply_override(data, item)
    result = run_eval(EvalConfig.from_dict(data))
    if isinstance(result, dict) and result.get("markdown"):
        print(result["markdown"])
    return 0


def _run_config(args: argparse.Namespace) -> int:
    if args.kind == "pipeline":
        from adaspec.pipeline_config import PipelineConfig as cls
    else:
        from adaspec.eval import EvalConfig as cls
    print(describe(cls))
    return 0


COMMANDS = {
    "train": _run_train,
    "pipeline": _run_pipeline,
    "demo": _run_demo,
    "eval": _run_eval,
    "config": _run_config,
}


def dispatch(
    prog: str, parser: argparse.ArgumentParser, commands: dict, argv: Sequence[str] | None
) -> int:
    """Parse ``argv``, set up logging and run the chosen command; user errors exit with 2.

    Shared by the ``adaspec`` and ``adaspec-eagle`` commands. ``-v`` re-raises for a traceback.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return commands[args.command](args)
    except (ConfigError, FileNotFoundError, ValueError, OutputDirInUse) as err:
        if args.verbose:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``adaspec`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    return dispatch("adaspec", build_parser(), COMMANDS, argv)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
