import json

from helpers import make_tiny_model

from adaspec.compare import compare_drafts
from adaspec.data import make_synthetic_examples
from adaspec.pipeline_config import PipelineConfig


def _state(folder, steps, tokens):
    folder.mkdir(parents=True)
    history = [{"step": 1, "adaspec/gradient_tokens": 10.0}, {"step": steps, "loss": 1.0},
               {"step": steps, "adaspec/gradient_tokens": float(tokens)}]  # fmt: skip
    (folder / "trainer_state.json").write_text(
        json.dumps({"global_step": steps, "log_history": history})
    )


def test_compare_drafts_reports_budget_labels_and_writes_table(tmp_path, tiny_tokenizer):
    n = len(tiny_tokenizer)
    target = make_tiny_model(seed=1, vocab_size=n).eval()
    same = make_tiny_model(seed=1, vocab_size=n).eval()  # the target itself: accepts everything
    other = make_tiny_model(seed=2, vocab_size=n).eval()
    config = PipelineConfig.from_dict(
        {
            "data": {"task": "synthetic", "max_length": 64},
            "evaluation": {"num_examples": 2, "gamma": 3, "max_new_tokens": 6},
        }  # fmt: skip
    )
    _state(tmp_path / "reference", 12, 300)
    _state(tmp_path / "elsewhere" / "mine", 12, 120)
    result = compare_drafts(
        target,
        {"distillspec-equal_steps": other, "copy": same},
        tiny_tokenizer,
        make_synthetic_examples(3, seed=5),
        config,
        tmp_path,
        folders={"copy": tmp_path / "elsewhere" / "mine"},
        labels={"copy": "the target"},
    )
    rows = {row["draft"]: row for row in result["table"]}
    assert rows["copy"]["alpha"] == 1.0 and rows["copy"]["identical"] == 1.0
    assert rows["distillspec-equal_steps"]["alpha"] < 1.0
    assert (rows["copy"]["steps"], rows["copy"]["grad_tokens"]) == (12, 120)
    assert rows["distillspec-equal_steps"]["grad_tokens"] == 300
    assert rows["copy"]["loss"] == "the target"
    assert rows["distillspec-equal_steps"]["loss"] == "DistillSpec (KD)"
    table = (tmp_path / "comparison.md").read_text()
    assert table.startswith(result["markdown"]) and "| copy | the target | 12 | 120 |" in table
    assert "Produced with adaspec" in table and result["environment"]["transformers"]
    assert (tmp_path / "comparison" / "results.json").exists()
