import json
import logging

import pytest

from adaspec.config import ConfigError
from adaspec.data import DataConfig, DataError, load_task


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_data_config_defaults_and_checks():
    cfg = DataConfig()
    assert cfg.task == "synthetic" and cfg.max_length == 512
    with pytest.raises(ConfigError, match="task must be one of"):
        DataConfig(task="gsm9k")
    with pytest.raises(ConfigError, match="max_length"):
        DataConfig(max_length=1)
    with pytest.raises(ConfigError, match="max_train_examples"):
        DataConfig(max_train_examples=0)
    with pytest.raises(ConfigError, match="source is required"):
        DataConfig(task="prompt_response")
    with pytest.raises(ConfigError, match="unknown config key 'sorce'"):
        DataConfig.from_dict({"sorce": "x.jsonl"})


def test_load_task_synthetic_train_and_disjoint_eval():
    cfg = DataConfig(num_synthetic_train=300, num_synthetic_eval=40, seed=5)
    train = load_task(cfg, "train")
    held_out = load_task(cfg, "eval")
    assert len(train) == 300 and len(held_out) == 40
    assert not {e.prompt for e in train} & {e.prompt for e in held_out}
    assert [e.prompt for e in load_task(cfg, "train")] == [e.prompt for e in train]
    with pytest.raises(ConfigError, match="'train' or 'eval'"):
        load_task(cfg, "test")


def test_load_task_local_files_with_limits(tmp_path):
    train = _jsonl(
        tmp_path / "train.jsonl",
        [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(10)],
    )
    test = _jsonl(
        tmp_path / "test.jsonl", [{"question": f"t{i}", "answer": f"#### {i}"} for i in range(4)]
    )
    cfg = DataConfig(task="gsm8k", source=train, eval_source=test, max_train_examples=3)
    examples = load_task(cfg, "train")
    assert [e.meta["answer"] for e in examples] == ["0", "1", "2"]
    assert len(load_task(cfg, "eval")) == 4
    # A folder with <split>.jsonl files serves both splits.
    folder_cfg = DataConfig(task="gsm8k", source=str(tmp_path), max_eval_examples=2)
    assert len(load_task(folder_cfg, "train")) == 10
    assert [e.prompt.split("\n")[0] for e in load_task(folder_cfg, "eval")] == ["t0", "t1"]


def test_load_task_warns_when_eval_is_train(tmp_path, caplog):
    path = _jsonl(tmp_path / "all.jsonl", [{"prompt": "p", "response": "r"}])
    cfg = DataConfig(task="prompt_response", source=path)
    with caplog.at_level(logging.WARNING, logger="adaspec.data.config"):
        load_task(cfg, "eval")
    assert "held-out data is the training data" in caplog.text


def test_load_task_mbpp_split_by_task_id(tmp_path):
    rows = [
        {"text": f"task {i}", "code": "pass", "test_list": ["assert True"], "task_id": i}
        for i in (3, 12, 13, 520, 700, 701)
    ]
    path = _jsonl(tmp_path / "mbpp.jsonl", rows)
    cfg = DataConfig(task="mbpp", source=path, split="train", eval_split="test")
    assert [e.meta["task_id"] for e in load_task(cfg, "train")] == [700, 701]
    assert [e.meta["task_id"] for e in load_task(cfg, "eval")] == [12, 13]
    limited = cfg.replace(max_eval_examples=1)
    assert [e.meta["task_id"] for e in load_task(limited, "eval")] == [12]
    empty = _jsonl(tmp_path / "few.jsonl", rows[:1])
    with pytest.raises(DataError, match="no MBPP record has a task_id in 601-974"):
        load_task(cfg.replace(source=empty), "train")


def test_load_task_without_source_uses_hub_name(monkeypatch):
    import datasets

    calls = []

    def fake(name, subset, split):
        calls.append((name, subset, split))
        return [{"question": "q", "answer": "#### 4"}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    examples = load_task(DataConfig(task="gsm8k"), "eval")
    assert calls == [("openai/gsm8k", "main", "test")]
    assert examples[0].meta["answer"] == "4"


def test_load_task_eval_holdout_splits_one_source(tmp_path):
    import json

    from adaspec.data import DataConfig, DataError, load_task

    path = tmp_path / "x.jsonl"
    path.write_text(
        "".join(json.dumps({"document": f"doc {i}", "summary": f"s {i}"}) + "\n" for i in range(10))
    )
    cfg = DataConfig(task="xsum", source=str(path), eval_holdout=3)
    train, held = load_task(cfg, "train"), load_task(cfg, "eval")
    assert [e.response for e in held] == ["s 7", "s 8", "s 9"]
    assert len(train) == 7 and not {e.prompt for e in train} & {e.prompt for e in held}
    with pytest.raises(DataError, match="eval_holdout=10 leaves no training example"):
        load_task(DataConfig(task="xsum", source=str(path), eval_holdout=10), "train")
