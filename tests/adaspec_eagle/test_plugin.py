import torch
import torch.nn as nn

from adaspec.losses import SelectiveLossSettings
from adaspec_eagle.losses import eagle1_loss, eagle3_loss
from adaspec_eagle.plugin import adaspec_filtered_loss


def _eagle1_compute_loss(target, target_p, predict_logits, predict, loss_mask):
    """SafeAILab/EAGLE eagle/train/main.py compute_loss, written out independently."""
    out_logp = nn.LogSoftmax(dim=2)(predict_logits)
    ploss = -torch.sum(torch.sum(loss_mask * target_p * out_logp, 2)) / (loss_mask.sum() + 1e-5)
    vloss = nn.SmoothL1Loss(reduction="none")(predict, target)
    vloss = torch.sum(torch.mean(loss_mask * vloss, 2)) / (loss_mask.sum() + 1e-5)
    return vloss, ploss


def _data(b=3, t=7, v=50, h=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    head = torch.randn(b, t, v, generator=g)
    tgt = torch.randn(b, t, v, generator=g) * 2
    ref = torch.randn(b, t, v, generator=g)
    mask = (torch.rand(b, t, generator=g) > 0.3).float()
    feats = torch.randn(b, t, h, generator=g), torch.randn(b, t, h, generator=g)
    return head, tgt, ref, mask, feats


def test_plugin_k1_equals_eagle_formula():
    head, tgt, ref, mask, _ = _data()
    p = torch.softmax(tgt, -1)
    _, want = _eagle1_compute_loss(
        torch.zeros(3, 7, 4), p, head, torch.zeros(3, 7, 4), mask[..., None]
    )
    got, kept = adaspec_filtered_loss(head, tgt, mask, ref, SelectiveLossSettings(k=1.0))
    assert abs(float(got) - float(want)) < 1e-6
    got_p, kept3 = adaspec_filtered_loss(
        head, p, mask[..., None], None, SelectiveLossSettings(), target_is_probs=True
    )
    assert abs(float(got_p) - float(want)) < 1e-6
    assert torch.equal(kept, mask.bool()) and kept3.shape == (3, 7, 1)


def test_plugin_k1_equals_eagle3_positions_formula():
    head, tgt, ref, mask, _ = _data(seed=1)
    p = torch.softmax(tgt, -1)
    want = -torch.sum(mask[..., None] * p * torch.log_softmax(head, -1), 2).mean()
    got, _ = adaspec_filtered_loss(
        head, tgt, mask, ref, SelectiveLossSettings(k=1.0), normalization="positions"
    )
    assert abs(float(got) - float(want)) < 1e-6


def test_plugin_keeps_top_k_by_delta():
    head, tgt, ref, mask, _ = _data(b=4, t=25, seed=2)
    p = torch.softmax(tgt, -1)
    ce = lambda lg: -(p * torch.log_softmax(lg, -1)).sum(-1)  # noqa: E731
    delta = ce(head) - ce(ref)
    _, kept = adaspec_filtered_loss(head, tgt, mask, ref, SelectiveLossSettings(k=0.4))
    valid = mask.bool()
    n_keep = int(kept.sum())
    assert not (kept & ~valid).any()
    assert abs(n_keep - 0.4 * int(valid.sum())) <= 1.5
    # every kept token's ΔL is >= every dropped valid token's ΔL
    assert delta[kept].min() >= delta[valid & ~kept].max() - 1e-5
    loss, _ = adaspec_filtered_loss(head, tgt, mask, ref, SelectiveLossSettings(k=0.4))
    want = ce(head)[kept].sum() / (kept.sum() + 1e-5)
    assert abs(float(loss) - float(want)) < 1e-5


def test_plugin_gradient_only_on_kept_tokens():
    head, tgt, ref, mask, _ = _data(seed=3)
    head.requires_grad_(True)
    loss, kept = adaspec_filtered_loss(head, tgt, mask, ref, SelectiveLossSettings(k=0.5))
    loss.backward()
    row_grad = head.grad.abs().sum(-1) > 0
    assert torch.equal(row_grad, kept)


def test_eagle1_loss_k1_equals_eagle():
    head, tgt, ref, mask, (pred, target_f) = _data(seed=4)
    p = torch.softmax(tgt, -1)
    vw, pw = _eagle1_compute_loss(target_f, p, head, pred, mask[..., None])
    out = eagle1_loss(
        pred, target_f, head, tgt, mask, ref_logits=ref, settings=SelectiveLossSettings(k=1.0)
    )
    assert abs(float(out.loss) - float(1.0 * vw + 0.1 * pw)) < 1e-6
    assert abs(float(out.vloss) - float(vw)) < 1e-6


def test_eagle3_loss_k1_equals_weighted_steps():
    steps = [_data(seed=s) for s in range(3)]
    logits = [s[0] for s in steps]
    targets = [(s[1], s[3]) for s in steps]
    want = 0.0
    for i, (lg, (tg, m)) in enumerate(zip(logits, targets)):
        p = torch.softmax(tg, -1)
        want += 0.8**i * -torch.sum(m[..., None] * p * torch.log_softmax(lg, -1), 2).mean()
    out = eagle3_loss(logits, targets, [s[2] for s in steps], SelectiveLossSettings(k=1.0))
    assert abs(float(out.loss) - float(want)) < 1e-6
    filtered = eagle3_loss(logits, targets, [s[2] for s in steps], SelectiveLossSettings(k=0.4))
    assert all(k.sum() < m.sum() for k, (_, m) in zip(filtered.kept, targets))


def _forbid(monkeypatch, *names):
    import adaspec.losses
    import adaspec.losses.selective

    def boom(*a, **k):
        raise AssertionError("the plug-in must not call this here")

    for name in names:
        for mod in (adaspec.losses, adaspec.losses.selective):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, boom)


