from __future__ import annotations

import math

import pytest
import torch

from adaspec.losses import (
    AdaSPECLoss,
    SelectiveLossSettings,
    adaspec_token_loss,
    shift_for_causal_lm,
)


def _log_softmax(row: list[float]) -> list[float]:
    top = max(row)
    lse = top + math.log(sum(math.exp(x - top) for x in row))
    return [x - lse for x in row]


def _kl_rows(teacher: torch.Tensor, student: torch.Tensor) -> list[float]:
    out = []
    for t_row, s_row in zip(teacher.tolist(), student.tolist()):
        log_p, log_q = _log_softmax(t_row), _log_softmax(s_row)
        out.append(sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q)))
    return out


def _reference_loss(draft, target, ref, valid, k, num_items=None, reduction="sum"):
    """Official AdaSPEC snippet, written plainly: per-token loops and torch.quantile."""
    idx = [i for i, v in enumerate(valid.reshape(-1).tolist()) if v]
    vsz = draft.shape[-1]
    d = draft.reshape(-1, vsz)[idx].double()
    t = target.reshape(-1, vsz)[idx].double()
    actual = torch.tensor(_kl_rows(t, d), dtype=torch.float64)
    if ref is not None:
        r = ref.reshape(-1, vsz)[idx].double()
        delta = actual - torch.tensor(_kl_rows(t, r), dtype=torch.float64)
        mask = delta >= torch.quantile(delta, 1 - k)
    else:
        mask = torch.ones(len(idx), dtype=torch.bool)
    kept = actual[mask]
    if reduction == "mean":
        return kept.mean().item()
    return kept.sum().item() / (num_items if num_items is not None else len(idx))


@pytest.mark.parametrize("k", [0.4, 0.15, 0.6, 1.0])
@pytest.mark.parametrize("shape", [(2, 7, 13), (3, 5, 31), (17, 9)])
def test_adaspec_token_loss_matches_reference(k: float, shape: tuple[int, ...]) -> None:
    draft, target, ref = (torch.randn(shape) * 2 for _ in range(3))
    valid = torch.rand(shape[:-1]) > 0.3
    out = adaspec_token_loss(draft, target, ref, valid, SelectiveLossSettings(k=k))
    want = _reference_loss(draft, target, ref, valid, k)
    assert out.loss.item() == pytest.approx(want, rel=1e-5)
    out_acc = adaspec_token_loss(
        draft, target, ref, valid, SelectiveLossSettings(k=k), num_items_in_batch=100
    )
    want_acc = _reference_loss(draft, target, ref, valid, k, num_items=100)
    assert out_acc.loss.item() == pytest.approx(want_acc, rel=1e-5)
    out_mean = adaspec_token_loss(
        draft, target, ref, valid, SelectiveLossSettings(k=k, reduction="mean")
    )
    want_mean = _reference_loss(draft, target, ref, valid, k, reduction="mean")
    assert out_mean.loss.item() == pytest.approx(want_mean, rel=1e-5)
    assert out.kept.shape == valid.shape and out.per_token.shape == valid.shape


def test_adaspec_token_loss_bf16_matches_float32_of_same_values() -> None:
    draft, target, ref = (torch.randn(4, 6, 20).bfloat16() for _ in range(3))
    valid = torch.rand(4, 6) > 0.2
    got = adaspec_token_loss(draft, target, ref, valid, SelectiveLossSettings())
    want = adaspec_token_loss(
        draft.float(), target.float(), ref.float(), valid, SelectiveLossSettings()
    )
    assert got.loss.dtype == torch.float32
    torch.testing.assert_close(got.loss, want.loss)


def test_adaspec_token_loss_k1_and_no_ref_equal_plain_kd() -> None:
    draft, target, ref = (torch.randn(3, 8, 16) for _ in range(3))
    valid = torch.rand(3, 8) > 0.3
    plain_kd = _reference_loss(draft, target, None, valid, 1.0)
    for r, k in ((ref, 1.0), (None, 1.0), (None, 0.4)):
        out = adaspec_token_loss(draft, target, r, valid, SelectiveLossSettings(k=k))
        assert out.loss.item() == pytest.approx(plain_kd, rel=1e-5)
        assert torch.equal(out.kept, valid)
    no_ref = adaspec_token_loss(draft, target, None, valid, SelectiveLossSettings())
    assert no_ref.delta is None and math.isnan(no_ref.stats["mean_ref_loss"])


