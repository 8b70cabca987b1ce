import json

import pytest
import yaml

from adaspec.cli import main
from adaspec.config import ConfigError
from adaspec.pipeline_config import PipelineConfig
from adaspec.sweep import recipe_folders, recipes, seed_config, summarize

TINY = {
    "seed": 0,
    "tokenizer": {"bpe_vocab_size": 300},
    "data": {
        "task": "synthetic",
        "num_synthetic_train": 32,
        "num_synthetic_eval": 3,
        "max_length": 96,
    },
    "target": {
        "model": {"family": "llama", "hidden_size": 32, "num_layers": 2, "num_heads": 4},
        "optim": {
            "epochs": 1,
            "learning_rate": 3e-3,
            "per_device_batch_size": 8,
            "disable_tqdm": True,
        },
    },
    "draft_model": {"family": "llama", "hidden_size": 16, "num_layers": 1, "num_heads": 2},
    "reference": {
        "optim": {
            "epochs": 1,
            "learning_rate": 3e-3,
            "per_device_batch_size": 8,
            "disable_tqdm": True,
        }
    },
    "draft": {"loss": {"k": 0.5}},
    "evaluation": {"num_examples": 2, "gamma": 3, "max_new_tokens": 10},
}


def _config(tmp_path, **sweep):
    data = yaml.safe_load(yaml.safe_dump(TINY))
    data["output_dir"] = str(tmp_path / "sweep")
    data["sweep"] = sweep
    return PipelineConfig.from_dict(data)


def test_recipes_build_the_controls_from_the_draft_loss(tmp_path):
    config = _config(
        tmp_path,
        late_phase_fraction=0.25,
        recipes=list(
            [
                "kd",
                "adaspec",
                "random_k",
                "late_phase",
                "k_linear",
                "student_entropy",
                "ref_adaspec",
                "ref_kd",
            ]
        ),
    )
    got = recipes(config)
    assert list(got) == config.sweep.recipes
    assert got["kd"].loss.k == 1.0 and not got["kd"].uses_reference
    assert got["adaspec"].loss == config.draft.loss and got["adaspec"].uses_reference
    assert (got["random_k"].loss.selection, got["random_k"].loss.k) == ("random", 0.5)
    assert not got["random_k"].uses_reference
    late = got["late_phase"].loss
    assert (late.k_schedule, late.k_start, late.k_schedule_fraction) == ("step", 1.0, 0.25)
    assert late.k_at(0.1) == 1.0 and late.k_at(0.5) == 0.5
    assert got["k_linear"].loss.k_at(0.0) == 1.0 and got["k_linear"].loss.k_at(1.0) == 0.5
    assert got["student_entropy"].loss.selection == "student_entropy"
    assert got["ref_adaspec"].init == got["ref_kd"].init == "reference"
    assert got["ref_kd"].loss.k == 1.0
    assert seed_config(config, 2).output_dir.endswith("seed-2")


ALL = ["kd", "adaspec", "random_k", "late_phase", "ref_adaspec", "ref_kd"]


def test_recipe_folders_reuse_the_pipeline_run_that_is_the_same_run(tmp_path):
    folders = recipe_folders(_config(tmp_path, recipes=ALL))
    assert folders == {
        "kd": "reference",
        "adaspec": "adaspec-equal_steps",
        "random_k": "sweep-random_k",
        "late_phase": "sweep-late_phase",
        "ref_adaspec": "sweep-ref_adaspec",
        "ref_kd": "sweep-ref_kd",
    }


def test_recipe_folders_train_their_own_run_when_the_settings_differ(tmp_path):
    config = _config(tmp_path, recipes=ALL)
    # The draft stage's own schedule: kd is no longer the reference's run, adaspec still is.
    other = config.replace(
        draft=config.draft.replace(optim=config.reference.optim.replace(learning_rate=1e-3))
    )
    folders = recipe_folders(other)
    assert (folders["kd"], folders["adaspec"]) == ("sweep-kd", "adaspec-equal_steps")
    # Without the equal-steps budget the pipeline trains no run that is the adaspec recipe.
    budget = config.draft.budget.replace(modes=["equal_tokens"])
    only_tokens = config.replace(draft=config.draft.replace(budget=budget))
    assert recipe_folders(only_tokens)["adaspec"] == "sweep-adaspec"


