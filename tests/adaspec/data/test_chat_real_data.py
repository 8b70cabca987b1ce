"""The real Alpaca subset, GSM8K and MBPP as SmolLM2 conversations (skipped without them)."""

import os
from pathlib import Path

import pytest

from adaspec.data import DataConfig, load_task, tokenize_examples, user_message

REPO_ROOT = Path(__file__).resolve().parents[3]
DATA_DIR = Path(os.environ.get("ADASPEC_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
SOURCES = {
    "alpaca": "alpaca/alpaca_5000.json",
    "gsm8k": "gsm8k/train.jsonl",
    "mbpp": "mbpp/mbpp.jsonl",
}


@pytest.mark.parametrize("task", sorted(SOURCES))
def test_real_data_as_smollm2_conversations(task, smollm2_dir):
    from adaspec.modeling import load_tokenizer

    path = DATA_DIR / SOURCES[task]
    if not path.exists():
        pytest.skip(
            f"real data not found at {path} (set ADASPEC_DATA_DIR to the shared data folder)"
        )
    cfg = DataConfig(task=task, source=str(path), max_train_examples=8, max_length=1024)
    examples = load_task(cfg, "train")
    tok = load_tokenizer(str(smollm2_dir))
    feats, report = tokenize_examples(examples, tok, 1024, chat_template=cfg.chat_template)
    assert len(feats) == 8 and report.num_separately_tokenized == 0
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    for ex, feat in zip(examples, feats):
        response = [t for t, lab in zip(feat["input_ids"], feat["labels"]) if lab != -100]
        assert response[-1] == im_end
        assert tok.decode(response[:-1]) == ex.response
        prompt = tok.decode(feat["input_ids"][: len(feat["input_ids"]) - len(response)])
        assert prompt.endswith(
            f"<|im_start|>user\n{user_message(ex)}<|im_end|>\n<|im_start|>assistant\n"
        )
        assert "### Instruction" not in prompt
