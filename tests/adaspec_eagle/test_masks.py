import torch

from adaspec_eagle.masks import collate


def test_collate_right_pads_tokens_and_features():
    feats = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "loss_mask": [0, 1, 1],
         "hidden": torch.ones(3, 2)},
        {"input_ids": [8], "attention_mask": [1], "loss_mask": [1], "hidden": torch.full((1, 2), 2.0)},
    ]  # fmt: skip
    batch = collate(feats, pad_id=9)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["loss_mask"].tolist() == [[0, 1, 1], [1, 0, 0]]
    assert batch["hidden"].shape == (2, 3, 2)
    assert batch["hidden"][1].tolist() == [[2.0, 2.0], [0.0, 0.0], [0.0, 0.0]]
    assert "aux" not in batch and batch["input_ids"].dtype == torch.long
