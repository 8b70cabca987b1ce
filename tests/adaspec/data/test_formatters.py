import pytest

from adaspec.data import FORMATTERS, DataError, format_records, get_formatter, mbpp_split


def test_gsm8k_formatter_exact_official_strings():
    record = {
        "question": "Tom has 1,200 apples and buys 3 more. How many?",
        "answer": "He has 1200 + 3 = <<1200+3=1203>>1203.\n#### 1,203",
    }
    ex = FORMATTERS["gsm8k"](record)
    assert ex.prompt == (
        "Tom has 1,200 apples and buys 3 more. How many?\nAnswer the above question. "
        "First think step by step and then answer the final number.\n"
    )
    assert ex.response == ("He has 1200 + 3 = <<1200+3=1203>>1203.\nThe final answer is:  1,203")
    assert ex.meta["answer"] == "1203"
    assert "####" not in ex.response and "<|" not in ex.response


def test_gsm8k_formatter_without_final_line_raises():
    with pytest.raises(DataError, match="####"):
        FORMATTERS["gsm8k"]({"question": "q", "answer": "no final line"})


def test_alpaca_formatter_with_and_without_input():
    with_input = FORMATTERS["alpaca"](
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    )
    assert with_input.prompt == (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n"
    )
    assert with_input.response == "5"
    no_input = FORMATTERS["alpaca"]({"instruction": "Say hi.", "input": "", "output": "Hi"})
    assert no_input.prompt == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n"
    )
    # The input field is optional.
    assert (
        FORMATTERS["alpaca"]({"instruction": "Say hi.", "output": "Hi"}).prompt == no_input.prompt
    )


def test_mbpp_formatter_prompt_tests_and_meta():
    record = {
        "text": "Write a function to add two numbers.",
        "code": "def add(a, b):\r\n\treturn a + b",
        "task_id": 605,
        "test_setup_code": "",
        "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
        "challenge_test_list": [],
    }
    ex = FORMATTERS["mbpp"](record)
    assert ex.prompt == (
        "You are an expert Python programmer, and here is your task: Write a function to add two "
        "numbers. Your code should pass these tests:\n\n"
        "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"
    )
    assert ex.response == "def add(a, b):\n\treturn a + b"
    assert ex.meta["test_list"] == record["test_list"]
    assert ex.meta["task_id"] == 605 and ex.meta["test_setup_code"] == ""


def test_mbpp_split_by_task_id():
    records = [{"task_id": i} for i in range(1, 975)]
    sizes = {s: len(mbpp_split(records, s)) for s in ("prompt", "test", "validation", "train")}
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    assert [r["task_id"] for r in mbpp_split(records, "test")][:2] == [11, 12]
    with pytest.raises(DataError, match="unknown MBPP split"):
        mbpp_split(records, "dev")
    with pytest.raises(DataError, match="task_id"):
        mbpp_split([{"text": "x"}], "test")


@pytest.mark.parametrize(
    ("task", "record", "text", "summary"),
    [
        (
            "xsum",
            {"document": " The cat sat. ", "summary": "Cat sits.", "id": "7"},
            "The cat sat.",
            "Cat sits.",
        ),
        (
            "cnn_dailymail",
            {"article": "Rain fell.", "highlights": "Rain.\nWet."},
            "Rain fell.",
            "Rain.\nWet.",
        ),
    ],
)
def test_summary_formatters(task, record, text, summary):
    ex = FORMATTERS[task](record)
    assert ex.prompt == f"Summarize the following article.\n\n{text}\n\nSummary:\n"
    assert ex.response == summary and ex.meta["reference"] == summary


def test_prompt_response_formatter_configurable_fields():
    fmt = get_formatter("prompt_response", prompt_field="q", response_field="a")
    ex = fmt({"q": "2+2=", "a": "4", "level": 1})
    assert (ex.prompt, ex.response, ex.meta) == ("2+2=", "4", {"level": 1})
    with pytest.raises(DataError, match=r"'a'.*fields present: \['level', 'q'\]"):
        fmt({"q": "2+2=", "level": 1})


def test_formatter_missing_field_names_field_file_and_line():
    record = {"question": "q", "_source": "/tmp/x/train.jsonl", "_line": 4}
    with pytest.raises(DataError) as err:
        FORMATTERS["gsm8k"](record)
    msg = str(err.value)
    assert "'answer'" in msg and "train.jsonl line 4" in msg and "['question']" in msg


def test_formatter_wrong_type_is_reported():
    with pytest.raises(DataError, match="test_list.*must be"):
        FORMATTERS["mbpp"]({"text": "t", "code": "c", "test_list": "assert 1"})


def test_unknown_task_lists_valid_ones():
    with pytest.raises(DataError, match="valid tasks"):
        get_formatter("gsm9k")
    assert len(format_records([{"prompt": "a", "response": "b"}], "synthetic")) == 1
