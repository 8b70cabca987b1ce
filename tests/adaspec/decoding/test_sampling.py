import pytest
import torch

from adaspec.config import ConfigError
from adaspec.decoding.sampling import (
    SamplingConfig,
    logits_to_probs,
    sample,
    sample_without_replacement,
)


def test_logits_to_probs_top_p_and_top_k(g_test):
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    p = logits_to_probs(logits, SamplingConfig(temperature=1.0, top_p=0.7))
    assert torch.allclose(p, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    p = logits_to_probs(logits, SamplingConfig(temperature=1.0, top_k=3))
    assert torch.allclose(p, torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95)
    p = logits_to_probs(logits, SamplingConfig(temperature=0.5))
    assert torch.allclose(p, torch.softmax(logits / 0.5, -1))


def test_sampling_config_rejects_bad_values(g_test):
    with pytest.raises(ConfigError, match="top_p"):
        SamplingConfig(temperature=1.0, top_p=0.0)
    with pytest.raises(ConfigError, match="temperature"):
        SamplingConfig(temperature=-1.0)
    assert SamplingConfig().greedy and not SamplingConfig(temperature=0.7).greedy


def test_sample_matches_distribution_and_skips_zeros(g_test):
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    draws = sample(probs[None].repeat(4000, 1), gen)
    counts = torch.bincount(draws, minlength=4)
    assert counts[1] == 0
    assert g_test(counts, probs) > 1e-3


def test_sample_without_replacement_second_draw_law(g_test):
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0])
    toks, valid = sample_without_replacement(probs[None].repeat(4000, 1), 2, gen)
    assert bool(valid.all()) and bool((toks[:, 0] != toks[:, 1]).all())
    joint = torch.zeros(5, 5)
    joint.index_put_((toks[:, 0], toks[:, 1]), torch.ones(4000), accumulate=True)
    expected = probs[:, None] * probs[None, :] / (1 - probs[:, None])
    expected.fill_diagonal_(0)
    assert g_test(joint, expected) > 1e-3
    # past the support: invalid
    _, valid = sample_without_replacement(probs[None], 5, gen)
    assert valid.sum() == 4
