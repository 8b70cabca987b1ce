import json

import pytest
import torch
from helpers import make_tiny_model

from adaspec.config import ConfigError
from adaspec.data import DataConfig, Example, build_prompt_ids
from adaspec.decoding import acceptance_counts, autoregressive_generate, chain_rounds
from adaspec.eval.evaluate import EvalConfig, evaluate_models, resolve_device, run_eval

EXAMPLES = [
    Example("Question: what is 3 plus 4? Answer:", " 7", {"answer": "7"}),
    Example("Question: what is 12 plus 9? Answer:", " 21", {"answer": "21"}),
]


def models(tok, family="gpt_neox"):
    n = len(tok)
    return (
        make_tiny_model(family, seed=0, vocab_size=n),
        make_tiny_model(family, seed=0, vocab_size=n),
        make_tiny_model(family, seed=1, vocab_size=n),
    )


def test_evaluate_models_identical_draft_alpha_one(tiny_tokenizer, family):
    target, same, other = models(tiny_tokenizer, family)
    r = evaluate_models(
        target, {"same": same, "other": other}, tiny_tokenizer, EXAMPLES,
        task="gsm8k", gamma=4, max_new_tokens=12, progress=False,
    )  # fmt: skip
    s, o = r["drafts"]["same"], r["drafts"]["other"]
    assert s["alpha"] == 1.0 and s["rejected"] == 0
    assert s["identical_to_target"] is True and o["identical_to_target"] is True
    assert s["token_acceptance"] == pytest.approx(1.0, abs=1e-5)
    assert s["greedy_agreement"] == 1.0 and 0.0 <= o["greedy_agreement"] <= 1.0
    assert s["acceptance_by_position"][0] == 1.0
    assert o["alpha"] < 1.0 and o["token_acceptance"] < 1.0
    assert len(o["acceptance_by_position"]) == 4
    assert set(s["quality"]) == {"accuracy"}
    assert r["settings"]["num_prompts"] == 2 and len(r["samples"]) == 2
    assert s["new_tokens"] == r["target"]["new_tokens"]


def test_evaluate_models_alpha_matches_decoding_core(tiny_tokenizer):
    target, _, other = models(tiny_tokenizer)
    r = evaluate_models(
        target, {"other": other}, tiny_tokenizer, EXAMPLES, gamma=3, max_new_tokens=10,
        progress=False, keep_samples=False,
    )  # fmt: skip
    steps = []
    for ex in EXAMPLES:
        ids = torch.tensor([build_prompt_ids(ex, tiny_tokenizer)])
        steps += chain_rounds(target, other, ids, 3, 10, tiny_tokenizer.eos_token_id).steps
        ref = autoregressive_generate(target, ids, 10, tiny_tokenizer.eos_token_id)
        assert ref.num_new_tokens > 0
    counts = acceptance_counts(steps)
    d = r["drafts"]["other"]
    assert (d["accepted"], d["rejected"]) == (counts["accepted"], counts["rejected"])
    assert "samples" not in r and r["target"]["quality"] == {}


def test_evaluate_models_refuses_mismatched_vocabulary(tiny_tokenizer):
    target = make_tiny_model(seed=0, vocab_size=len(tiny_tokenizer))
    small = make_tiny_model(seed=0, vocab_size=128)
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        evaluate_models(target, {"small": small}, tiny_tokenizer, EXAMPLES, progress=False)


def _save(model, tok, path):
    model.save_pretrained(path)
    if tok is not None:
        tok.save_pretrained(path)
    return str(path)


@pytest.fixture
def checkpoints(tmp_path, tiny_tokenizer):
    target, same, other = models(tiny_tokenizer)
    prompts = tmp_path / "gsm8k.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"question": f"What is {a} plus {a}?", "answer": f"{a} + {a}\n#### {2 * a}"})
            for a in (1, 2, 3)
        )
    )
    return {
        "target": _save(target, tiny_tokenizer, tmp_path / "target"),
        "same": _save(same, tiny_tokenizer, tmp_path / "same"),
        "other": _save(other, None, tmp_path / "other"),
        "prompts": str(prompts),
    }


def test_run_eval_writes_reports(tmp_path, checkpoints):
    cfg = EvalConfig.from_dict(
        {
            "target": checkpoints["target"],
            "drafts": {"same": checkpoints["same"], "other": checkpoints["other"]},
            "data": {"task": "gsm8k", "eval_source": checkpoints["prompts"]},
            "num_prompts": 2,
            "max_new_tokens": 8,
            "output_dir": str(tmp_path / "out"),
        }
    )
    r = run_eval(cfg)
    out = tmp_path / "out"
    saved = json.loads((out / "results.json").read_text())
    assert saved["drafts"]["same"]["alpha"] == 1.0
    assert saved["drafts"]["other"]["identical_to_target"] is True
    assert saved["settings"]["num_prompts"] == 2 and saved["settings"]["task"] == "gsm8k"
    assert saved["config"]["gamma"] == 4
    table = (out / "results.md").read_text()
    assert "| same | 1.0000 |" in table and "other" in table
    png = (out / "acceptance_by_position.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert r["drafts"]["other"]["alpha"] == saved["drafts"]["other"]["alpha"]
    assert r["markdown"] == table and (out / "eval_config.yaml").exists()


def test_run_eval_source_file(tmp_path, checkpoints):
    cfg = EvalConfig(
        target=checkpoints["target"], drafts={"same": checkpoints["same"]},
        source=checkpoints["prompts"], task="gsm8k", num_prompts=1, max_new_tokens=4,
        output_dir=str(tmp_path / "o"), token_acceptance=False,
    )  # fmt: skip
    r = run_eval(cfg)
    assert r["settings"]["num_prompts"] == 1
    assert r["drafts"]["same"]["token_acceptance"] is None


def test_run_eval_refuses_draft_with_other_tokenizer(tmp_path, checkpoints, tiny_tokenizer):
    from adaspec.modeling import train_bpe_tokenizer

    other_tok = train_bpe_tokenizer(["completely different words here"] * 20, vocab_size=300)
    n = len(tiny_tokenizer)
    path = _save(make_tiny_model(seed=2, vocab_size=n), other_tok, tmp_path / "foreign")
    cfg = EvalConfig(
        target=checkpoints["target"], drafts={"foreign": path},
        source=checkpoints["prompts"], task="gsm8k", output_dir=str(tmp_path / "o"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="'foreign' does not share the target's tokenizer"):
        run_eval(cfg)


def test_eval_config_errors():
    with pytest.raises(ConfigError, match="gamma"):
        EvalConfig(gamma=0)
    with pytest.raises(ConfigError, match="unknown config key"):
        EvalConfig.from_dict({"gama": 4})
    with pytest.raises(ConfigError, match="not both"):
        EvalConfig(data=DataConfig(task="gsm8k"), source="x.jsonl")
    with pytest.raises(ConfigError, match="no prompt set"):
        run_eval(EvalConfig(target="t", drafts={"d": "d"}))


def test_resolve_device_auto():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.parametrize("which", ["target", "draft"])
def test_evaluate_models_nan_weights_refused(tiny_tokenizer, which):
    target, same, _ = models(tiny_tokenizer)
    broken = target if which == "target" else same
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ValueError, match=rf"{which}.*non-finite"):
        evaluate_models(
            target, {"draft": same}, tiny_tokenizer, EXAMPLES, max_new_tokens=4, progress=False
        )
