"""Target-family plumbing: stock transformers decoder layers, norms and rotary modules for heads.

EAGLE heads are built from the *target's* config with the classes transformers itself ships for
that family (``LlamaDecoderLayer``/``LlamaRMSNorm``, ``Qwen2DecoderLayer``, ``GPTNeoXLayer``, ...),
so no modeling file is forked and a transformers upgrade is picked up as is. Everything
family-specific (class names, the attention attribute) lives in this module; the cache keyword
(``cache`` in recent 5.x, ``past_key_values`` before, ``layer_past`` in GPT-NeoX layers) is read
from the installed classes' signatures (:func:`adaspec.decoding.cache.cache_keyword`).

Position embeddings are computed by the family's rotary module and passed to the layer, as the
stock models do since transformers 4.48.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adaspec.decoding.cache import cache_keyword

# model_type -> (module suffix, class-name prefix); families with Llama's layer layout.
_LLAMA_LIKE = {
    "llama": ("llama", "Llama"),
    "mistral": ("mistral", "Mistral"),
    "qwen2": ("qwen2", "Qwen2"),
    "qwen3": ("qwen3", "Qwen3"),
}
SUPPORTED_MODEL_TYPES = (*_LLAMA_LIKE, "gpt_neox")


@dataclass(frozen=True)
class Family:
    """The transformers classes and attribute names a head needs for one target family."""

    model_type: str
    layer_cls: type
    norm_cls: type
    rotary_cls: type
    attn_attr: str  # "self_attn" or "attention"
    qkv_attrs: tuple[str, ...]  # projections whose in_features see the layer input

    @property
    def cache_kw(self) -> str:
        """Keyword the layer takes its cache under in the installed transformers."""
        return cache_keyword(self.layer_cls.forward)

    @property
    def llama_like(self) -> bool:
        """True when the layer has Llama's key layout (q/k/v/o, gate/up/down, RMSNorm)."""
        return self.model_type != "gpt_neox"


def family_of(config: Any) -> Family:
    """Resolve the stock classes for a target config.

    Raises:
        ValueError: If the target's ``model_type`` is not supported, naming the ones that are.

    """
    model_type = getattr(config, "model_type", None)
    if model_type == "gpt_neox":
        mod = importlib.import_module("transformers.models.gpt_neox.modeling_gpt_neox")
        return Family(
            "gpt_neox",
            mod.GPTNeoXLayer,
            nn.LayerNorm,
            mod.GPTNeoXRotaryEmbedding,
            "attention",
            ("query_key_value",),
        )
    if model_type in _LLAMA_LIKE:
        suffix, prefix = _LLAMA_LIKE[model_type]
        mod = importlib.import_module(f"transformers.models.{suffix}.modeling_{suffix}")
        return Family(
            model_type,
            getattr(mod, f"{prefix}DecoderLayer"),
            getattr(mod, f"{prefix}RMSNorm"),
            getattr(mod, f"{prefix}RotaryEmbedding"),
            "self_attn",
            ("q_proj", "k_proj", "v_proj"),
        )
    raise ValueError(
        f"target model_type={model_type!r} is not supported by EAGLE heads; supported: "
        f"{SUPPORTED_MODEL_TYPES}. Add its decoder-layer classes to adaspec_eagle/arch.py"
    )


def layer_config(target_config: Any, attn_implementation: str | None = None) -> Any:
    """Copy the target's config fit for a single head layer (eager or sdpa attention).

    Heads pass explicit 4D additive masks (causal, tree, training-time-test), which eager and sdpa
    attention both accept; flash kernels do not, so they are replaced by sdpa.
    """
    cfg = copy.deepcopy(target_config)
    impl = attn_implementation or getattr(target_config, "_attn_implementation", None) or "sdpa"
    if impl not in ("eager", "sdpa"):
        impl = "sdpa"
    cfg._attn_implementation = impl
    if hasattr(cfg, "use_sliding_window"):
        cfg.use_sliding_window = False
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = ["full_attention"] * len(cfg.layer_types)
    cfg.use_cache = True
    return cfg


def norm_eps(config: Any) -> float:
    """Return the norm epsilon of a config (``rms_norm_eps`` or ``layer_norm_eps``)."""
    return float(getattr(config, "rms_norm_eps", None) or getattr(config, "layer_norm_eps", 1e-5))