def test_adaspec_token_loss_gradient_only_on_kept_tokens() -> None:
    draft = torch.randn(3, 10, 12, requires_grad=True)
    target, ref = torch.randn(3, 10, 12, requires_grad=True), torch.randn(3, 10, 12)
    valid = torch.rand(3, 10) > 0.3
    valid[0, :] = True
    draft_garbage = draft.detach().clone()
    out = adaspec_token_loss(draft, target, ref, valid, SelectiveLossSettings(k=0.4))
    out.loss.backward()
    row_grad = draft.grad.abs().sum(-1)
    assert (row_grad[~out.kept] == 0).all()
    assert (row_grad[~valid] == 0).all()
    assert (row_grad[out.kept] > 0).all()
    assert 0 < out.kept.sum() < valid.sum()
    assert target.grad is None  # the target is detached
    assert torch.equal(draft.detach(), draft_garbage)


def test_adaspec_token_loss_no_response_tokens_is_zero_with_backward() -> None:
    draft = torch.randn(2, 5, 9, requires_grad=True)
    valid = torch.zeros(2, 5, dtype=torch.bool)
    for num_items in (None, 0, 7):
        out = adaspec_token_loss(
            draft,
            torch.randn(2, 5, 9),
            torch.randn(2, 5, 9),
            valid,
            SelectiveLossSettings(),
            num_items_in_batch=num_items,
        )
        assert out.loss.item() == 0.0 and not torch.isnan(out.loss)
        out.loss.backward()
        assert torch.equal(draft.grad, torch.zeros_like(draft))
        assert out.stats["num_valid"] == 0 and out.stats["kept_fraction"] == 0.0


def test_adaspec_token_loss_invalid_rows_may_hold_garbage() -> None:
    draft, target, ref = (torch.randn(2, 6, 8) for _ in range(3))
    valid = torch.rand(2, 6) > 0.4
    clean = adaspec_token_loss(draft, target, ref, valid, SelectiveLossSettings())
    for t in (draft, target, ref):
        t[~valid] = float("nan")
    dirty = adaspec_token_loss(draft, target, ref, valid, SelectiveLossSettings())
    torch.testing.assert_close(dirty.loss, clean.loss)


def test_adaspec_token_loss_stats() -> None:
    draft, target, ref = (torch.randn(4, 25, 10) for _ in range(3))
    valid = torch.rand(4, 25) > 0.2
    out = adaspec_token_loss(draft, target, ref, valid, SelectiveLossSettings())
    n = valid.sum().item()
    assert out.stats["num_valid"] == n and out.stats["num_kept"] == out.kept.sum().item()
    assert out.stats["kept_fraction"] == pytest.approx(out.kept.sum().item() / n)
    assert out.stats["mean_delta"] == pytest.approx(out.delta[valid].mean().item(), rel=1e-5)
    assert out.stats["mean_draft_loss"] == pytest.approx(
        out.per_token[valid].mean().item(), rel=1e-5
    )
    assert set(out.stats) == {
        "kept_fraction",
        "mean_delta",
        "mean_draft_loss",
        "mean_ref_loss",
        "num_valid",
        "num_kept",
    }


def test_adaspec_token_loss_sequence_scope() -> None:
    draft, target, ref = (torch.randn(3, 12, 10) for _ in range(3))
    valid = torch.rand(3, 12) > 0.2
    out = adaspec_token_loss(draft, target, ref, valid, SelectiveLossSettings(scope="sequence"))
    for b in range(3):
        thr = torch.quantile(out.delta[b][valid[b]], 0.6)
        assert torch.equal(out.kept[b], valid[b] & (out.delta[b] >= thr))


def test_adaspec_loss_module_matches_function() -> None:
    draft, target, ref = (torch.randn(2, 6, 11) for _ in range(3))
    valid = torch.rand(2, 6) > 0.2
    module = AdaSPECLoss(SelectiveLossSettings(k=0.5, divergence="jsd", temperature=2.0, beta=0.3))
    assert "k=0.5" in repr(module)
    got = module(draft, target, ref, valid, num_items_in_batch=20)
    want = adaspec_token_loss(
        draft,
        target,
        ref,
        valid,
        SelectiveLossSettings(k=0.5, divergence="jsd", temperature=2.0, beta=0.3),
        num_items_in_batch=20,
    )
    torch.testing.assert_close(got.loss, want.loss)


def test_shift_for_causal_lm() -> None:
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, 2, -100, -100]])
    shifted, valid = shift_for_causal_lm(logits, labels)
    assert shifted.shape == (2, 4, 7) and torch.equal(shifted, logits[:, :-1])
    assert valid.tolist() == [[False, True, True, True], [True, True, False, False]]
    with pytest.raises(ValueError, match="labels"):
        shift_for_causal_lm(logits, labels[:, :4])


