from __future__ import annotations

import pytest
import torch

from adaspec.losses import reduce_token_loss


def test_reduce_token_loss_sum_divides_by_num_items() -> None:
    per_token = torch.tensor([1.0, 2.0, 3.0, 4.0])
    kept = torch.tensor([True, False, True, False])
    assert reduce_token_loss(per_token, kept, 8).item() == pytest.approx(0.5)
    assert reduce_token_loss(per_token, kept, torch.tensor(8)).item() == pytest.approx(0.5)
    assert reduce_token_loss(per_token, kept, num_valid=4).item() == pytest.approx(1.0)
    # num_items_in_batch wins over num_valid.
    assert reduce_token_loss(per_token, kept, 2, num_valid=4).item() == pytest.approx(2.0)


def test_reduce_token_loss_mean_over_kept() -> None:
    per_token = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    kept = torch.tensor([[True, False], [False, True]])
    assert reduce_token_loss(per_token, kept, reduction="mean").item() == pytest.approx(3.0)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reduce_token_loss_zero_kept_is_zero_and_backpropagates(reduction: str) -> None:
    per_token = torch.tensor([float("inf"), float("nan"), 1.0], requires_grad=True)
    kept = torch.zeros(3, dtype=torch.bool)
    loss = reduce_token_loss(per_token, kept, 0 if reduction == "sum" else None, reduction)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(per_token.grad, torch.zeros(3))


def test_reduce_token_loss_unkept_get_exactly_zero_grad() -> None:
    per_token = torch.tensor([1.0, float("nan"), 2.0], requires_grad=True)
    kept = torch.tensor([True, False, True])
    reduce_token_loss(per_token, kept, 4).backward()
    assert torch.equal(per_token.grad, torch.tensor([0.25, 0.0, 0.25]))


def test_reduce_token_loss_rejects_bad_inputs() -> None:
    per_token, kept = torch.ones(3), torch.ones(3, dtype=torch.bool)
    with pytest.raises(ValueError, match="num_items_in_batch"):
        reduce_token_loss(per_token, kept)
    with pytest.raises(ValueError, match="reduction must be one of"):
        reduce_token_loss(per_token, kept, 3, reduction="none")
    with pytest.raises(ValueError, match="same shape"):
        reduce_token_loss(per_token, kept[:2], 3)
    with pytest.raises(ValueError, match=">= 0"):
        reduce_token_loss(per_token, kept, -1)
