import pytest
import torch

from adaspec.data import (
    IGNORE_INDEX,
    DataCollatorForCompletion,
    DataError,
    Example,
    tokenize_examples,
)

FEATURES = [
    {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
    {"input_ids": [8, 9], "attention_mask": [1, 1], "labels": [-100, 9]},
]


def test_collator_pads_right_with_pad_id_and_ignore_labels(tiny_tokenizer):
    batch = DataCollatorForCompletion(tiny_tokenizer)(FEATURES)
    pad = tiny_tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [-100, 9, IGNORE_INDEX]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_collator_pad_to_multiple_and_left_padding():
    batch = DataCollatorForCompletion(pad_token_id=0, pad_to_multiple_of=4)(FEATURES)
    assert batch["input_ids"].shape == (2, 4)
    assert batch["labels"][1].tolist() == [-100, 9, -100, -100]
    left = DataCollatorForCompletion(pad_token_id=0, padding_side="left")(FEATURES)
    assert left["input_ids"][1].tolist() == [0, 8, 9]
    assert left["attention_mask"][1].tolist() == [0, 1, 1]
    assert left["labels"][1].tolist() == [-100, -100, 9]


def test_collator_falls_back_to_eos_and_refuses_no_pad():
    class Tok:
        pad_token_id = None
        eos_token_id = 7

    assert DataCollatorForCompletion(Tok()).pad_token_id == 7
    Tok.eos_token_id = None
    with pytest.raises(DataError, match="pad"):
        DataCollatorForCompletion(Tok())


def test_collator_on_tokenized_examples_and_tensors(tiny_tokenizer):
    examples = [Example("Question: 1 plus 2?\n", "3", {}), Example("Q\n", "longer answer", {})]
    features, _ = tokenize_examples(examples, tiny_tokenizer, max_length=128)
    batch = DataCollatorForCompletion(tiny_tokenizer)(
        [{k: torch.tensor(v) for k, v in f.items()} for f in features]
    )
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths == [len(f["input_ids"]) for f in features]
    # Labels on real positions are the tokenized labels; padded positions are ignored.
    for row, f in enumerate(features):
        n = len(f["labels"])
        assert batch["labels"][row, :n].tolist() == f["labels"]
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()


def test_collator_rejects_mismatched_labels():
    with pytest.raises(DataError, match="differ in length"):
        DataCollatorForCompletion(pad_token_id=0)([{"input_ids": [1, 2], "labels": [1]}])
