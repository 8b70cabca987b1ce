import json

import pytest
import yaml
from helpers import TINY_PIPELINE

from adaspec.cli import main
from adaspec.pipeline import draft_runs, run_pipeline
from adaspec.pipeline_config import PipelineConfig

TINY = TINY_PIPELINE


def _config(tmp_path, **changes):
    data = yaml.safe_load(yaml.safe_dump(TINY))
    data["output_dir"] = str(tmp_path / "run")
    data.update(changes)
    return PipelineConfig.from_dict(data)


def test_draft_runs_equal_tokens_adds_compute_matched_baseline(tmp_path):
    runs = draft_runs(_config(tmp_path))
    assert set(runs) == {"adaspec-equal_steps", "adaspec-equal_tokens", "distillspec-equal_tokens"}
    assert runs["adaspec-equal_steps"][1].epochs == 1
    assert runs["adaspec-equal_tokens"][1].epochs == pytest.approx(2.0)  # 1 / k
    assert runs["distillspec-equal_tokens"][1] == runs["adaspec-equal_tokens"][1]
    assert runs["distillspec-equal_tokens"][0] == "distillspec"


def test_pipeline_end_to_end_then_resume_skips(tmp_path):
    cfg = _config(tmp_path)
    result = run_pipeline(cfg)
    out = tmp_path / "run"
    for name in (
        "target",
        "reference",
        "adaspec-equal_steps",
        "adaspec-equal_tokens",
        "distillspec-equal_tokens",
    ):
        assert (out / name / "config.json").exists(), name
        saved = yaml.safe_load((out / name / "adaspec_config.yaml").read_text())
        assert saved["draft"]["loss"]["k"] == 0.5
    comparison = result["comparison"]
    assert set(comparison["drafts"]) == {
        "distillspec-equal_steps",
        "adaspec-equal_steps",
        "adaspec-equal_tokens",
        "distillspec-equal_tokens",
    }
    for name, d in comparison["drafts"].items():
        assert d["identical_to_target"], name
        assert 0.0 <= d["alpha"] <= 1.0
    steps = {r["draft"]: r["steps"] for r in comparison["table"]}
    grad_tokens = {r["draft"]: r["grad_tokens"] for r in comparison["table"]}
    assert grad_tokens["adaspec-equal_steps"] < grad_tokens["distillspec-equal_steps"]
    assert grad_tokens["adaspec-equal_tokens"] < grad_tokens["distillspec-equal_tokens"]
    assert (
        steps["adaspec-equal_tokens"]
        == steps["distillspec-equal_tokens"]
        > steps["adaspec-equal_steps"]
    )
    assert (out / "comparison.md").read_text().count("\n") >= 6
    assert json.loads((out / "reference" / "trainer_state.json").read_text())["global_step"] > 0
    checkpoints = sorted((out / "reference-checkpoints").glob("checkpoint-*"))
    assert checkpoints and all((c / "adaspec_config.yaml").exists() for c in checkpoints)
    assert all((c / "CHECKPOINT_COMPLETE").exists() for c in checkpoints)
    timings_file = out / "pipeline_target-reference-draft.json"
    first = json.loads(timings_file.read_text())["stage_seconds"]
    assert {"target", "reference", "adaspec-equal_tokens", "comparison"} <= set(first)
    again = run_pipeline(cfg)
    assert set(again["stage_seconds"]) == {"comparison"}  # every training stage was skipped
    kept = json.loads(timings_file.read_text())["stage_seconds"]
    assert {k: v for k, v in kept.items() if k != "comparison"} == {
        k: v for k, v in first.items() if k != "comparison"
    }


