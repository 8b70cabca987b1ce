import copy

import pytest

from adaspec.data import (
    DataError,
    Example,
    build_prompt_ids,
    get_formatter,
    tokenize_examples,
    use_chat_template,
    user_message,
)

# ChatML-like template over the tiny BPE's special tokens: <|eos|> ends every turn.
TEMPLATE = (
    "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)


@pytest.fixture
def chat_tokenizer(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = TEMPLATE
    return tok


def test_use_chat_template_modes(tiny_tokenizer, chat_tokenizer):
    assert use_chat_template(chat_tokenizer, "auto")
    assert not use_chat_template(chat_tokenizer, "never")
    assert not use_chat_template(tiny_tokenizer, "auto")
    with pytest.raises(DataError, match="no chat template"):
        use_chat_template(tiny_tokenizer, "always")
    with pytest.raises(DataError, match="chat_template must be one of"):
        use_chat_template(chat_tokenizer, "sometimes")


def test_chat_tokenize_masks_prompt_and_ends_with_end_of_turn(chat_tokenizer):
    ex = Example("what is 2 plus 3?\n", "2 plus 3 is 5.")
    (feat,), report = tokenize_examples([ex], chat_tokenizer, 256, chat_template="auto")
    prompt = build_prompt_ids(ex, chat_tokenizer, chat_template="auto")
    expected_prompt = chat_tokenizer.apply_chat_template(
        [{"role": "user", "content": "what is 2 plus 3?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert chat_tokenizer.decode(prompt) == expected_prompt
    n = len(prompt)
    assert feat["input_ids"][:n] == prompt
    assert feat["labels"][:n] == [-100] * n
    response = feat["labels"][n:]
    assert response == feat["input_ids"][n:]
    assert response[-1] == chat_tokenizer.eos_token_id
    assert chat_tokenizer.decode(response[:-1]) == "2 plus 3 is 5."
    assert report.num_separately_tokenized == 0


def test_chat_tokenize_never_keeps_plain_layout(chat_tokenizer, tiny_tokenizer):
    ex = Example("what is 2 plus 3?\n", "2 plus 3 is 5.")
    plain, _ = tokenize_examples([ex], tiny_tokenizer, 256)
    never, _ = tokenize_examples([ex], chat_tokenizer, 256, chat_template="never")
    assert plain == never
    assert build_prompt_ids(ex, chat_tokenizer) == build_prompt_ids(ex, tiny_tokenizer)


def test_chat_user_turn_of_alpaca_leaves_out_the_template():
    ex = get_formatter("alpaca")(
        {"instruction": "Add the numbers.", "input": "2, 3", "output": "5"}
    )
    assert "### Instruction" in ex.prompt
    assert user_message(ex) == "Add the numbers.\n\n2, 3"
    gsm = get_formatter("gsm8k")({"question": "2+3?", "answer": "5\n#### 5"})
    assert user_message(gsm) == gsm.prompt.rstrip()
    xsum = get_formatter("xsum")({"document": "Text.", "summary": "S."})
    assert user_message(xsum) == "Summarize the following article.\n\nText."
