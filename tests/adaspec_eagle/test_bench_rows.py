import copy
import json

import pytest
from helpers import make_tiny_model

from adaspec.config import ConfigError
from adaspec.decoding.decoder import StepRecord
from adaspec_eagle.bench import _summarize, load_prompts, run_benchmark
from adaspec_eagle.bench_config import BenchConfig, BenchMethod

TEMPLATE = (
    "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)


def _write_prompts(path, turns):
    path.write_text(
        "".join(json.dumps({"question_id": i, "turns": t}) + "\n" for i, t in enumerate(turns))
    )
    return path


@pytest.fixture
def target_dir(tmp_path, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = TEMPLATE
    make_tiny_model("llama", seed=1, vocab_size=len(tok)).save_pretrained(tmp_path / "target")
    tok.save_pretrained(tmp_path / "target")
    return tmp_path / "target"


def _bench(tmp_path, target_dir, methods, **kw):
    prompts = _write_prompts(
        tmp_path / "mt.jsonl", [["what is 2 plus 3? what is 2 plus 3?", "x"], ["add 7 and 1.", "y"]]
    )
    return run_benchmark(
        BenchConfig(
            target=str(target_dir),
            prompts=str(prompts),
            num_prompts=2,
            max_new_tokens=10,
            warmup=0,
            output_dir=str(tmp_path / "out"),
            methods=methods,
            **kw,
        )
    )


def test_bench_prompt_lookup_and_bf16_rows_with_pooled_and_per_request_tau(tmp_path, target_dir):
    result = _bench(
        tmp_path,
        target_dir,
        [
            {"name": "vanilla", "kind": "vanilla"},
            {"name": "vanilla-bf16", "kind": "vanilla", "dtype": "bfloat16"},
            {"name": "lookup", "kind": "prompt_lookup", "prompt_lookup_num_tokens": 3},
        ],
    )
    rows = {r["method"]: r for r in result["methods"]}
    assert rows["vanilla"]["speedup"] == pytest.approx(1.0)
    assert rows["vanilla"]["tau"] == 1.0 and rows["vanilla"]["tau_per_request"] == 1.0
    assert rows["vanilla-bf16"]["dtype"] == "bfloat16" and rows["vanilla-bf16"]["tau"] == 1.0
    assert rows["vanilla-bf16"]["speedup"] is not None
    assert rows["lookup"]["identical_to_vanilla"] == 2
    assert rows["lookup"]["tau"] >= 1.0 and rows["lookup"]["tau_per_request"] >= 1.0
    assert "τ per request" in (tmp_path / "out" / "bench.md").read_text()


def test_bench_prompts_go_through_chat_template_unless_turned_off(tmp_path, target_dir):
    methods = [{"name": "vanilla", "kind": "vanilla"}]
    chat = _bench(tmp_path, target_dir, methods)
    plain = _bench(tmp_path, target_dir, methods, chat_template="never")
    assert chat["chat_template"] is True and plain["chat_template"] is False
    assert chat["prompt_tokens"] > plain["prompt_tokens"]
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert saved["chat_template"] is False


def test_summarize_tau_pooled_and_per_request_differ():
    method = BenchMethod(name="chain", kind="speculative")
    runs = [
        {"tokens": [1] * 10, "seconds": 1.0, "forwards": 10, "steps": [_step()] * 10},
        {"tokens": [1] * 30, "seconds": 1.0, "forwards": 6, "steps": [_step()] * 6},
    ]
    row = _summarize(method, runs, None)
    assert row["tau"] == pytest.approx(40 / 16)
    assert row["tau_per_request"] == pytest.approx((1 + 5) / 2)


def _step():
    return StepRecord(3, 3, 1, 2, None, None, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("turns", [[], None, "a question", [""], [3]])
def test_bench_prompts_with_bad_turns_name_file_line_and_field(tmp_path, turns):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"turns": ["fine"]}) + "\n" + json.dumps({"turns": turns}) + "\n")
    config = BenchConfig(
        target="t",
        prompts=str(path),
        num_prompts=5,
        methods=[{"name": "vanilla", "kind": "vanilla"}],
    )
    with pytest.raises(ValueError, match=r"q\.jsonl line 2: field 'turns'"):
        load_prompts(config)


def test_bench_method_dtype_only_on_generate_rows():
    with pytest.raises(ConfigError, match="dtype is for vanilla"):
        BenchMethod(name="c", kind="speculative", dtype="bfloat16")
    with pytest.raises(ConfigError, match="dtype"):
        BenchMethod(name="v", kind="vanilla", dtype="int8")
