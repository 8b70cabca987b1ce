"""Tests for scripts/summarize_cpu_results.py: means over seeds and paired differences."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "summarize_cpu_results.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("summarize_cpu_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(root: Path, name: str, alphas: dict[str, float]) -> Path:
    run = root / name
    (run / "comparison").mkdir(parents=True)
    drafts = {
        draft: {
            "alpha": alpha,
            "token_acceptance": alpha / 2,
            "greedy_agreement": alpha,
            "mean_accepted_per_round": 4 * alpha,
            "quality": {"pass@1": 0.0},
            "identical_to_target": True,
        }
        for draft, alpha in alphas.items()
    }
    results = {
        "target": {"quality": {"pass@1": 0.0}},
        "drafts": drafts,
        "reference_alignment": {
            d: {"token_acceptance": a, "greedy_agreement": a} for d, a in alphas.items()
        },
        "table": [{"draft": d, "steps": 10} for d in alphas],
    }
    (run / "comparison" / "results.json").write_text(json.dumps(results))
    timings = {"target": 0.5, "reference": 61.2}
    trained = name.endswith("s0")
    if trained:
        timings["comparison"] = 30.0
    (run / "pipeline_x.json").write_text(json.dumps({"stage_seconds": timings}))
    (run / "adaspec_config.yaml").write_text(f"target:\n  train: {str(trained).lower()}\n")
    return run


def test_summarize_paired_differences_are_per_seed(tmp_path: Path):
    """Δα is AdaSPEC minus DistillSpec within each seed, then averaged over seeds."""
    script = _load_script()
    root = tmp_path
    runs = [
        _write_run(
            root,
            f"task-s{i}",
            {"distillspec-equal_steps": base, "adaspec-equal_steps": base + delta},
        )
        for i, (base, delta) in enumerate([(0.5, 0.1), (0.7, 0.3), (0.6, 0.2)])
    ]
    summary = script.summarize(runs)
    mean, sd = summary["drafts"]["distillspec-equal_steps"]["alpha"]
    assert mean == pytest.approx(0.6)
    assert sd == pytest.approx(0.1)
    paired = summary["paired"]["equal_steps"]["alpha"]
    assert paired["per_seed"] == pytest.approx([0.1, 0.3, 0.2])
    assert paired["mean_sd"][0] == pytest.approx(0.2)
    assert paired["mean_sd"][1] == pytest.approx(0.1)
    assert "equal_tokens" not in summary["paired"]
    table = script.to_markdown(summary)
    assert "| equal_steps | 0.2000 ± 0.1000 |" in table
    assert "accepted / round" in table
    timings = script.timing_table(summary)
    assert "| task-s0 | 0 | 61 | 30 |" in timings
    assert "| task-s1 | loaded | 61 | - |" in timings
