import warnings

import pytest
import torch
from helpers import make_tiny_model

from adaspec.decoding.cache import (
    additive_mask,
    cache_length,
    causal_allowed,
    crop_cache,
    forward,
    keep_positions,
    new_cache,
)
from adaspec.decoding.tree import build_tree_buffers


def test_additive_mask_layout():
    allowed = torch.tensor([[True, False], [True, True]])
    mask = additive_mask(allowed, past=3, dtype=torch.float32)
    assert mask.shape == (1, 1, 2, 5)
    assert torch.equal(mask[0, 0, :, :3], torch.zeros(2, 3))
    assert mask[0, 0, 0, 4] == torch.finfo(torch.float32).min and mask[0, 0, 1, 4] == 0


def test_keep_positions_gathers_and_crops(family):
    model = make_tiny_model(family, seed=0)
    cache = new_cache()
    ids = torch.randint(3, 256, (1, 9), generator=torch.Generator().manual_seed(1))
    forward(model, ids, cache, causal_allowed(9), torch.arange(9)[None])
    before = [layer.keys.clone() for layer in cache.layers]
    keep_positions(cache, 4, torch.tensor([0, 2, 3]))
    assert cache_length(cache) == 7
    for layer, full in zip(cache.layers, before):
        assert torch.equal(layer.keys[..., :4, :], full[..., :4, :])
        assert torch.equal(layer.keys[..., 4:, :], full[..., [4, 6, 7], :])
    crop_cache(cache, 5)
    assert cache_length(cache) == 5


def test_tree_step_commit_matches_fresh_forward(family):
    """Verify a tree, keep the accepted path: cache length and next logits match a fresh run."""
    model = make_tiny_model(family, seed=0)
    gen = torch.Generator().manual_seed(2)
    prompt = torch.randint(3, 256, (1, 6), generator=gen)
    cache = new_cache()
    forward(model, prompt[:, :-1], cache, causal_allowed(5), torch.arange(5)[None])
    # tree: root -> a, b; a -> c, d; c -> e ; accept the path a, c, e
    parents = torch.tensor([-1, -1, 0, 0, 2])
    tokens = torch.randint(3, 256, (5,), generator=gen)
    buf = build_tree_buffers(parents)
    ids = torch.cat([prompt[:, -1:], tokens[None]], dim=1)
    out = forward(model, ids, cache, buf.allowed, (5 + buf.position_offsets)[None])
    accepted = torch.tensor([0, 2, 4])
    keep_positions(cache, 5, torch.cat([torch.zeros(1, dtype=torch.long), accepted + 1]))
    seq = torch.cat([prompt, tokens[accepted][None]], dim=1)  # committed, minus nothing
    assert cache_length(cache) == seq.shape[1]
    fresh = model(seq).logits[0]
    # tree logits along the accepted path equal the fresh causal logits
    path_slots = torch.cat([torch.zeros(1, dtype=torch.long), accepted + 1])
    assert torch.allclose(out.logits[0, path_slots], fresh[5:], atol=1e-4)
    # continuing from the committed cache equals the fresh forward over the full sequence
    nxt = torch.tensor([[7]])
    step = forward(model, nxt, cache, causal_allowed(1), torch.tensor([[seq.shape[1]]]))
    full = model(torch.cat([seq, nxt], dim=1)).logits[0, -1]
    assert torch.allclose(step.logits[0, -1], full, atol=1e-4)


def test_cache_keyword_prefers_cache_then_the_older_names():
    from adaspec.decoding.cache import cache_keyword

    def new_style(input_ids, cache=None, past_key_values=None): ...

    def old_style(input_ids, past_key_values=None): ...

    def neox_layer(hidden_states, layer_past=None): ...

    def no_cache(input_ids): ...

    assert cache_keyword(new_style) == "cache"
    assert cache_keyword(old_style) == "past_key_values"
    assert cache_keyword(neox_layer) == "layer_past"
    with pytest.raises(TypeError, match="no KV cache argument"):
        cache_keyword(no_cache)


def test_forward_uses_no_deprecated_cache_keyword(family):
    model = make_tiny_model(family, seed=0)
    cache = new_cache()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*")
        forward(model, torch.tensor([[3, 4, 5]]), cache, causal_allowed(3), torch.arange(3)[None])
    assert cache_length(cache) == 3
