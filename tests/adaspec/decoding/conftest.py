"""Fixtures of the decoding tests: a G-test for the samplers (no scipy needed)."""

from __future__ import annotations

import pytest
import torch


def g_test(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """p-value of a G-test of ``counts`` against ``probs`` (cells with low expectation pooled).

    Cells whose expected count is below ``min_expected`` are merged into one cell; cells with
    zero probability must have zero counts (else p = 0).
    """
    counts = counts.double().flatten()
    probs = probs.double().flatten()
    if bool((counts[probs <= 0] > 0).any()):
        return 0.0
    n = counts.sum()
    expected = probs * n
    small = expected < min_expected
    obs = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    exp = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    g = 2 * (obs * torch.log(torch.where(obs > 0, obs / exp, torch.ones_like(obs)))).sum()
    dof = obs.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0), g / 2))


@pytest.fixture(name="g_test")
def _g_test_fixture():
    """The G-test p-value function."""
    return g_test
