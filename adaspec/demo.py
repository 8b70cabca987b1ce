"""``adaspec demo``: the whole pipeline on the embedded default, offline, on a CPU in minutes.

The default (``adaspec/resources/demo.yaml``) trains a small target from scratch on the project's
synthetic task, distils a reference (the DistillSpec draft) and AdaSPEC drafts at both budgets
from the same tiny initial weights, and prints the comparison table.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from adaspec.config import apply_override
from adaspec.pipeline import run_pipeline
from adaspec.pipeline_config import PipelineConfig


def demo_config(
    output_dir: str = "runs/demo", overrides: list[str] | None = None
) -> PipelineConfig:
    """The embedded demo config, with ``output_dir`` and ``key=value`` overrides applied."""
    text = resources.files("adaspec").joinpath("resources/demo.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    data["output_dir"] = str(Path(output_dir))
    for item in overrides or []:
        apply_override(data, item)
    return PipelineConfig.from_dict(data)


def run_demo(
    output_dir: str = "runs/demo",
    overrides: list[str] | None = None,
    resume: bool = True,
    retrain_changed: bool = False,
) -> dict:
    """Run the demo pipeline and return its results (the comparison table under ``comparison``)."""
    return run_pipeline(
        demo_config(output_dir, overrides), resume=resume, retrain_changed=retrain_changed
    )
