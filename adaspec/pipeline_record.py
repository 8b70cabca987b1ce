"""The pipeline's run record: ``output_dir/pipeline_<stages>.json``."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from adaspec.data import TruncationReport, response_source, use_chat_template
from adaspec.eval.report import write_json
from adaspec.pipeline_config import PipelineConfig


def write_run_record(
    out: Path,
    stages: tuple[str, ...],
    timings: dict[str, float],
    truncation: TruncationReport,
    config: PipelineConfig,
    tokenizer: PreTrainedTokenizerBase,
) -> Path:
    """Write what a run did to ``out/pipeline_<stages>.json`` and return its path.

    Stage times an earlier run of the same stages recorded there are kept, so a resumed run
    (which skips finished stages) still reports every stage's time.

    Args:
        out: The run's ``output_dir``.
        stages: The stages this run was asked for.
        timings: Seconds per stage (and cache, comparison) measured by this run.
        truncation: The training data's tokenization report.
        config: The run's config.
        tokenizer: The run's tokenizer (whether it applies a chat template).
    """
    path = out / f"pipeline_{'-'.join(stages)}.json"
    write_json(
        {
            "stages": list(stages),
            "stage_seconds": {**recorded_seconds(path), **timings},
            "truncation": vars(truncation),
            "training_data": response_source(config.data),
            "chat_template": use_chat_template(tokenizer, config.data.chat_template),
        },
        path,
    )
    return path


def recorded_seconds(path: Path) -> dict[str, float]:
    """Stage times an earlier run wrote to ``path``, so that a resumed run keeps them."""
    try:
        return dict(json.loads(path.read_text())["stage_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
