import math
from types import SimpleNamespace

import pytest
import torch
from helpers import make_tiny_model

from adaspec.eval.token_acceptance import (
    expected_token_acceptance,
    min_overlap,
    total_variation,
)


class TableLM(torch.nn.Module):
    """Next-token distribution depends only on the current token: logits = log(table[token])."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("log_table", torch.tensor(table, dtype=torch.float64).log())

    def forward(self, input_ids, use_cache=False, **kwargs):
        return SimpleNamespace(logits=self.log_table[input_ids].float())


P = [[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.1, 0.8]]
Q = [[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]]


def test_expected_token_acceptance_hand_computed():
    ids = torch.tensor([[0, 1, 0]])
    mean, per_pos, tv = expected_token_acceptance(
        TableLM(P), TableLM(Q), ids, prompt_len=1, vocab_size=3, return_tv=True
    )
    # position 1 predicted after token 0: min(.5,.2)+min(.3,.3)+min(.2,.5) = 0.7
    # position 2 predicted after token 1: 1/3 + 0.2 + 0.2
    expected = [0.7, 1 / 3 + 0.4]
    assert per_pos.tolist() == pytest.approx(expected, abs=1e-6)
    assert mean == pytest.approx(sum(expected) / 2, abs=1e-6)
    assert tv == pytest.approx(1 - mean, abs=1e-6)


def test_expected_token_acceptance_mask_equals_prompt_len():
    ids = torch.tensor([0, 1, 2, 0, 1])
    by_len = expected_token_acceptance(TableLM(P), TableLM(Q), ids, prompt_len=2, vocab_size=3)
    mask = torch.tensor([0, 0, 1, 1, 1], dtype=torch.bool)
    by_mask = expected_token_acceptance(
        TableLM(P), TableLM(Q), ids, response_mask=mask, vocab_size=3
    )
    assert by_len[0] == pytest.approx(by_mask[0])
    assert torch.allclose(by_len[1], by_mask[1])
    assert by_len[1].shape == (3,)


def test_expected_token_acceptance_identical_models_is_one(family):
    target = make_tiny_model(family, seed=3)
    draft = make_tiny_model(family, seed=3)
    ids = torch.randint(3, 256, (1, 12))
    mean, per_pos = expected_token_acceptance(target, draft, ids, prompt_len=5)
    assert mean == pytest.approx(1.0, abs=1e-5)
    assert per_pos.shape == (7,)


def test_expected_token_acceptance_different_models_below_one():
    target = make_tiny_model(seed=0)
    draft = make_tiny_model(seed=1)
    ids = torch.randint(3, 256, (2, 10))
    mean, per_pos = expected_token_acceptance(target, draft, ids, prompt_len=4)
    assert 0.0 < mean < 1.0
    assert per_pos.shape == (12,)
    ref = min_overlap(target(ids).logits[:, 3:-1], draft(ids).logits[:, 3:-1]).flatten()
    assert torch.allclose(per_pos, ref, atol=1e-5)


def test_expected_token_acceptance_slices_shared_vocabulary():
    target = make_tiny_model(seed=0, vocab_size=256)
    draft = make_tiny_model(seed=1, vocab_size=264)  # padded embedding rows
    ids = torch.randint(3, 256, (1, 8))
    mean, _ = expected_token_acceptance(target, draft, ids, prompt_len=3)
    explicit, _ = expected_token_acceptance(target, draft, ids, prompt_len=3, vocab_size=256)
    assert mean == pytest.approx(explicit)


def test_expected_token_acceptance_argument_errors():
    ids = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="exactly one"):
        expected_token_acceptance(TableLM(P), TableLM(Q), ids, vocab_size=3)
    with pytest.raises(ValueError, match="prompt_len"):
        expected_token_acceptance(TableLM(P), TableLM(Q), ids, prompt_len=0, vocab_size=3)
    mean, per_pos = expected_token_acceptance(
        TableLM(P), TableLM(Q), ids, response_mask=torch.zeros(1, 3), vocab_size=3
    )
    assert math.isnan(mean) and per_pos.numel() == 0


def test_total_variation_is_one_minus_overlap():
    a, b = torch.randn(4, 7), torch.randn(4, 7)
    assert torch.allclose(total_variation(a, b), 1 - min_overlap(a, b), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        min_overlap(a, b[:, :5])


def test_expected_token_acceptance_reuses_target_logits():
    from adaspec.eval.token_acceptance import scored_logits

    target = make_tiny_model(seed=0)
    draft = make_tiny_model(seed=1)
    ids = torch.randint(3, 256, (1, 9))
    t_logits = scored_logits(target, ids, 4, 256)
    assert t_logits.shape == (1, 5, 256)
    reused = expected_token_acceptance(target, draft, ids, prompt_len=4, target_logits=t_logits)
    fresh = expected_token_acceptance(target, draft, ids, prompt_len=4)
    assert torch.allclose(reused[1], fresh[1])
    with pytest.raises(ValueError, match="scored positions"):
        expected_token_acceptance(target, draft, ids, prompt_len=3, target_logits=t_logits)
