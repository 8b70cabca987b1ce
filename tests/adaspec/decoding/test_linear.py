import copy

import pytest
import torch
from helpers import make_tiny_model
from torch import nn

from adaspec.decoding import DraftModelDrafter, SpeculativeDecoder, autoregressive_generate, chain
from adaspec.decoding.linear import TransposedLinear, transpose_linears
from adaspec.decoding.tree import DynamicTree


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 5, 7)])
def test_transposed_linear_matches_linear(bias, shape):
    torch.manual_seed(0)
    linear = nn.Linear(7, 11, bias=bias)
    fast = TransposedLinear(linear)
    x = torch.randn(*shape)
    assert torch.allclose(fast(x), linear(x), atol=1e-6, rtol=1e-5)
    assert fast(x).shape == (*shape[:-1], 11)
    assert fast.weight.shape == linear.weight.shape and fast.weight_t.is_contiguous()
    assert torch.equal(fast.weight, linear.weight)
    assert (fast.bias is None) == (not bias)


def test_transpose_linears_replaces_every_linear_once(family):
    model = make_tiny_model(family, seed=0).eval()
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    assert transpose_linears(model) == len(linears) > 0
    assert not any(type(m) is nn.Linear for m in model.modules())
    assert isinstance(model.get_output_embeddings(), TransposedLinear)
    assert transpose_linears(model) == 0


def test_transpose_linears_keeps_greedy_outputs_and_the_decoder_lossless(family):
    target = make_tiny_model(family, seed=0).eval()
    fast = copy.deepcopy(target)
    transpose_linears(fast)
    prompt = torch.tensor([[3, 44, 80, 120, 9]])
    with torch.no_grad():
        logits, fast_logits = target(prompt).logits, fast(prompt).logits
    assert torch.allclose(logits, fast_logits, atol=1e-5)
    ref = autoregressive_generate(target, prompt, 40).sequences
    assert torch.equal(autoregressive_generate(fast, prompt, 40).sequences, ref)
    draft = make_tiny_model(family, seed=1).eval()
    fast_draft = copy.deepcopy(draft)
    transpose_linears(fast_draft)
    for tree in (chain(3), DynamicTree(depth=3, top_k=2, total_tokens=8)):
        dec = SpeculativeDecoder(fast, DraftModelDrafter(fast_draft), tree=tree)
        assert torch.equal(dec.generate(prompt, max_new_tokens=40).sequences, ref)
