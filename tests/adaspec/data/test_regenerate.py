import copy
import json

import pytest
import torch
from helpers import make_tiny_model

from adaspec.cli import main
from adaspec.data import DataConfig, DataError, build_prompt_ids, load_task, response_source
from adaspec.data.regenerate import RegenerateConfig, regenerate

TEMPLATE = (
    "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)
DATA = {"task": "synthetic", "num_synthetic_train": 6, "num_synthetic_eval": 2, "max_length": 96}


@pytest.fixture
def target_dir(tmp_path, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = TEMPLATE
    model = make_tiny_model("llama", seed=3)
    folder = tmp_path / "target"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _config(target_dir, tmp_path, **kw):
    data = {
        "target": str(target_dir),
        "data": DATA,
        "output": str(tmp_path / "gen.jsonl"),
        "batch_size": 4,
        "max_new_tokens": 6,
        **kw,
    }
    return RegenerateConfig.from_dict(data)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_regenerate_writes_target_greedy_responses_with_settings(target_dir, tmp_path):
    from adaspec.modeling import load_model, load_tokenizer

    cfg = _config(target_dir, tmp_path)
    result = regenerate(cfg)
    assert result["generated"] == 6 and result["skipped"] == 0
    records = _lines(tmp_path / "gen.jsonl")
    assert len(records) == 6
    assert records[0]["chat_template"] is True
    assert records[0]["generation"]["do_sample"] is False
    assert records[0]["model"]["path"] == str(target_dir)
    # the longest prompt of the first batch has no padding: its response is plain greedy decoding
    model, tok = load_model(str(target_dir)).eval(), load_tokenizer(str(target_dir))
    examples = load_task(DataConfig.from_dict(DATA), "train")
    prompts = [build_prompt_ids(e, tok, "auto") for e in examples[:4]]
    i = max(range(4), key=lambda j: len(prompts[j]))
    ids = torch.tensor([prompts[i]])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=6,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )[0, ids.shape[1] :].tolist()
    assert records[i]["new_tokens"] == len(out)
    expected = tok.decode(
        out[:-1] if out[-1] == tok.eos_token_id else out, skip_special_tokens=True
    )
    assert records[i]["response"] == expected
    assert records[i]["gold_response"] == examples[i].response


def test_regenerate_resumes_after_interrupted_write_and_sampling_is_reproducible(
    target_dir, tmp_path
):
    cfg = _config(target_dir, tmp_path, temperature=1.0, seed=5)
    regenerate(cfg)
    path = tmp_path / "gen.jsonl"
    full = path.read_text().splitlines()
    path.write_text("\n".join(full[:3]) + "\n" + full[3][: len(full[3]) // 2])  # cut mid-line
    result = regenerate(cfg)
    assert result["skipped"] == 3 and result["generated"] == 3
    assert path.read_text().splitlines() == full
    assert regenerate(cfg)["generated"] == 0  # a third call has nothing to do


def test_regenerate_refuses_other_settings(target_dir, tmp_path):
    regenerate(_config(target_dir, tmp_path))
    with pytest.raises(DataError, match="other settings.*generation"):
        regenerate(_config(target_dir, tmp_path, max_new_tokens=7))


def test_generated_responses_replace_gold_in_training_data(target_dir, tmp_path):
    regenerate(_config(target_dir, tmp_path))
    records = _lines(tmp_path / "gen.jsonl")
    cfg = DataConfig.from_dict({**DATA, "generated_responses": str(tmp_path / "gen.jsonl")})
    train = load_task(cfg, "train")
    assert [e.response for e in train] == [r["response"] for r in records]
    assert [e.meta["gold_response"] for e in train] == [r["gold_response"] for r in records]
    assert load_task(cfg, "eval") == load_task(DataConfig.from_dict(DATA), "eval")
    source = response_source(cfg)
    assert source["responses"] == "generated" and source["records"] == 6
    more = DataConfig.from_dict(
        {**DATA, "num_synthetic_train": 9, "generated_responses": str(tmp_path / "gen.jsonl")}
    )
    with pytest.raises(DataError, match="3 of 9 training examples have no response"):
        load_task(more, "train")


def test_cli_data_regenerate_with_flags(target_dir, tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    args = [
        "data",
        "regenerate",
        "--target",
        str(target_dir),
        "--task",
        "synthetic",
        "--output",
        str(out),
        "--max-new-tokens",
        "4",
        "--chat-template",
        "never",
        "--set",
        "data.num_synthetic_train=3",
    ]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["generated"] == 3
    assert [r["chat_template"] for r in _lines(out)] == [False] * 3
    assert main(["data", "regenerate", "--task", "synthetic", "--output", str(out)]) == 2
    assert "target is empty" in capsys.readouterr().err
