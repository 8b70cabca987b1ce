from __future__ import annotations

import math

import pytest
import torch

from adaspec.losses import DIVERGENCES, token_divergence


def _softmax(row: list[float], temperature: float) -> list[float]:
    scaled = [x / temperature for x in row]
    top = max(scaled)
    exps = [math.exp(x - top) for x in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def _kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)


def _hand(kind: str, s_row: list[float], t_row: list[float], temperature: float, beta: float):
    q = _softmax(s_row, temperature)
    p = _softmax(t_row, temperature)
    t2 = temperature**2
    if kind == "forward_kl":
        return t2 * _kl(p, q)
    if kind == "reverse_kl":
        return t2 * _kl(q, p)
    if kind == "tv":
        return 0.5 * sum(abs(x - y) for x, y in zip(p, q))
    if beta == 0.0:
        return t2 * _kl(p, q)
    if beta == 1.0:
        return t2 * _kl(q, p)
    m = [beta * x + (1 - beta) * y for x, y in zip(p, q)]
    return t2 * (beta * _kl(p, m) + (1 - beta) * _kl(q, m))


@pytest.mark.parametrize("kind", DIVERGENCES)
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_token_divergence_matches_hand_formula(kind: str, temperature: float) -> None:
    student = torch.randn(2, 3, 7, dtype=torch.float64) * 2
    teacher = torch.randn(2, 3, 7, dtype=torch.float64) * 2
    got = token_divergence(student, teacher, kind, temperature=temperature, beta=0.3)
    assert got.shape == (2, 3) and got.dtype == torch.float32
    for i in range(2):
        for j in range(3):
            want = _hand(kind, student[i, j].tolist(), teacher[i, j].tolist(), temperature, 0.3)
            assert got[i, j].item() == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_token_divergence_jsd_betas(beta: float) -> None:
    student, teacher = torch.randn(5, 11), torch.randn(5, 11)
    got = token_divergence(student, teacher, "jsd", beta=beta)
    for i in range(5):
        want = _hand("jsd", student[i].tolist(), teacher[i].tolist(), 1.0, beta)
        assert got[i].item() == pytest.approx(want, rel=1e-4, abs=1e-6)
    if 0.0 < beta < 1.0:
        # Bounded by the entropy of the mixture weights.
        bound = -(beta * math.log(beta) + (1 - beta) * math.log(1 - beta))
        assert (got <= bound + 1e-6).all()


def test_token_divergence_jsd_edges_are_forward_and_reverse_kl() -> None:
    student, teacher = torch.randn(4, 9), torch.randn(4, 9)
    fwd = token_divergence(student, teacher, "forward_kl")
    rev = token_divergence(student, teacher, "reverse_kl")
    torch.testing.assert_close(token_divergence(student, teacher, "jsd", beta=0.0), fwd)
    torch.testing.assert_close(token_divergence(student, teacher, "jsd", beta=1.0), rev)


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_token_divergence_nonnegative_and_zero_on_equal(kind: str) -> None:
    student, teacher = torch.randn(64, 33) * 3, torch.randn(64, 33) * 3
    assert (token_divergence(student, teacher, kind) >= -1e-6).all()
    same = token_divergence(teacher, teacher.clone(), kind)
    torch.testing.assert_close(same, torch.zeros(64), atol=1e-5, rtol=0)
    if kind == "tv":
        assert (token_divergence(student, teacher, kind) <= 1 + 1e-6).all()


def test_token_divergence_bf16_computed_in_float32() -> None:
    student, teacher = torch.randn(6, 40), torch.randn(6, 40)
    got = token_divergence(student.bfloat16(), teacher.bfloat16())
    want = token_divergence(student.bfloat16().float(), teacher.bfloat16().float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


def test_token_divergence_masked_teacher_entries_contribute_zero() -> None:
    teacher = torch.tensor([[0.0, 1.0, float("-inf")]])
    student = torch.tensor([[0.5, 0.2, 3.0]])
    got = token_divergence(student, teacher, "forward_kl")
    want = _hand("forward_kl", [0.5, 0.2, 3.0], [0.0, 1.0, -1e9], 1.0, 0.5)
    assert torch.isfinite(got).all()
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_token_divergence_gradient_of_forward_kl() -> None:
    student = torch.randn(3, 8, requires_grad=True)
    teacher = torch.randn(3, 8)
    token_divergence(student, teacher, "forward_kl", temperature=2.0).sum().backward()
    # d/dz T^2 KL(p || softmax(z / T)) = T (q - p).
    want = 2.0 * (torch.softmax(student.detach() / 2, -1) - torch.softmax(teacher / 2, -1))
    torch.testing.assert_close(student.grad, want)


def test_token_divergence_rejects_bad_inputs() -> None:
    s = torch.randn(2, 5)
    with pytest.raises(ValueError, match=r"\(2, 5\).*\(2, 6\).*slice"):
        token_divergence(s, torch.randn(2, 6))
    with pytest.raises(ValueError, match="same shape"):
        token_divergence(s, torch.randn(3, 5))
    with pytest.raises(ValueError, match="divergence must be one of"):
        token_divergence(s, s, "kl")
    with pytest.raises(ValueError, match="temperature"):
        token_divergence(s, s, temperature=0.0)
    with pytest.raises(ValueError, match="beta"):
        token_divergence(s, s, "jsd", beta=1.5)
