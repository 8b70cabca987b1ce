import pytest
import torch
from helpers import make_tiny_model

from adaspec_eagle.heads import Eagle1Head, Eagle3Head, draft_vocab_from_counts
from adaspec_eagle.unroll import eagle1_forward, eagle3_targets, eagle3_unroll


def test_eagle1_head_forward_shapes_and_names(family):
    target = make_tiny_model(family, vocab_size=64)
    head = Eagle1Head(target.config).attach(target)
    x = torch.randint(0, 64, (2, 6))
    hidden = target(x, output_hidden_states=True).hidden_states[-1]
    out = eagle1_forward(head, hidden, x, torch.ones(2, 6))
    assert out.pred_features.shape == (2, 6, 32)
    assert out.logits.shape == (2, 6, 64)
    names = set(head.state_dict())
    assert {"fc.weight", "fc.bias"} <= names
    assert all(n.startswith(("fc.", "layers.0.")) for n in names)
    assert not any("embed" in n or "lm_head" in n for n in names)
    if family != "gpt_neox":
        assert "layers.0.self_attn.q_proj.weight" in names
        assert not any("input_layernorm" in n for n in names)


def test_eagle3_head_forward_shapes_and_names(family):
    target = make_tiny_model(family, vocab_size=64, num_layers=4)
    head = Eagle3Head(target.config, draft_vocab_size=40).attach(target)
    assert head.fc.weight.shape == (32, 3 * 32)
    x = torch.randint(0, 64, (2, 6))
    hs = target(x, output_hidden_states=True).hidden_states
    aux = torch.cat([hs[i] for i in head.aux_layers], -1)
    logits = eagle3_unroll(head, aux, x, steps=3)
    assert len(logits) == 3 and all(lg.shape == (2, 6, 40) for lg in logits)
    names = set(head.state_dict())
    assert {"fc.weight", "norm.weight", "lm_head.weight", "d2t", "t2d"} <= names
    assert "midlayer.hidden_norm.weight" in names
    if family != "gpt_neox":
        assert head.midlayer.self_attn.q_proj.in_features == 64
        assert "midlayer.self_attn.q_proj.weight" in names


def test_eagle3_ttt_matches_step_by_step_attention():
    """Step 1 at position t must see step-0 keys <= t and its own key at t, nothing else."""
    target = make_tiny_model("llama", vocab_size=64, num_layers=4)
    head = Eagle3Head(target.config).attach(target).eval()
    x = torch.randint(0, 64, (1, 5))
    hs = target(x, output_hidden_states=True).hidden_states
    aux = torch.cat([hs[i] for i in head.aux_layers], -1)
    ttt = eagle3_unroll(head, aux, x, steps=2)
    # change future tokens: logits at position 1 of both steps must not move
    x2 = x.clone()
    x2[0, 4] = (x[0, 4] + 1) % 64
    hs2 = target(x2, output_hidden_states=True).hidden_states
    aux2 = torch.cat([hs2[i] for i in head.aux_layers], -1)
    ttt2 = eagle3_unroll(head, aux2, x2, steps=2)
    torch.testing.assert_close(ttt[0][0, :3], ttt2[0][0, :3])
    torch.testing.assert_close(ttt[1][0, :2], ttt2[1][0, :2])
    assert not torch.allclose(ttt[1][0, 2], ttt2[1][0, 2])  # reads token 4 at step 1


def test_draft_vocab_maps_roundtrip():
    target = make_tiny_model("llama", vocab_size=64, num_layers=4)
    head = Eagle3Head(target.config, draft_vocab_size=8)
    counts = torch.zeros(64)
    counts[[3, 9, 17, 20, 33, 40, 50, 63]] = torch.arange(8, 0, -1).float()
    ids = draft_vocab_from_counts(counts, 8)
    head.set_draft_vocab(ids)
    assert torch.equal(head.to_target_ids(torch.arange(8)), ids)
    assert head.t2d.sum() == 8 and head.t2d[ids].all()
    logits = torch.randn(2, 64)
    assert torch.equal(head.target_to_draft_logits(logits), logits[:, ids])
    targets = eagle3_targets(head, logits[None], torch.ones(1, 2), 1)
    assert targets[0][0].shape == (1, 2, 8)


def test_head_rejects_bad_aux_layers():
    target = make_tiny_model("llama", vocab_size=64)
    with pytest.raises(ValueError, match="aux_layers"):
        Eagle3Head(target.config, aux_layers=[1, 9])


def test_head_without_target_says_attach():
    target = make_tiny_model("llama", vocab_size=64)
    head = Eagle1Head(target.config)
    with pytest.raises(RuntimeError, match="attach"):
        head(torch.zeros(1, 2, 32), input_ids=torch.zeros(1, 2, dtype=torch.long))
