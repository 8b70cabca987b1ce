"""Loading the real datasets from the shared data folder (skipped when it is absent)."""

import os
from pathlib import Path

import pytest

from adaspec.data import DataConfig, load_records, load_task, tokenize_examples
from adaspec.data.formatters import GSM8K_ANSWER_PROMPT

REPO_ROOT = Path(__file__).resolve().parents[3]
DATA_DIR = Path(os.environ.get("ADASPEC_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def _need(*parts):
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real data not found at {path} (set ADASPEC_DATA_DIR to the shared data folder)"
        )
    return str(path)


def test_real_gsm8k_test_split():
    folder = str(Path(_need("gsm8k", "test.jsonl")).parent)
    cfg = DataConfig(task="gsm8k", source=folder, eval_split="test", max_eval_examples=200)
    examples = load_task(cfg, "eval")
    assert len(examples) == 200
    for ex in examples:
        assert ex.prompt.endswith("answer the final number.\n")
        assert GSM8K_ANSWER_PROMPT in ex.response and "####" not in ex.response
        assert ex.meta["answer"].lstrip("-").replace(".", "").isdigit()
    assert examples[0].meta["answer"] == "18"  # Janet's ducks


def test_real_mbpp_standard_splits():
    path = _need("mbpp", "mbpp.jsonl")
    sizes = {
        split: len(load_task(DataConfig(task="mbpp", source=path, split=split), "train"))
        for split in ("train", "test", "validation", "prompt")
    }
    assert sizes == {"train": 374, "test": 500, "validation": 90, "prompt": 10}
    ex = load_task(DataConfig(task="mbpp", source=path, split="test"), "train")[0]
    assert ex.meta["task_id"] == 11 and ex.meta["test_list"][0] in ex.prompt
    assert "\r" not in ex.response


def test_real_xsum_and_alpaca(tiny_tokenizer):
    xsum = load_task(
        DataConfig(task="xsum", source=_need("xsum", "xsum_1000.jsonl"), max_train_examples=20)
    )
    assert len(xsum) == 20 and all(ex.meta["reference"] == ex.response for ex in xsum)
    alpaca_path = _need("alpaca", "alpaca_5000.json")
    assert len(load_records(alpaca_path)) == 5000
    alpaca = load_task(DataConfig(task="alpaca", source=alpaca_path, max_train_examples=50))
    features, report = tokenize_examples(alpaca + xsum, tiny_tokenizer, max_length=256)
    assert report.num_examples == 70 and len(features) == 70 - report.num_dropped
    assert report.num_truncated >= 1  # XSUM articles exceed 256 characters


def test_real_gsm8k_with_pythia_tokenizer_masks_exact_prompt():
    from adaspec.data import build_prompt_ids
    from adaspec.modeling import load_tokenizer

    tok = load_tokenizer(_need("tokenizers", "pythia", "tokenizer.json"))
    folder = str(Path(_need("gsm8k", "train.jsonl")).parent)
    examples = load_task(DataConfig(task="gsm8k", source=folder, max_train_examples=100))
    features, report = tokenize_examples(examples, tok, max_length=512)
    assert report.num_separately_tokenized == 0  # prompts end at a token boundary
    assert report.num_dropped == 0 and len(features) == 100
    for feat, ex in zip(features, examples):
        n = len(build_prompt_ids(ex, tok))
        assert feat["labels"][:n] == [-100] * n and feat["labels"][n:] == feat["input_ids"][n:]
        assert feat["input_ids"][-1] == tok.eos_token_id
        assert tok.decode(feat["input_ids"][n:-1]) == ex.response