@pytest.mark.parametrize("kind", ["logits", "hidden"])
def test_pipeline_teacher_cache_gives_same_drafts(tmp_path, kind):
    import torch

    from adaspec.modeling import load_model

    online = run_pipeline(_config(tmp_path / "a", evaluation={"enabled": False}))
    cached = run_pipeline(
        _config(
            tmp_path / "b",
            evaluation={"enabled": False},
            teacher_cache=True,
            teacher_cache_kind=kind,
        )
    )
    assert (
        "teacher_cache" in cached["stage_seconds"]
        and "teacher_cache" not in online["stage_seconds"]
    )
    # The hidden kind caches the reference for the draft stage too; the logits kind does not.
    assert ("ref_cache" in cached["stage_seconds"]) == (kind == "hidden")
    for name in ("reference", "adaspec-equal_steps", "adaspec-equal_tokens"):
        a = load_model(str(tmp_path / "a" / "run" / name)).state_dict()
        b = load_model(str(tmp_path / "b" / "run" / name)).state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=f"{name}.{key}")


def test_cli_pipeline_rejects_unknown_key(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    data = dict(TINY, output_dir=str(tmp_path / "run"))
    data["draft"] = {"loss": {"kk": 0.4}}
    path.write_text(yaml.safe_dump(data))
    assert main(["pipeline", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'draft.loss.kk'" in err and "did you mean 'k'" in err


def test_pipeline_config_rejects_unknown_cache_kind(tmp_path):
    from adaspec.config import ConfigError

    with pytest.raises(ConfigError, match="teacher_cache_kind"):
        _config(tmp_path, teacher_cache=True, teacher_cache_kind="probs")


def test_cli_train_draft_without_reference_says_which_stage(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(dict(TINY, output_dir=str(tmp_path / "run"))))
    assert main(["train", "draft", str(path)]) == 2
    assert "run that stage first" in capsys.readouterr().err


def test_cli_config_lists_fields(capsys):
    assert main(["config", "pipeline"]) == 0
    out = capsys.readouterr().out
    assert "bpe_vocab_size" in out and "k: 0.4" in out


def test_pipeline_draft_pretrain_trains_the_shared_initialisation(tmp_path):
    import torch

    from adaspec.modeling import load_model
    from adaspec.pipeline import Pipeline

    pretrain = {
        "epochs": 1,
        "learning_rate": 3e-3,
        "per_device_batch_size": 16,
        "disable_tqdm": True,
    }
    pipe = Pipeline(_config(tmp_path, draft_pretrain=pretrain))
    trained = pipe.draft_init()
    state = json.loads((tmp_path / "run" / "draft_init" / "trainer_state.json").read_text())
    assert state["global_step"] == 3  # 48 examples / batch 16
    fresh = Pipeline(_config(tmp_path / "fresh")).draft_init()
    changed = [
        not torch.equal(a, b)
        for a, b in zip(trained.state_dict().values(), fresh.state_dict().values())
    ]
    assert any(changed)
    reloaded = load_model(str(tmp_path / "run" / "draft_init"))
    for key, value in trained.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key


@pytest.mark.parametrize("prompt_loss", [False, True])
def test_pipeline_target_prompt_loss_labels_the_prompt(tmp_path, monkeypatch, prompt_loss):
    import adaspec.pipeline as pipeline_module
    from adaspec.data import IGNORE_INDEX
    from adaspec.pipeline import Pipeline

    seen = {}

    def fake_run_stage(name, model, tokenizer, dataset, *args, **kwargs):
        seen["dataset"] = dataset
        return model

    monkeypatch.setattr(pipeline_module, "run_stage", fake_run_stage)
    target = yaml.safe_load(yaml.safe_dump(TINY["target"]))
    target["prompt_loss"] = prompt_loss
    pipe = Pipeline(_config(tmp_path, target=target))
    pipe.target()
    rows = seen["dataset"]
    assert len(rows) == len(pipe.train_dataset)
    for row, original in zip(rows, pipe.train_dataset):
        assert row["input_ids"] == original["input_ids"]
        if prompt_loss:
            assert row["labels"] == row["input_ids"]
        else:
            assert row["labels"] == original["labels"]
            assert row["labels"][0] == IGNORE_INDEX
            assert row["labels"][-1] == row["input_ids"][-1]  # EOS is learnt
