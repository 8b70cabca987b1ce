"""Checks of the metrics against the real datasets in ../shared/data (skipped when absent)."""

from pathlib import Path

import pytest

from adaspec.data import DataConfig, load_task
from adaspec.eval.metrics import score

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"

pytestmark = pytest.mark.slow


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    return path


def test_mbpp_reference_solutions_pass():
    src = _need(DATA / "mbpp" / "mbpp.jsonl")
    cfg = DataConfig(task="mbpp", source=str(src), eval_split="test", max_eval_examples=30)
    examples = load_task(cfg, "eval")
    assert len(examples) == 30
    failed = [e.meta["task_id"] for e in examples if score("mbpp", e.response, e)["pass@1"] < 1]
    assert failed == []
    wrong = examples[0]
    assert score("mbpp", "def nothing():\n    pass\n", wrong)["pass@1"] == 0.0


def test_gsm8k_gold_solutions_score_correct():
    src = _need(DATA / "gsm8k" / "test.jsonl")
    cfg = DataConfig(task="gsm8k", source=str(src), eval_source=str(src), max_eval_examples=300)
    examples = load_task(cfg, "eval")
    assert all(score("gsm8k", e.response, e)["accuracy"] == 1.0 for e in examples)
    assert score("gsm8k", "The final answer is: -1", examples[0])["accuracy"] == 0.0


def test_xsum_reference_rouge_is_one():
    src = _need(DATA / "xsum" / "xsum_1000.jsonl")
    cfg = DataConfig(task="xsum", source=str(src), max_eval_examples=20)
    for e in load_task(cfg, "eval"):
        assert score("xsum", e.meta["reference"], e)["rougeL_f"] == pytest.approx(1.0)
