import pytest
import torch
from helpers import make_tiny_model

from adaspec_eagle.heads import Eagle1Head, Eagle3Head, build_head, draft_vocab_from_counts
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


def test_build_head_kinds_and_refusal():
    target = make_tiny_model("llama", vocab_size=64, num_layers=4)
    assert type(build_head(target.config, "eagle1")) is Eagle1Head
    assert type(build_head(target.config, "eagle3", draft_vocab_size=8)) is Eagle3Head
    with pytest.raises(ValueError, match="'eagle1' or 'eagle3'.*'eagle2'"):
        build_head(target.config, "eagle2")


@pytest.mark.parametrize("size", [-1, 65])
def test_eagle3_head_rejects_draft_vocab_size_out_of_range(size):
    target = make_tiny_model("llama", vocab_size=64, num_layers=4)
    with pytest.raises(ValueError, match=rf"draft_vocab_size={size} must be in \[1, 64\]"):
        Eagle3Head(target.config, draft_vocab_size=size)


def test_set_draft_vocab_rejects_wrong_count_and_out_of_vocab_ids():
    head = Eagle3Head(
        make_tiny_model("llama", vocab_size=64, num_layers=4).config, draft_vocab_size=4
    )
    with pytest.raises(ValueError, match="3 distinct ids, expected draft_vocab_size=4"):
        head.set_draft_vocab(torch.tensor([1, 2, 2, 3]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 64\)"):
        head.set_draft_vocab(torch.tensor([1, 2, 3, 64]))


def test_draft_logits_to_target_puts_minus_inf_outside_the_draft_vocab():
    head = Eagle3Head(
        make_tiny_model("llama", vocab_size=64, num_layers=4).config, draft_vocab_size=3
    )
    head.set_draft_vocab(torch.tensor([5, 10, 60]))
    out = head.draft_logits_to_target(torch.tensor([[1.0, 2.0, 3.0]]))
    assert out.shape == (1, 64)
    assert out[0, [5, 10, 60]].tolist() == [1.0, 2.0, 3.0]
    assert torch.isinf(out).sum() == 61


@pytest.mark.parametrize("kind", ["eagle1", "eagle3"])
def test_head_step_is_forward_and_default_positions_follow_the_cache(kind):
    from transformers import DynamicCache

    target = make_tiny_model("llama", vocab_size=64, num_layers=4)
    torch.manual_seed(0)
    head = build_head(target.config, kind).attach(target).eval()
    ids = torch.randint(0, 64, (1, 4))
    hidden = torch.randn(1, 4, 32)
    full = head(hidden, input_ids=ids)
    torch.testing.assert_close(head.step(hidden, input_ids=ids), full)
    # Feed the first three tokens, then the fourth with the cache: its default position is 3.
    cache = DynamicCache()
    head(hidden[:, :3], input_ids=ids[:, :3], cache=cache)
    mask = torch.zeros(1, 1, 1, 4)
    last = head.step(hidden[:, 3:], input_ids=ids[:, 3:], attention_mask=mask, cache=cache)
    torch.testing.assert_close(last, full[:, 3:], atol=1e-5, rtol=1e-5)
