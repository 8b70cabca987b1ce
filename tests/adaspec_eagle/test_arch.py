import inspect

import pytest
import torch
from helpers import make_tiny_model

from adaspec_eagle import arch


def test_family_of_resolves_the_stock_classes(family):
    target = make_tiny_model(family, vocab_size=64)
    fam = arch.family_of(target.config)
    assert fam.model_type == family
    layer = arch.decoder_layers(target)[0]
    assert isinstance(layer, fam.layer_cls)  # the very classes the target is built from
    assert hasattr(layer, fam.attn_attr)
    assert fam.llama_like == (family != "gpt_neox")
    # the cache keyword is one the installed layer and attention actually take
    assert fam.cache_kw in inspect.signature(type(layer).forward).parameters
    attn = arch.attention(fam, layer)
    assert all(isinstance(getattr(attn, name), torch.nn.Linear) for name in fam.qkv_attrs)


def test_family_of_rejects_unsupported_model_types():
    class Cfg:
        model_type = "bloom"

    with pytest.raises(ValueError, match=r"model_type='bloom' is not supported.*llama"):
        arch.family_of(Cfg())


def test_make_layer_widens_only_the_qkv_inputs(family):
    cfg = arch.layer_config(make_tiny_model(family, vocab_size=64).config)
    fam = arch.family_of(cfg)
    h = cfg.hidden_size
    layer = arch.make_layer(fam, cfg, in_features=2 * h)
    attn = arch.attention(fam, layer)
    stock = arch.attention(fam, arch.make_layer(fam, cfg))
    for name in fam.qkv_attrs:
        wide, plain = getattr(attn, name), getattr(stock, name)
        assert wide.in_features == 2 * h and wide.out_features == plain.out_features
        assert (wide.bias is None) == (plain.bias is None)
    rotary = arch.make_rotary(fam, cfg)
    x = torch.randn(1, 5, 2 * h)
    pos = torch.arange(5)[None]
    mask = arch.causal_mask(None, 1, 5, torch.float32, x.device)
    out = arch.call_attention(fam, layer, x, rotary(x, pos), mask)
    assert out.shape == (1, 5, h)


def test_layer_config_forces_a_mask_taking_attention_and_full_layers():
    cfg = make_tiny_model("qwen2", vocab_size=64).config
    cfg._attn_implementation = "flash_attention_2"
    cfg.layer_types = ["sliding_attention"] * cfg.num_hidden_layers
    out = arch.layer_config(cfg)
    assert out._attn_implementation == "sdpa" and out.use_cache
    assert set(out.layer_types) == {"full_attention"}
    assert cfg._attn_implementation == "flash_attention_2"  # the target's config is untouched


def test_causal_allowed_masks_padding_and_future():
    pad = torch.tensor([[1, 1, 0]])
    allowed = arch.causal_allowed(pad, 1, 3, torch.device("cpu"))[0, 0]
    assert allowed.tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    add = arch.additive(allowed, torch.float32)
    assert add[0, 0] == 0 and add[0, 1] == torch.finfo(torch.float32).min


@pytest.mark.parametrize(
    ("num_layers", "want"), [(32, [2, 16, 29]), (4, [1, 2, 2]), (2, [1, 1, 1])]
)
def test_default_eagle3_layers_low_mid_high_clamped(num_layers, want):
    assert arch.default_eagle3_layers(num_layers) == want


def test_norm_eps_reads_either_name():
    class Rms:
        rms_norm_eps = 1e-6

    class Ln:
        layer_norm_eps = 1e-4

    assert arch.norm_eps(Rms()) == 1e-6 and arch.norm_eps(Ln()) == 1e-4
