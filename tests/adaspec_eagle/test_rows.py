"""The rows path of the EAGLE-3 loss against the dense one: same value, gradients, masks."""

import pytest
import torch
from helpers import make_tiny_model

from adaspec.losses import SelectiveLossSettings
from adaspec_eagle.features import capture_features
from adaspec_eagle.heads import Eagle3Head
from adaspec_eagle.losses import eagle3_loss
from adaspec_eagle.masks import collate
from adaspec_eagle.rows import eagle3_rows_loss, rows_path_applies, target_rows
from adaspec_eagle.trainer import LossSettings, head_loss, head_pass
from adaspec_eagle.unroll import eagle3_targets, eagle3_unroll_hidden


def _setup(family="llama", draft_vocab=24, seed=0):
    torch.manual_seed(seed)
    target = make_tiny_model(family, vocab_size=64, num_layers=4)
    g = torch.Generator().manual_seed(seed)
    ex = []
    for length in (14, 9, 12, 5):  # padding, short rows, and prompts of several lengths
        prompt = 2 + length % 3
        ex.append({"input_ids": torch.randint(3, 64, (length,), generator=g).tolist(),
                   "attention_mask": [1] * length,
                   "loss_mask": [0] * prompt + [1] * (length - prompt)})  # fmt: skip
    b = collate(ex)
    heads = []
    for _ in range(2):
        head = Eagle3Head(target.config, draft_vocab_size=draft_vocab).attach(target)
        head.set_draft_vocab(torch.randperm(64, generator=g)[:draft_vocab])
        heads.append(head)
    f = capture_features(target, b["input_ids"], b["attention_mask"], b["loss_mask"],
                         heads[0].aux_layers)  # fmt: skip
    return target, heads[0], heads[1], f


def _dense(head, ref, f, steps, settings):
    hid = eagle3_unroll_hidden(head, f.aux, f.input_ids, f.attention_mask, steps)
    ref_logits = None
    if ref is not None:
        with torch.no_grad():
            rh = eagle3_unroll_hidden(ref, f.aux, f.input_ids, f.attention_mask, steps)
        ref_logits = [ref.logits(h) for h in rh]
    targets = eagle3_targets(head, f.logits, f.loss_mask, steps)
    return eagle3_loss([head.logits(h) for h in hid], targets, ref_logits, settings)


def _rows(head, ref, f, steps, settings, target, chunk_rows=1024):
    hid = eagle3_unroll_hidden(head, f.aux, f.input_ids, f.attention_mask, steps)
    rh = None
    if ref is not None:
        with torch.no_grad():
            rh = eagle3_unroll_hidden(ref, f.aux, f.input_ids, f.attention_mask, steps)
    rows = target_rows(head, f.hidden, target.get_output_embeddings(), f.loss_mask, chunk_rows)
    return eagle3_rows_loss(head, hid, rows, f.loss_mask, ref, rh, settings)


@pytest.mark.parametrize("k,scope", [(1.0, "batch"), (0.4, "batch"), (0.5, "sequence")])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_rows_loss_equals_dense_loss_and_gradients(family, k, scope):
    target, head, ref, f = _setup(family)
    settings = SelectiveLossSettings(k=k, scope=scope)
    dense = _dense(head, ref, f, 3, settings)
    grads_dense = torch.autograd.grad(dense.loss, list(head.parameters()), allow_unused=True)
    rows = _rows(head, ref, f, 3, settings, target, chunk_rows=7)  # several chunks
    grads_rows = torch.autograd.grad(rows.loss, list(head.parameters()), allow_unused=True)
    torch.testing.assert_close(rows.loss, dense.loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(rows.step_losses, dense.step_losses):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(rows.kept, dense.kept):
        assert torch.equal(a, b)
    assert rows.acc == pytest.approx(dense.acc)
    for a, b in zip(grads_rows, grads_dense):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # The reduced vocabulary masks some positions out, and k < 1 keeps fewer still.
    assert 0 < int(rows.kept[0].sum()) < int((f.loss_mask > 0).sum())


def test_rows_loss_without_response_tokens_is_zero():
    target, head, _, f = _setup()
    f.loss_mask = torch.zeros_like(f.loss_mask)
    out = _rows(head, None, f, 2, SelectiveLossSettings(k=1.0), target)
    assert float(out.loss.detach()) == 0.0 and out.acc == [0.0, 0.0]


def test_rows_loss_refuses_a_divergence_it_does_not_compute():
    target, head, _, f = _setup()
    settings = SelectiveLossSettings(k=0.4, divergence="reverse_kl")
    assert not rows_path_applies(settings)
    with pytest.raises(ValueError, match="use eagle3_loss"):
        _rows(head, None, f, 2, settings, target)


def test_head_loss_takes_the_rows_path_with_the_target_lm_head():
    target, head, ref, f = _setup()
    s = LossSettings(selective=SelectiveLossSettings(k=0.4), ttt_steps=2)
    args = (f.hidden, f.input_ids, f.attention_mask, f.loss_mask, f.aux)
    out = head_pass(head, s, *args)
    with torch.no_grad():
        ref_out = head_pass(ref, s, *args)
    dense = head_loss(head, out, f, s, ref_out, ref)
    f_no_logits = type(f)(**{**f.__dict__, "logits": None})
    rows = head_loss(head, out, f_no_logits, s, ref_out, ref, target.get_output_embeddings())
    torch.testing.assert_close(rows.loss, dense.loss, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs feats.logits"):
        head_loss(head, out, f_no_logits, s, ref_out, ref)
