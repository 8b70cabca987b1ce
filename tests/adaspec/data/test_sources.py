import json

import pytest

from adaspec.data import (
    FORMATTERS,
    DataError,
    default_subset,
    format_records,
    load_records,
    task_for_source,
)

GSM = [
    {"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"}
    for i in range(5)
]


def _write_jsonl(path, rows, extra_lines=()):
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_records_jsonl_keeps_line_numbers(tmp_path):
    path = _write_jsonl(tmp_path / "train.jsonl", GSM)
    records = load_records(path)
    assert [r["_line"] for r in records] == [1, 2, 3, 4, 5]
    assert records[2]["question"] == GSM[2]["question"]
    assert len(load_records(str(path), limit=2)) == 2


def test_jsonl_missing_field_error_names_field_file_and_line(tmp_path):
    rows = GSM[:2] + [{"question": "Where is the answer?"}] + GSM[2:]
    path = _write_jsonl(tmp_path / "broken.jsonl", rows)
    with pytest.raises(DataError) as err:
        format_records(load_records(path), "gsm8k")
    msg = str(err.value)
    assert "'answer'" in msg and "broken.jsonl line 3" in msg and "['question']" in msg


def test_jsonl_bad_json_line_names_file_and_line(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", GSM[:3], extra_lines=['{"question": "x",'])
    with pytest.raises(DataError, match=r"bad\.jsonl line 4: invalid JSON"):
        load_records(path)


def test_json_list_and_dict_sources(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(GSM))
    records = load_records(path)
    assert [r["_line"] for r in records] == list(range(5))
    examples = format_records(records, "gsm8k")
    assert examples[4].meta["answer"] == "5"

    by_split = tmp_path / "splits.json"
    by_split.write_text(json.dumps({"train": GSM[:3], "test": GSM[3:], "version": 1}))
    assert len(load_records(by_split, split="test")) == 2
    with pytest.raises(DataError, match="list-valued keys"):
        load_records(by_split)

    bad = tmp_path / "missing.json"
    bad.write_text(json.dumps([GSM[0], {"answer": "#### 1"}]))
    with pytest.raises(DataError, match=r"missing\.json index 1.*'question'"):
        format_records(load_records(bad), "gsm8k")


def test_parquet_source(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "mbpp.parquet"
    rows = [
        {"text": f"Task {i}.", "code": "pass", "test_list": [f"assert {i}"], "task_id": i}
        for i in range(3)
    ]
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    records = load_records(path)
    assert [r["_line"] for r in records] == [0, 1, 2]
    ex = FORMATTERS["mbpp"](records[1])
    assert ex.meta["test_list"] == ["assert 1"] and ex.meta["task_id"] == 1


def test_folder_source_picks_split_file(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", GSM[:4])
    _write_jsonl(tmp_path / "test.jsonl", GSM[4:])
    assert len(load_records(tmp_path, split="train")) == 4
    assert len(load_records(tmp_path, split="test")) == 1
    with pytest.raises(DataError, match="cannot tell which file"):
        load_records(tmp_path, split="validation")


def test_missing_file_and_unreachable_hub_name_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not exist"):
        load_records(tmp_path / "nope.jsonl")

    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="pass a local .jsonl"):
        load_records("openai/gsm8k", split="train")


def test_hub_source_uses_default_subset(monkeypatch):
    import datasets

    calls = []

    def fake(name, subset, split):
        calls.append((name, subset, split))
        return [{"question": "q", "answer": "#### 1"}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    records = load_records("openai/gsm8k")
    assert calls == [("openai/gsm8k", "main", "train")]
    assert records[0]["_source"] == "openai/gsm8k" and records[0]["_line"] == 0


def test_hub_name_mapping():
    assert task_for_source("openai/gsm8k") == task_for_source("gsm8k") == "gsm8k"
    assert task_for_source("tatsu-lab/alpaca") == "alpaca"
    assert task_for_source("abisee/cnn_dailymail") == "cnn_dailymail"
    assert task_for_source("EdinburghNLP/xsum") == "xsum"
    assert task_for_source("mbpp") == "mbpp"
    assert task_for_source("someone/else") is None
    assert default_subset("gsm8k") == "main" and default_subset("cnn_dailymail") == "3.0.0"


def test_load_records_non_utf8_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"a": "ok"}\n{"a": "caf\xe9"}\n')
    with pytest.raises(DataError, match=rf"{path} line 2: not UTF-8 text.*byte 0xe9"):
        load_records(path)


def test_load_records_non_utf8_json_names_file_and_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_bytes(b'[\n{"a": "ok"},\n{"a": "caf\xe9"}\n]\n')
    with pytest.raises(DataError, match=rf"{path} line 3: not UTF-8 text"):
        load_records(path)


@pytest.mark.parametrize(
    "source", ["./no-such-folder", "/no/such/folder", "~/no-such-dir", "a/b/c"]
)
def test_load_records_mistyped_local_path_does_not_go_to_the_hub(monkeypatch, source):
    import datasets

    def hub(*args, **kwargs):
        raise AssertionError("went to the hub")

    monkeypatch.setattr(datasets, "load_dataset", hub)
    with pytest.raises(DataError, match="does not exist"):
        load_records(source)


def test_load_records_relative_path_under_existing_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="'data/trian' does not exist"):
        load_records("data/trian")