def test_summarize_pairs_by_seed():
    def row(alpha, tok=0.5):
        return {"alpha": alpha, "token acceptance": tok, "ref_token": None}

    per_seed = {
        0: {"kd": row(0.50), "adaspec": row(0.55), "ref_kd": row(0.60), "ref_adaspec": row(0.58)},
        1: {"kd": row(0.40), "adaspec": row(0.38), "ref_kd": row(0.50), "ref_adaspec": row(0.56)},
        2: {"kd": row(0.45), "adaspec": row(0.49), "ref_kd": row(0.52), "ref_adaspec": row(0.57)},
    }
    out = summarize(per_seed, baseline="kd")
    assert out["recipes"]["kd"]["alpha"]["mean"] == pytest.approx(0.45)
    assert out["recipes"]["kd"]["alpha"]["std"] == pytest.approx(0.05)
    assert "ref_token" not in out["recipes"]["kd"]  # never measured: not averaged as zeros
    assert "kd" not in out["paired"]
    ada = out["paired"]["adaspec"]
    assert ada["against"] == "kd"
    assert ada["alpha"]["mean"] == pytest.approx((0.05 - 0.02 + 0.04) / 3)
    assert ada["wins"] == 2 and ada["alpha"]["n"] == 3
    ref = out["paired"]["ref_adaspec"]
    assert ref["against"] == "ref_kd"
    assert ref["alpha"]["mean"] == pytest.approx((-0.02 + 0.06 + 0.05) / 3)
    assert out["paired"]["ref_kd"]["against"] == "kd"


@pytest.mark.parametrize(
    "sweep, field",
    [
        ({"seeds": []}, "sweep.seeds"),
        ({"recipes": ["kd", "magic"]}, "sweep.recipes entry"),
        ({"recipes": ["kd", "kd"]}, "twice"),
        ({"recipes": ["adaspec"], "baseline": "kd"}, "sweep.baseline"),
        ({"late_phase_fraction": 0.0}, "late_phase_fraction"),
    ],
)
def test_sweep_config_rejects_bad_values(tmp_path, sweep, field):
    with pytest.raises(ConfigError, match=field):
        _config(tmp_path, **sweep)


def test_cli_sweep_trains_every_recipe_at_equal_steps(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    data = yaml.safe_load(yaml.safe_dump(TINY))
    data["output_dir"] = str(tmp_path / "out")
    data["sweep"] = {"seeds": [0, 1], "recipes": ALL}
    path.write_text(yaml.safe_dump(data))
    assert main(["sweep", str(path)]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "out"
    result = json.loads((out / "sweep.json").read_text())
    assert sorted(result["per_seed"]) == ["0", "1"]
    for seed in ("0", "1"):
        rows = result["per_seed"][seed]
        assert set(rows) == set(data["sweep"]["recipes"])
        # kd is the reference and adaspec the pipeline's equal-steps draft (the same runs);
        # every other recipe was trained for the same steps into its own folder.
        assert not (out / f"seed-{seed}" / "sweep-kd").exists()
        assert not (out / f"seed-{seed}" / "sweep-adaspec").exists()
        assert (out / f"seed-{seed}" / "adaspec-equal_steps" / "config.json").exists()
        assert (out / f"seed-{seed}" / "sweep-random_k" / "config.json").exists()
        assert len({rows[name]["steps"] for name in rows}) == 1
        assert rows["random_k"]["grad_tokens"] < rows["kd"]["grad_tokens"]
        assert 0.0 <= rows["adaspec"]["alpha"] <= 1.0
    # Different seeds give different drafts.
    assert result["per_seed"]["0"]["adaspec"] != result["per_seed"]["1"]["adaspec"]
    assert (out / "sweep.png").stat().st_size > 0
    table = (out / "sweep.md").read_text()
    assert all(f"| {name} |" in table for name in data["sweep"]["recipes"])
    assert table in printed
    assert set(result["train_seconds"]) == set(ALL)
    # A rerun trains nothing and still reports every recipe's training time (recorded).
    assert main(["sweep", str(path)]) == 0
    again = json.loads((out / "sweep.json").read_text())
    assert again["train_seconds"] == result["train_seconds"]
    for seed, rows in result["per_seed"].items():
        assert {n: r["alpha"] for n, r in again["per_seed"][seed].items()} == {
            n: r["alpha"] for n, r in rows.items()
        }
