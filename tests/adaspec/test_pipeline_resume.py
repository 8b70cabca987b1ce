"""kill -9 in each stage, then the same command again: the run continues the uninterrupted one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import TINY_PIPELINE, StageKilled, run_pipeline_killed_at

from adaspec.cli import main
from adaspec.modeling import load_model

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("target", "reference", "adaspec-equal_steps")
STEPS = 6  # 48 examples / batch 8, one epoch; checkpoints at steps 2, 4, 6


def _config_file(tmp_path, name, family):
    data = yaml.safe_load(yaml.safe_dump(TINY_PIPELINE))
    optim = dict(TINY_PIPELINE["target"]["optim"], per_device_batch_size=8, save_steps=2)
    optim["logging_steps"] = 1
    data.update(output_dir=str(tmp_path / name), evaluation={"enabled": False})
    data["target"]["optim"] = optim
    data["reference"]["optim"] = optim
    data["draft"]["budget"] = {"modes": ["equal_steps"]}
    for spec in (data["target"]["model"], data["draft_model"]):
        spec["family"] = family
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _losses(folder):
    history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def _assert_same_runs(resumed, straight):
    for stage in STAGES:
        want, got = _losses(straight / stage), _losses(resumed / stage)
        assert sorted(got) == sorted(want) == list(range(1, STEPS + 1)), stage
        for step in want:
            assert got[step] == pytest.approx(want[step], rel=1e-4, abs=1e-6), (stage, step)
        a = load_model(str(straight / stage)).state_dict()
        b = load_model(str(resumed / stage)).state_dict()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=f"{stage}.{key}")


@pytest.mark.parametrize(
    "family",
    [
        "gpt_neox",
        # ~16 s each; both families are also killed and resumed stage by stage, unmarked, in
        # tests/adaspec/training/test_resume.py
        pytest.param("llama", marks=pytest.mark.slow),
        pytest.param("qwen2", marks=pytest.mark.slow),
    ],
)
def test_pipeline_killed_in_each_stage_then_rerun_matches_uninterrupted(tmp_path, family):
    assert main(["pipeline", str(_config_file(tmp_path, "straight", family))]) == 0
    argv = ["pipeline", str(_config_file(tmp_path, "resumed", family))]
    for stage in STAGES:
        with pytest.raises(StageKilled):
            run_pipeline_killed_at(argv, stage, step=3, hard=False)
        assert not (tmp_path / "resumed" / stage / "config.json").exists()
    assert main(argv) == 0
    _assert_same_runs(tmp_path / "resumed", tmp_path / "straight")


@pytest.mark.slow  # three subprocesses importing torch: about 80 s on two busy cores
def test_pipeline_sigkilled_in_each_stage_then_rerun_matches_uninterrupted(tmp_path):
    """A real kill -9 of the process in the target, the reference and the draft stage."""
    assert main(["pipeline", str(_config_file(tmp_path, "straight", "gpt_neox"))]) == 0
    argv = ["pipeline", str(_config_file(tmp_path, "resumed", "gpt_neox"))]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", OMP_NUM_THREADS="1")
    for stage in STAGES:
        code = (
            "import torch; torch.set_num_threads(1); from helpers import run_pipeline_killed_at; "
            f"run_pipeline_killed_at({argv!r}, {stage!r}, step=3)"
        )
        child = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
        )
        assert child.returncode == -9, child.stderr[-2000:]
        ckpts = tmp_path / "resumed" / f"{stage}-checkpoints"
        assert (ckpts / "checkpoint-2" / "CHECKPOINT_COMPLETE").exists(), stage
        assert not (tmp_path / "resumed" / stage / "config.json").exists(), stage
    assert main(argv) == 0  # the same command again
    _assert_same_runs(tmp_path / "resumed", tmp_path / "straight")
