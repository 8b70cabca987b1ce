import copy

from helpers import make_tiny_model

from adaspec.data import DataConfig, Example, build_prompt_ids
from adaspec.eval import EvalConfig, evaluate_models
from adaspec.eval.evaluate import eval_chat_mode

TEMPLATE = (
    "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)


def test_evaluate_models_prompts_through_chat_template_and_records_it(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = TEMPLATE
    target = make_tiny_model("llama", seed=1, vocab_size=len(tok))
    draft = make_tiny_model("llama", seed=2, vocab_size=len(tok))
    examples = [Example("what is 2 plus 3?\n", "5")]
    kw = dict(gamma=2, max_new_tokens=6, quality=False, progress=False, warmup=False)
    chat = evaluate_models(target, {"d": draft}, tok, examples, chat_template="auto", **kw)
    plain = evaluate_models(target, {"d": draft}, tok, examples, chat_template="never", **kw)
    assert chat["settings"]["chat_template"] is True
    assert plain["settings"]["chat_template"] is False
    assert chat["samples"][0]["prompt_tokens"] == len(build_prompt_ids(examples[0], tok, "always"))
    assert plain["samples"][0]["prompt_tokens"] == len(build_prompt_ids(examples[0], tok))
    assert chat["samples"][0]["drafts"]["d"]["identical_to_target"]


def test_eval_chat_mode_defaults_to_data_then_auto():
    assert eval_chat_mode(EvalConfig(source="x.jsonl")) == "auto"
    data = DataConfig(task="gsm8k", source="x.jsonl", chat_template="never")
    assert eval_chat_mode(EvalConfig(data=data)) == "never"
    assert eval_chat_mode(EvalConfig(data=data, chat_template="always")) == "always"
