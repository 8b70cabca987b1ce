import json

import pytest
from helpers import make_tiny_model

from adaspec.config import ConfigError
from adaspec_eagle.bench import run_benchmark
from adaspec_eagle.bench_config import BenchConfig
from adaspec_eagle.checkpoint import save_head
from adaspec_eagle.heads import build_head


@pytest.fixture
def setup(tmp_path, tiny_tokenizer):
    n = len(tiny_tokenizer)
    target = make_tiny_model("llama", seed=1, vocab_size=n)
    target.save_pretrained(tmp_path / "target")
    tiny_tokenizer.save_pretrained(tmp_path / "target")
    make_tiny_model("llama", seed=2, vocab_size=n).save_pretrained(tmp_path / "draft")
    save_head(build_head(target.config, "eagle1"), tmp_path / "head")
    prompts = tmp_path / "mt.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"question_id": i, "turns": [t, "more"]}) + "\n"
            for i, t in enumerate(["what is 2 plus 3?", "add 7 and 1."])
        )
    )
    return tmp_path, prompts


def test_bench_runs_every_method_and_speculative_is_lossless(setup):
    tmp_path, prompts = setup
    config = BenchConfig(
        target=str(tmp_path / "target"),
        draft=str(tmp_path / "draft"),
        prompts=str(prompts),
        num_prompts=2,
        max_new_tokens=12,
        warmup=1,
        output_dir=str(tmp_path / "out"),
        methods=[
            {"name": "vanilla", "kind": "vanilla"},
            {"name": "assisted", "kind": "assisted"},
            {"name": "chain", "kind": "speculative", "tree": "chain:3"},
            {"name": "static", "kind": "speculative", "tree": "static:small_10"},
            {
                "name": "dynamic",
                "kind": "speculative",
                "tree": "dynamic:depth=3,top_k=2,total_tokens=6",
            },
            {
                "name": "eagle",
                "kind": "speculative",
                "drafter": "eagle",
                "head": str(tmp_path / "head"),
                "tree": "chain:3",
            },
        ],
    )
    result = run_benchmark(config)
    rows = {r["method"]: r for r in result["methods"]}
    assert rows["vanilla"]["speedup"] == pytest.approx(1.0)
    assert rows["vanilla"]["target_forwards_per_token"] == 1.0
    for name in ("assisted", "chain", "static", "dynamic", "eagle"):
        assert rows[name]["identical_to_vanilla"] == 2, name
    for name in ("chain", "static", "dynamic", "eagle"):
        row = rows[name]
        assert row["tau"] >= 1.0 and row["target_forwards_per_token"] <= 1.0
        assert row["overhead_ms_per_step"] >= 0.0 and len(row["acceptance_by_depth"]) >= 1
        # The draft and verify times are parts of the row's time: the bound is above the speedup.
        step_ms = row["draft_ms_per_step"] + row["verify_ms_per_step"]
        vanilla_ms = 1e3 / rows["vanilla"]["tokens_per_s"]
        assert row["speedup_bound"] == pytest.approx(row["tau"] * vanilla_ms / step_ms)
        assert row["speedup"] <= row["speedup_bound"]
    for f in ("bench.json", "bench.md", "bench.png"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    written = (tmp_path / "out" / "bench.md").read_text()
    assert "τ" in written and "Produced with adaspec" in written
    assert result["environment"]["transformers"] and result["environment"]["device"]


def test_bench_config_errors_name_the_field(setup):
    tmp_path, prompts = setup
    with pytest.raises(ConfigError, match=r"methods\[1\]\.kind must be one of"):
        BenchConfig(
            target="t",
            draft="d",
            prompts=str(prompts),
            methods=[{"name": "v", "kind": "vanilla"}, {"name": "x", "kind": "fast"}],
        )
    with pytest.raises(ConfigError, match="needs a standalone draft"):
        BenchConfig(
            target="t", prompts=str(prompts), methods=[{"name": "c", "kind": "speculative"}]
        )
    with pytest.raises(ConfigError, match="unknown config key 'methods\\[0\\]\\.treee'"):
        BenchConfig(
            target="t", draft="d", prompts=str(prompts), methods=[{"name": "c", "treee": "chain:2"}]
        )


def test_bench_samples_at_temperature_and_skips_the_output_check(setup):
    tmp_path, prompts = setup

    def bench(seed):
        config = BenchConfig(
            target=str(tmp_path / "target"), draft=str(tmp_path / "draft"), prompts=str(prompts),
            num_prompts=2, max_new_tokens=16, warmup=0, temperature=1.0, seed=seed,
            output_dir=str(tmp_path / f"out{seed}"),
            methods=[{"name": "vanilla", "kind": "vanilla"},
                     {"name": "chain", "kind": "speculative", "tree": "chain:3"}],
        )  # fmt: skip
        result = run_benchmark(config)
        runs = json.loads((tmp_path / f"out{seed}" / "bench.json").read_text())
        return result, runs

    result, written = bench(0)
    rows = {r["method"]: r for r in result["methods"]}
    assert written["temperature"] == 1.0
    assert "identical_to_vanilla" not in rows["chain"]  # sampled outputs differ by chance
    assert rows["chain"]["tau"] >= 1.0 and rows["chain"]["new_tokens"] > 0
    # Sampling is seeded: the same seed gives the same tokens, another seed others.
    again, _ = bench(0)
    other, _ = bench(1)
    same = [r["new_tokens"] for r in again["methods"]] == [
        r["new_tokens"] for r in result["methods"]
    ]
    assert same and again["methods"][1]["tau"] == rows["chain"]["tau"]
    assert [r["tau"] for r in other["methods"]] != [r["tau"] for r in result["methods"]] or [
        r["new_tokens"] for r in other["methods"]
    ] != [r["new_tokens"] for r in result["methods"]]


def test_bench_first_record_skips_records(setup):
    from adaspec_eagle.bench import load_prompts

    tmp_path, prompts = setup
    only = {"methods": [{"name": "vanilla", "kind": "vanilla"}]}
    config = BenchConfig(target="t", prompts=str(prompts), num_prompts=5, first_record=1, **only)
    assert [p.prompt for p in load_prompts(config)] == ["add 7 and 1.\n"]
    every = BenchConfig(target="t", prompts=str(prompts), num_prompts=5, every=2, **only)
    assert [p.prompt for p in load_prompts(every)] == ["what is 2 plus 3?\n"]
    with pytest.raises(ValueError, match="lower first_record"):
        load_prompts(BenchConfig(target="t", prompts=str(prompts), first_record=2, **only))
    with pytest.raises(ConfigError, match="first_record"):
        BenchConfig(target="t", prompts=str(prompts), first_record=-1, **only)


def test_bench_transposed_linear_rows_are_lossless_against_stock_vanilla(setup, monkeypatch):
    import adaspec_eagle.bench as bench

    tmp_path, prompts = setup
    patched = []

    def counting(model):
        patched.append(type(model).__name__)
        return bench_transpose(model)

    bench_transpose = bench.transpose_linears
    monkeypatch.setattr(bench, "transpose_linears", counting)
    head = str(tmp_path / "head")
    config = BenchConfig(
        target=str(tmp_path / "target"),
        draft=str(tmp_path / "draft"),
        prompts=str(prompts),
        num_prompts=2,
        max_new_tokens=12,
        warmup=0,
        output_dir=str(tmp_path / "out"),
        methods=[
            {"name": "vanilla-t", "kind": "vanilla", "linear": "transposed"},
            {"name": "vanilla", "kind": "vanilla"},
            {"name": "assisted-t", "kind": "assisted", "linear": "transposed"},
            {"name": "chain-t", "kind": "speculative", "tree": "chain:3", "linear": "transposed"},
            {
                "name": "eagle-t",
                "kind": "speculative",
                "drafter": "eagle",
                "head": head,
                "tree": "dynamic:depth=3,top_k=2,total_tokens=6",
                "linear": "transposed",
            },
        ],
    )
    rows = {r["method"]: r for r in run_benchmark(config)["methods"]}
    # The stock row is the baseline even when listed second; every transposed row matches it.
    assert rows["vanilla"]["speedup"] == pytest.approx(1.0)
    for name in ("vanilla-t", "assisted-t", "chain-t", "eagle-t"):
        assert rows[name]["identical_to_vanilla"] == 2 and rows[name]["linear"] == "transposed"
    # One transposed target (shared by every row), one transposed draft, one transposed head.
    assert sorted(patched) == sorted(["LlamaForCausalLM", "LlamaForCausalLM", "Eagle1Head"])


def test_bench_method_rejects_unknown_linear():
    with pytest.raises(ConfigError, match="linear"):
        BenchConfig(
            target="t", prompts="p.jsonl", methods=[{"name": "v", "kind": "vanilla", "linear": "x"}]
        ).parsed_methods()