def make_norm(family: Family, config: Any) -> nn.Module:
    """Build a norm of the target family (RMSNorm, or LayerNorm for GPT-NeoX) over H."""
    return family.norm_cls(config.hidden_size, eps=norm_eps(config))


def make_layer(family: Family, config: Any, in_features: int | None = None) -> nn.Module:
    """Build a stock decoder layer; ``in_features`` widens the q/k/v (or fused qkv) input (EAGLE-3).

    EAGLE-3's layer attends over ``concat(norm(embedding), norm(hidden))`` (2H wide), so its
    query/key/value projections take 2H inputs while everything else stays H wide: the stock layer
    is built, then those projections are replaced by ``nn.Linear(in_features, out)`` with the same
    output width and bias setting. The attention forward only reshapes projection *outputs*, so the
    stock forward keeps working.
    """
    layer = family.layer_cls(config, layer_idx=0)
    if in_features is not None:
        attn = getattr(layer, family.attn_attr)
        for name in family.qkv_attrs:
            old: nn.Linear = getattr(attn, name)
            new = nn.Linear(in_features, old.out_features, bias=old.bias is not None)
            setattr(attn, name, new)
    return layer


def make_rotary(family: Family, config: Any) -> nn.Module:
    """Build the family's rotary module; ``rotary(x, position_ids) -> (cos, sin)``."""
    return family.rotary_cls(config=config)


def attention(family: Family, layer: nn.Module) -> nn.Module:
    """Return the layer's attention module."""
    return getattr(layer, family.attn_attr)


def call_attention(
    family: Family,
    layer: nn.Module,
    x: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    attention_mask: torch.Tensor | None,
    cache: Any = None,
) -> torch.Tensor:
    """Run the layer's stock attention on ``x`` [B, T, D_in] -> [B, T, H]."""
    attn = attention(family, layer)
    out = attn(
        x,
        position_embeddings=position_embeddings,
        attention_mask=attention_mask,
        **{cache_keyword(type(attn).forward): cache},
    )
    return out[0] if isinstance(out, tuple) else out


def call_layer(
    family: Family,
    layer: nn.Module,
    x: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    cache: Any = None,
) -> torch.Tensor:
    """Run a stock decoder layer's own forward on ``x`` [B, T, H] -> [B, T, H]."""
    out = layer(
        x,
        attention_mask=attention_mask,
        position_ids=position_ids,
        position_embeddings=position_embeddings,
        use_cache=cache is not None,
        **{family.cache_kw: cache},
    )
    return out[0] if isinstance(out, tuple) else out


def causal_mask(
    attention_mask: torch.Tensor | None,
    batch: int,
    length: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """4D additive causal mask [B, 1, T, T] from an optional padding mask [B, T] (1 = token)."""
    return additive(causal_allowed(attention_mask, batch, length, device), dtype)


def causal_allowed(
    attention_mask: torch.Tensor | None, batch: int, length: int, device: torch.device
) -> torch.Tensor:
    """Bool "may attend" pattern [B, 1, T, T]: causal, and no padded key (mask [B, T], 1 = token)."""
    allowed = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    allowed = allowed[None, None].expand(batch, 1, length, length)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :].bool()
    return allowed


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "may attend" mask -> additive float mask (0 or the dtype's minimum)."""
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    neg = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, neg)


def default_eagle3_layers(num_layers: int) -> list[int]:
    """Low, middle and high target layers for EAGLE-3, as indices into ``hidden_states``.

    ``output_hidden_states`` index 0 is the embedding output and index ``i + 1`` the output of
    decoder layer ``i``; SpecForge's layer ids ``[1, L // 2 - 1, L - 4]`` are therefore indices
    ``[2, L // 2, L - 3]`` here (clamped to ``[1, L - 1]`` for tiny targets: index L is the
    final-normed output, which serving engines do not capture).
    """
    top = max(1, num_layers - 1)
    picks = [2, num_layers // 2, num_layers - 3]
    return sorted(max(1, min(top, p)) for p in picks)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """Return the target's stack of decoder layers (``model.layers`` or ``gpt_neox.layers``)."""
    base = getattr(model, "base_model", model)
    layers = getattr(base, "layers", None)
    if isinstance(layers, nn.ModuleList):
        return layers
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")
