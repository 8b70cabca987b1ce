from __future__ import annotations

import pytest
import torch

from adaspec.losses import (
    DIVERGENCES,
    ChunkedAdaSPECLoss,
    SelectiveLossSettings,
    adaspec_token_loss,
    chunked_adaspec_loss,
)

N, V, H_D, H_T, H_R = 37, 29, 8, 12, 6


def _heads(vocab_rows=(V, V, V), bias=True, dtype=torch.float32, layout=(N,)):
    gen = torch.Generator().manual_seed(0)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype)

    d = {
        "draft_hidden": rnd(*layout, H_D).requires_grad_(True),
        "draft_weight": rnd(vocab_rows[0], H_D, scale=0.7).requires_grad_(True),
        "target_hidden": rnd(*layout, H_T),
        "target_weight": rnd(vocab_rows[1], H_T, scale=0.7),
        "ref_hidden": rnd(*layout, H_R),
        "ref_weight": rnd(vocab_rows[2], H_R, scale=0.7),
    }
    if bias:
        d["draft_bias"] = rnd(vocab_rows[0]).requires_grad_(True)
        d["target_bias"] = rnd(vocab_rows[1])
        d["ref_bias"] = rnd(vocab_rows[2])
    return d


def _plain(h, vocab, valid, num_items_in_batch=None, **kw):
    def logits(name):
        z = h[f"{name}_hidden"] @ h[f"{name}_weight"][:vocab].T
        b = h.get(f"{name}_bias")
        return z + b[:vocab] if b is not None else z

    ref = logits("ref") if h.get("ref_hidden") is not None else None
    settings = SelectiveLossSettings(**kw)
    return adaspec_token_loss(
        logits("draft"), logits("target"), ref, valid, settings, num_items_in_batch
    )


def _grads(h):
    names = ["draft_hidden", "draft_weight", "draft_bias"]
    out = {n: h[n].grad.clone() for n in names if n in h}
    for n in names:
        if n in h:
            h[n].grad = None
    return out


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("chunk_size", [5, 16, 1000])
def test_chunked_matches_plain_loss_and_grads(divergence: str, chunk_size: int) -> None:
    h = _heads()
    valid = torch.rand(N) > 0.25
    kw = {"k": 0.4, "divergence": divergence, "temperature": 1.5, "beta": 0.3}
    settings = SelectiveLossSettings(**kw, chunk_size=chunk_size)
    out = chunked_adaspec_loss(**h, valid=valid, settings=settings)
    out.loss.backward()
    got = _grads(h)
    want_out = _plain(h, V, valid, **kw)
    want_out.loss.backward()
    want = _grads(h)
    assert torch.equal(out.kept, want_out.kept)
    assert 0 < out.kept.sum() < valid.sum()
    torch.testing.assert_close(out.loss, want_out.loss)
    torch.testing.assert_close(out.per_token, want_out.per_token.detach())
    torch.testing.assert_close(out.delta, want_out.delta)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)
    assert got["draft_hidden"][~out.kept].abs().sum() == 0
    assert (got["draft_hidden"][out.kept].abs().sum(-1) > 0).all()
    assert out.stats == pytest.approx(want_out.stats, rel=1e-5)


def test_chunked_vocab_size_slices_padded_rows() -> None:
    vocab = V - 4
    h = _heads(vocab_rows=(V, V + 3, vocab + 1))
    valid = torch.rand(N) > 0.3
    out = chunked_adaspec_loss(
        **h,
        valid=valid,
        vocab_size=vocab,
        num_items_in_batch=50,
        settings=SelectiveLossSettings(chunk_size=7),
    )
    out.loss.backward()
    got = _grads(h)
    want_out = _plain(h, vocab, valid, num_items_in_batch=50)
    want_out.loss.backward()
    want = _grads(h)
    torch.testing.assert_close(out.loss, want_out.loss)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)
    assert got["draft_weight"][vocab:].abs().sum() == 0  # padded rows get no gradient
    with pytest.raises(ValueError, match="vocab_size"):
        chunked_adaspec_loss(**h, valid=valid, settings=SelectiveLossSettings())
    with pytest.raises(ValueError, match="exceeds"):
        chunked_adaspec_loss(**h, valid=valid, vocab_size=V + 1, settings=SelectiveLossSettings())


@pytest.mark.parametrize("k", [1.0, 0.4])
def test_chunked_plain_kd_without_ref_and_k1(k: float) -> None:
    h = _heads(bias=False)
    valid = torch.rand(N) > 0.3
    for drop_ref in (True, False):
        args = dict(h)
        if drop_ref:
            args["ref_hidden"] = args["ref_weight"] = None
        elif k != 1.0:
            continue
        out = chunked_adaspec_loss(
            **args, valid=valid, settings=SelectiveLossSettings(k=k, chunk_size=8, reduction="mean")
        )
        want = _plain(args, V, valid, k=k, reduction="mean")
        torch.testing.assert_close(out.loss, want.loss)
        assert torch.equal(out.kept, valid)


def test_chunked_sequence_scope_with_batch_layout() -> None:
    h = _heads(layout=(3, 11))
    valid = torch.rand(3, 11) > 0.2
    out = chunked_adaspec_loss(
        **h, valid=valid, settings=SelectiveLossSettings(scope="sequence", chunk_size=4)
    )
    want = _plain(h, V, valid, scope="sequence")
    assert out.kept.shape == (3, 11) and torch.equal(out.kept, want.kept)
    torch.testing.assert_close(out.loss, want.loss)


