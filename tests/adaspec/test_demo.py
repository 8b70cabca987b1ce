import pytest

from adaspec.cli import main
from adaspec.config import ConfigError
from adaspec.demo import demo_config

SMALL = [
    "data.num_synthetic_train=48",
    "data.num_synthetic_eval=2",
    "target.model.hidden_size=32",
    "target.model.num_layers=1",
    "target.optim.epochs=1",
    "draft_pretrain.epochs=1",
    "reference.optim.epochs=1",
    "evaluation.num_examples=2",
    "evaluation.max_new_tokens=8",
    "target.optim.disable_tqdm=true",
]


def test_demo_config_is_the_embedded_default_with_overrides(tmp_path):
    config = demo_config(str(tmp_path / "d"), overrides=["draft.loss.k=0.5"])
    assert config.output_dir == str(tmp_path / "d")
    assert config.draft.loss.k == 0.5
    assert config.data.task == "synthetic" and config.tokenizer.name_or_path is None
    assert config.draft.budget.modes == ["equal_steps", "equal_tokens"]
    assert demo_config().draft.loss.k == 0.4


def test_demo_config_rejects_unknown_override(tmp_path):
    with pytest.raises(ConfigError, match="draft.loss.kk"):
        demo_config(str(tmp_path), overrides=["draft.loss.kk=0.5"])


def test_cli_demo_prints_the_comparison_table(tmp_path, capsys):
    args = ["demo", "--output-dir", str(tmp_path / "demo")]
    for item in SMALL:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    for name in ("distillspec-equal_steps", "adaspec-equal_steps", "adaspec-equal_tokens",
                 "distillspec-equal_tokens"):  # fmt: skip
        assert f"| {name} |" in out
    written = (tmp_path / "demo" / "comparison.md").read_text()
    assert written.split("\n\nProduced with")[0] in out