def test_plugin_k1_or_no_reference_computes_no_divergence_and_no_host_sync(monkeypatch):
    head, tgt, ref, mask, _ = _data(seed=5)
    p = torch.softmax(tgt, -1)
    want = -torch.sum(mask[..., None] * p * torch.log_softmax(head, -1), 2).mean()
    _forbid(monkeypatch, "adaspec_token_loss", "select_tokens", "token_divergence")

    def no_sync(*a, **k):
        raise AssertionError("host sync")

    monkeypatch.setattr(torch.Tensor, "item", no_sync)
    monkeypatch.setattr(torch.Tensor, "tolist", no_sync)
    for r, k in ((ref, 1.0), (None, 0.4)):
        got, kept = adaspec_filtered_loss(
            head,
            p,
            mask,
            r,
            SelectiveLossSettings(k=k),
            target_is_probs=True,
            normalization="positions",
        )
        assert torch.equal(kept, mask.bool())
        assert torch.allclose(got, want, atol=1e-6)


def test_plugin_selects_on_the_detached_soft_ce_gap(monkeypatch):
    import adaspec_eagle.plugin as plugin

    head, tgt, ref, mask, _ = _data(b=4, t=25, seed=6)
    head.requires_grad_(True)
    _forbid(monkeypatch, "adaspec_token_loss", "token_divergence")
    seen = []
    real = plugin.select_tokens

    def spy(delta, valid, k, scope="batch", group=None):
        seen.append((delta, valid, k, scope, group))
        return real(delta, valid, k, scope=scope, group=group)

    monkeypatch.setattr(plugin, "select_tokens", spy)
    group = object()
    p = torch.softmax(tgt, -1)
    res = plugin.filtered_token_loss(
        head, tgt, mask, ref, SelectiveLossSettings(k=0.4), group=group
    )
    ((delta, valid, k, scope, g),) = seen
    ce = lambda lg: -(p * torch.log_softmax(lg, -1)).sum(-1)  # noqa: E731
    assert not delta.requires_grad and k == 0.4 and scope == "batch" and g is group
    assert torch.allclose(delta[valid], (ce(head) - ce(ref))[valid], atol=1e-5)
    assert res.delta is not None and torch.equal(res.kept, real(delta, valid, 0.4))
    assert res.stats["num_kept"] == float(res.kept.sum()) and res.stats["num_valid"] == float(
        valid.sum()
    )