def test_adaspec_token_loss_rejects_bad_inputs() -> None:
    x = torch.randn(2, 3, 5)
    valid = torch.ones(2, 3, dtype=torch.bool)
    for bad_k in (0, -0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"k must be in \(0, 1\]"):
            adaspec_token_loss(x, x, x, valid, SelectiveLossSettings(k=bad_k))
        with pytest.raises(ValueError, match=r"k must be in \(0, 1\]"):
            AdaSPECLoss(SelectiveLossSettings(k=bad_k))
    with pytest.raises(ValueError, match="divergence must be one of"):
        adaspec_token_loss(x, x, x, valid, SelectiveLossSettings(divergence="kl"))
    with pytest.raises(ValueError, match="scope must be one of"):
        adaspec_token_loss(x, x, x, valid, SelectiveLossSettings(scope="rank"))
    with pytest.raises(ValueError, match="reduction must be one of"):
        AdaSPECLoss(SelectiveLossSettings(reduction="none"))
    with pytest.raises(ValueError, match=r"\(2, 3, 6\).*slice"):
        adaspec_token_loss(x, torch.randn(2, 3, 6), x, valid, SelectiveLossSettings())
    with pytest.raises(ValueError, match="valid must have shape"):
        adaspec_token_loss(x, x, x, valid[:, :2], SelectiveLossSettings())
    with pytest.raises(ValueError, match="ref_logits"):
        adaspec_token_loss(x, x, torch.randn(2, 4, 5), valid, SelectiveLossSettings())


def _signal_inputs(seed=0, n=200, v=17):
    gen = torch.Generator().manual_seed(seed)
    draft = torch.randn(n, v, generator=gen) * 2
    target = torch.randn(n, v, generator=gen) * 2
    ref = torch.randn(n, v, generator=gen) * 2
    valid = torch.rand(n, generator=gen) > 0.2
    return draft, target, ref, valid


def _top_k(score, valid, k):
    thr = torch.quantile(score[valid], 1 - k)
    return valid & (score >= thr)


def test_adaspec_token_loss_draft_loss_signal_keeps_hardest_tokens():
    from adaspec.losses import token_divergence

    draft, target, ref, valid = _signal_inputs()
    out = adaspec_token_loss(
        draft, target, None, valid, SelectiveLossSettings(k=0.3, selection="draft_loss")
    )
    want = _top_k(token_divergence(draft, target), valid, 0.3)
    assert torch.equal(out.kept, want)
    # The reference changes nothing under this signal (it only feeds the logged ΔL).
    with_ref = adaspec_token_loss(
        draft, target, ref, valid, SelectiveLossSettings(k=0.3, selection="draft_loss")
    )
    assert torch.equal(with_ref.kept, want) and with_ref.delta is not None


def test_adaspec_token_loss_student_entropy_signal_keeps_uncertain_tokens():
    draft, target, _, valid = _signal_inputs(1)
    out = adaspec_token_loss(
        draft,
        target,
        None,
        valid,
        SelectiveLossSettings(k=0.4, temperature=2.0, selection="student_entropy"),
    )
    logp = torch.log_softmax(draft / 2.0, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    assert torch.equal(out.kept, _top_k(entropy, valid, 0.4))


def test_adaspec_token_loss_random_signal_keeps_k_at_random():
    draft, target, ref, valid = _signal_inputs(2)
    delta_kept = adaspec_token_loss(draft, target, ref, valid, SelectiveLossSettings(k=0.4)).kept
    torch.manual_seed(5)
    first = adaspec_token_loss(
        draft, target, ref, valid, SelectiveLossSettings(k=0.4, selection="random")
    ).kept
    torch.manual_seed(5)
    again = adaspec_token_loss(
        draft, target, ref, valid, SelectiveLossSettings(k=0.4, selection="random")
    ).kept
    torch.manual_seed(6)
    other = adaspec_token_loss(
        draft, target, ref, valid, SelectiveLossSettings(k=0.4, selection="random")
    ).kept
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, delta_kept)
    assert not (first & ~valid).any()
    assert abs(first.sum().item() / valid.sum().item() - 0.4) < 0.01


def test_adaspec_token_loss_rejects_unknown_signal():
    draft, target, ref, valid = _signal_inputs()
    with pytest.raises(ValueError, match="selection signal"):
        adaspec_token_loss(draft, target, ref, valid, SelectiveLossSettings(selection="confidence"))