def test_chunked_no_response_tokens_is_zero_with_backward() -> None:
    h = _heads()
    out = chunked_adaspec_loss(
        **h, valid=torch.zeros(N, dtype=torch.bool), settings=SelectiveLossSettings(chunk_size=6)
    )
    assert out.loss.item() == 0.0 and not torch.isnan(out.loss)
    out.loss.backward()
    for g in _grads(h).values():
        assert torch.equal(g, torch.zeros_like(g))


def test_chunked_bf16_inputs_close_to_plain() -> None:
    h = _heads(dtype=torch.bfloat16)
    valid = torch.ones(N, dtype=torch.bool)
    out = chunked_adaspec_loss(**h, valid=valid, settings=SelectiveLossSettings(chunk_size=10))
    out.loss.backward()
    got = _grads(h)
    assert out.loss.dtype == torch.float32 and got["draft_weight"].dtype == torch.bfloat16
    want_out = _plain(h, V, valid)
    want_out.loss.backward()
    want = _grads(h)
    torch.testing.assert_close(out.loss, want_out.loss, rtol=1e-3, atol=1e-4)
    for name in want:
        torch.testing.assert_close(got[name].float(), want[name].float(), rtol=2e-2, atol=2e-3)


def test_chunked_frozen_target_and_ref_get_no_grad() -> None:
    h = _heads()
    for name in ("target_hidden", "target_weight", "ref_hidden", "ref_weight"):
        h[name].requires_grad_(True)
    chunked_adaspec_loss(**h, settings=SelectiveLossSettings(chunk_size=9)).loss.backward()
    for name in ("target_hidden", "target_weight", "ref_hidden", "ref_weight"):
        assert h[name].grad is None


def test_chunked_no_grad_mode_gives_same_loss() -> None:
    h = _heads()
    with_grad = chunked_adaspec_loss(**h, settings=SelectiveLossSettings(chunk_size=9)).loss
    with torch.no_grad():
        no_grad = chunked_adaspec_loss(**h, settings=SelectiveLossSettings(chunk_size=9)).loss
    assert no_grad.grad_fn is None
    torch.testing.assert_close(no_grad, with_grad.detach())


def test_chunked_module_matches_function() -> None:
    h = _heads()
    valid = torch.rand(N) > 0.2
    module = ChunkedAdaSPECLoss(SelectiveLossSettings(k=0.3, divergence="reverse_kl", chunk_size=8))
    assert "chunk_size=8" in repr(module)
    biases = {n: h.pop(n) for n in ("draft_bias", "target_bias", "ref_bias")}
    got = module(*h.values(), valid=valid, num_items_in_batch=40, **biases)
    want = chunked_adaspec_loss(
        **h,
        **biases,
        valid=valid,
        num_items_in_batch=40,
        settings=SelectiveLossSettings(k=0.3, divergence="reverse_kl", chunk_size=8),
    )
    torch.testing.assert_close(got.loss, want.loss)


def test_chunked_rejects_bad_inputs() -> None:
    h = _heads(bias=False)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_adaspec_loss(**h, settings=SelectiveLossSettings(chunk_size=0))
    with pytest.raises(ValueError, match=r"k must be in \(0, 1\]"):
        chunked_adaspec_loss(**h, settings=SelectiveLossSettings(k=0))
    with pytest.raises(ValueError, match="divergence must be one of"):
        chunked_adaspec_loss(**h, settings=SelectiveLossSettings(divergence="ce"))
    with pytest.raises(ValueError, match="scope must be one of"):
        chunked_adaspec_loss(**h, settings=SelectiveLossSettings(scope="x"))
    with pytest.raises(ValueError, match="together"):
        chunked_adaspec_loss(**{**h, "ref_weight": None}, settings=SelectiveLossSettings())
    with pytest.raises(ValueError, match="target_weight must be"):
        chunked_adaspec_loss(
            **{**h, "target_weight": h["target_weight"].T}, settings=SelectiveLossSettings()
        )
    with pytest.raises(ValueError, match="valid must have"):
        chunked_adaspec_loss(
            **h, valid=torch.ones(N + 1, dtype=torch.bool), settings=SelectiveLossSettings()
        )
    with pytest.raises(ValueError, match="token layout"):
        chunked_adaspec_loss(
            **{**h, "ref_hidden": h["ref_hidden"][:-1]}, settings=SelectiveLossSettings()
        )


@pytest.mark.parametrize("signal", ["random", "draft_loss", "student_entropy"])
@pytest.mark.parametrize("with_ref", [True, False])
def test_chunked_matches_plain_for_each_selection_signal(signal: str, with_ref: bool) -> None:
    h = _heads()
    if not with_ref:
        h = {k: v for k, v in h.items() if not k.startswith("ref")}
    valid = torch.rand(N, generator=torch.Generator().manual_seed(3)) > 0.25
    kw = {"k": 0.4, "temperature": 1.3, "selection": signal, "chunk_size": 7}
    torch.manual_seed(11)
    out = chunked_adaspec_loss(**h, valid=valid, settings=SelectiveLossSettings(**kw))
    out.loss.backward()
    got = _grads(h)
    kw.pop("chunk_size")
    torch.manual_seed(11)
    want_out = _plain(h, V, valid, **kw)
    want_out.loss.backward()
    want = _grads(h)
    assert torch.equal(out.kept, want_out.kept)
    assert 0 < out.kept.sum() < valid.sum()
    torch.testing.assert_close(out.loss, want_out.loss)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)
