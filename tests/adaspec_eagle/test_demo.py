import copy
import json

import pytest
from helpers import make_tiny_model

from adaspec.config import ConfigError
from adaspec_eagle.cli import main
from adaspec_eagle.demo import DemoConfig

TEMPLATE = (
    "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)


@pytest.fixture
def files(tmp_path, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)  # the session fixture stays without a template
    tok.chat_template = TEMPLATE
    make_tiny_model("llama", seed=1, vocab_size=len(tok)).save_pretrained(tmp_path / "target")
    tok.save_pretrained(tmp_path / "target")
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": f"add {i} and {i + 1}.", "input": "",
                                   "output": str(2 * i + 1)} for i in range(12)]))  # fmt: skip
    mt = tmp_path / "question.jsonl"
    mt.write_text("".join(json.dumps({"question_id": i, "turns": [f"what is {i} plus 1?", "x"]})
                          + "\n" for i in range(40)))  # fmt: skip
    return tmp_path, alpaca, mt


def test_demo_trains_both_heads_and_times_them(files, capsys):
    tmp_path, alpaca, mt = files
    work = tmp_path / "work"
    argv = ["demo", "--set", f"workdir={work}", "--set", f"target={tmp_path / 'target'}",
            "--set", f"alpaca={alpaca}", "--set", f"mt_bench={mt}", "--set", "examples=8",
            "--set", "response_tokens=8", "--set", "epochs=1", "--set", "num_prompts=2",
            "--set", "max_new_tokens=8", "--set", "draft_vocab_size=300"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "eagle3-adaspec" in out and "wall time:" in out
    result = json.loads((work / "demo.json").read_text())
    assert set(result["seconds"]) == {"model", "data", "heads", "bench", "total"}
    rows = {r["method"]: r for r in result["methods"]}
    assert set(rows) == {"vanilla", "eagle3-plain", "eagle3-adaspec"}
    for name in ("eagle3-plain", "eagle3-adaspec"):
        assert rows[name]["identical_to_vanilla"] == 2  # lossless, greedy
        assert rows[name]["tau"] >= 1.0
    assert len((work / "data" / "alpaca-8-greedy.jsonl").read_text().splitlines()) == 8
    # A second call reuses the data, features and heads (no file of theirs is rewritten): only
    # the benchmark runs again.
    reused = [work / "data", *(work / "heads").glob("*/final")]
    before = {f: f.stat().st_mtime_ns for d in reused for f in d.rglob("*") if f.is_file()}
    assert main(argv) == 0
    again = json.loads((work / "demo.json").read_text())
    assert again["heads"] == result["heads"]
    after = {f: f.stat().st_mtime_ns for d in reused for f in d.rglob("*") if f.is_file()}
    assert after == before and any(f.suffix == ".safetensors" for f in before)


def test_demo_config_names_a_missing_data_file(tmp_path):
    with pytest.raises(ConfigError, match="alpaca: .* does not exist"):
        DemoConfig(alpaca=str(tmp_path / "nope.json"))
