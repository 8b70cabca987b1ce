"""EAGLE draft heads built from the target's config with transformers' stock layers.

* :class:`Eagle1Head` (EAGLE-1/2): ``fc = Linear(2H, H)`` over ``concat(embed(next token),
  target feature)``, then one stock decoder layer of the target's family. As in EAGLE's
  ``cnets1.py`` the layer has no input norm (Llama-like families; GPT-NeoX keeps its LayerNorm),
  and the target's frozen embeddings and lm_head are *shared*, not owned: the head's state dict is
  ``fc.*`` and ``layers.0.*`` only.
* :class:`Eagle3Head` (EAGLE-3): ``fc = Linear(kH, H)`` fuses k target layers; the stock layer's
  q/k/v projections take ``concat(input_layernorm(embed), hidden_norm(hidden))`` (2H wide, see
  :func:`adaspec_eagle.arch.make_layer`); the head owns a final norm and an lm_head over a reduced
  draft vocabulary with maps ``d2t`` (``target_id = draft_id + d2t[draft_id]``) and ``t2d`` (bool
  mask over the target vocabulary). Only the target's embeddings are shared. Its attention is
  bias-free by default for Llama-like targets (``attention_bias``): SGLang's and vLLM's EAGLE-3
  layers build ``qkv_proj``/``o_proj`` without bias for the ``attention_bias: false`` the export
  writes, so a Qwen2 head trained with the stock q/k/v biases would be served without them.

Heads are pure modules: they return features and logits, never losses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from adaspec_eagle import arch


class _SharedTargetMixin:
    """Holds the target's frozen embedding / lm_head without registering (or saving) them."""

    def attach(self, target: nn.Module) -> _SharedTargetMixin:
        """Share ``target``'s input embeddings (and lm_head) with this head; returns ``self``."""
        object.__setattr__(self, "_embed", target.get_input_embeddings())
        object.__setattr__(self, "_target_lm_head", target.get_output_embeddings())
        return self

    @property
    def embed_tokens(self) -> nn.Module:
        """The target's input embedding (attach a target first)."""
        emb = getattr(self, "_embed", None)
        if emb is None:
            raise RuntimeError(
                f"{type(self).__name__} has no embeddings: call head.attach(target) first "
                "(heads share the target's frozen embeddings and are saved without them)"
            )
        return emb

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Frozen target embeddings of ``input_ids`` [B, T] -> [B, T, H]."""
        with torch.no_grad():
            return self.embed_tokens(input_ids)

    def forward(
        self,
        hidden_states: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        """One pass of the head's decoder layer: the predicted features of positions t + 1.

        Args:
            hidden_states: Target features [B, T, H] at positions t (EAGLE-3: fused, see
                :meth:`Eagle3Head.fuse`), or the head's own previous output.
            input_ids: The tokens at t + 1 [B, T] (or ``inputs_embeds`` [B, T, H]).
            inputs_embeds: Precomputed embeddings of those tokens.
            attention_mask: Padding mask [B, T] (1 = token) or 4D additive [B, 1, T, past + T].
            position_ids: Rotary positions [B, T]; ``past .. past + T - 1`` by default.
            cache: A transformers ``DynamicCache`` for the head's keys and values (drafting and
                training-time test).

        Returns:
            The layer output [B, T, H] (the next step's ``hidden_states``; see ``logits``).

        """
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids)
        if position_ids is None:
            b, t = hidden_states.shape[:2]
            past = cache.get_seq_length() if cache is not None else 0
            position_ids = torch.arange(past, past + t, device=hidden_states.device)[None]
            position_ids = position_ids.expand(b, t)
        embeds = inputs_embeds.to(hidden_states.dtype)
        return self._layer(hidden_states, embeds, attention_mask, position_ids, cache)

    #: The same pass under the name the drafter and the training-time test call.
    step = forward

    def _layer(self, hidden_states, embeds, attention_mask, position_ids, cache) -> torch.Tensor:
        """The head's own layer over features, embeddings ([B, T, H] each) and positions."""
        raise NotImplementedError

    def _mask(
        self, attention_mask: torch.Tensor | None, x: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        if attention_mask is not None and attention_mask.dim() == 4:
            return attention_mask.to(x.dtype)
        past = cache.get_seq_length() if cache is not None else 0
        if past:
            raise ValueError(
                "with a non-empty cache pass a 4D additive attention_mask [B, 1, q, past + q]"
            )
        return arch.causal_mask(attention_mask, x.shape[0], x.shape[1], x.dtype, x.device)


class Eagle1Head(_SharedTargetMixin, nn.Module):
    """EAGLE-1/2 head: one decoder layer over ``fc(concat(embedding, feature))``.

    Args:
        target_config: The target model's transformers config.
        bias: Whether ``fc`` has a bias (EAGLE's default, stored as ``"bias"`` in its config).
        attn_implementation: ``"sdpa"`` or ``"eager"``; the target's when None.

    """

    kind = "eagle1"

    def __init__(
        self, target_config: Any, bias: bool = True, attn_implementation: str | None = None
    ) -> None:
        super().__init__()
        self.family = arch.family_of(target_config)
        self.config = arch.layer_config(target_config, attn_implementation)
        self.bias = bias
        h = self.config.hidden_size
        self.fc = nn.Linear(2 * h, h, bias=bias)
        layer = arch.make_layer(self.family, self.config)
        if self.family.llama_like:
            layer.input_layernorm = nn.Identity()  # EAGLE: no input norm on the first layer
        self.layers = nn.ModuleList([layer])
        self.rotary = arch.make_rotary(self.family, self.config)

    def head_config(self) -> dict[str, Any]:
        """Return the head's own settings (saved in ``config.json`` beside the target's config)."""
        return {"kind": self.kind, "bias": self.bias}

    def _layer(self, hidden_states, embeds, attention_mask, position_ids, cache) -> torch.Tensor:
        x = self.fc(torch.cat((embeds, hidden_states), dim=-1))
        pe = self.rotary(x, position_ids)
        mask = self._mask(attention_mask, x, cache)
        return arch.call_layer(self.family, self.layers[0], x, pe, mask, position_ids, cache)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Target lm_head over predicted features [B, T, H] -> [B, T, V]."""
        lm_head = getattr(self, "_target_lm_head", None)
        if lm_head is None:
            raise RuntimeError("call head.attach(target) first: EAGLE-1 shares the target lm_head")
        return lm_head(features)


class Eagle3Head(_SharedTargetMixin, nn.Module):
    """EAGLE-3 head: fused low/mid/high target features, 2H attention input, draft vocabulary.

    Args:
        target_config: The target model's transformers config.
        aux_layers: Indices into the target's ``output_hidden_states`` that are fused (see
            :func:`adaspec_eagle.arch.default_eagle3_layers`, the default).
        draft_vocab_size: Rows of the head's lm_head; the target vocabulary when None.
        attn_implementation: ``"sdpa"`` or ``"eager"``; the target's when None.
        attention_bias: Keep the stock layer's attention biases (Qwen2's q/k/v, a Llama
            ``attention_bias`` target's q/k/v/o). ``None`` (default): bias-free for Llama-like
            families, the serving layout SGLang/vLLM build; GPT-NeoX keeps its stock biases (it
            is not exportable anyway). A head with biases cannot be exported.

    """

    kind = "eagle3"

    def __init__(
        self,
        target_config: Any,
        aux_layers: list[int] | None = None,
        draft_vocab_size: int | None = None,
        attn_implementation: str | None = None,
        attention_bias: bool | None = None,
    ) -> None:
        super().__init__()
        self.family = arch.family_of(target_config)
        self.config = arch.layer_config(target_config, attn_implementation)
        h, v = self.config.hidden_size, self.config.vocab_size
        n = self.config.num_hidden_layers
        self.aux_layers = list(aux_layers or arch.default_eagle3_layers(n))
        bad = [i for i in self.aux_layers if not 0 <= i <= n]
        if bad:
            raise ValueError(
                f"aux_layers {bad} out of range: indices into output_hidden_states run 0..{n}"
            )
        self.draft_vocab_size = int(draft_vocab_size or v)
        if not 0 < self.draft_vocab_size <= v:
            raise ValueError(f"draft_vocab_size={self.draft_vocab_size} must be in [1, {v}]")
        self.fc = nn.Linear(len(self.aux_layers) * h, h, bias=False)
        self.midlayer = arch.make_layer(self.family, self.config, in_features=2 * h)
        if attention_bias is None:
            attention_bias = not self.family.llama_like
        self.attention_bias = bool(attention_bias)
        if not self.attention_bias:
            _drop_attention_biases(self.family, self.midlayer)
        self.midlayer.hidden_norm = arch.make_norm(self.family, self.config)
        self.norm = arch.make_norm(self.family, self.config)
        self.lm_head = nn.Linear(h, self.draft_vocab_size, bias=False)
        self.rotary = arch.make_rotary(self.family, self.config)
        self.register_buffer("d2t", torch.zeros(self.draft_vocab_size, dtype=torch.long))
        t2d = torch.zeros(v, dtype=torch.bool)
        t2d[: self.draft_vocab_size] = True
        self.register_buffer("t2d", t2d)

    def head_config(self) -> dict[str, Any]:
        """Return the head's own settings (saved in ``config.json`` beside the target's config)."""
        return {
            "kind": self.kind,
            "aux_layers": self.aux_layers,
            "draft_vocab_size": self.draft_vocab_size,
            "attention_bias": self.attention_bias,
        }

    def has_attention_bias(self) -> bool:
        """Whether any attention projection of the layer holds a bias."""
        attn = arch.attention(self.family, self.midlayer)
        return any(
            getattr(getattr(attn, name, None), "bias", None) is not None
            for name in (*self.family.qkv_attrs, "o_proj", "dense")
        )

    @torch.no_grad()
    def set_draft_vocab(self, token_ids: torch.Tensor) -> None:
        """Use the target tokens ``token_ids`` (``draft_vocab_size`` distinct ids) as vocabulary."""
        ids = torch.unique(token_ids.long().flatten().cpu())
        if ids.numel() != self.draft_vocab_size:
            raise ValueError(
                f"set_draft_vocab got {ids.numel()} distinct ids, expected draft_vocab_size="
                f"{self.draft_vocab_size}"
            )
        if not 0 <= int(ids[0]) <= int(ids[-1]) < self.t2d.numel():  # ids are sorted
            raise ValueError(f"draft vocab ids must lie in [0, {self.t2d.numel()}), got {ids}")
        ids = ids.to(self.d2t.device)
        self.d2t.copy_(ids - torch.arange(ids.numel(), device=ids.device))
        self.t2d.zero_()
        self.t2d[ids] = True

    def fuse(self, aux_hidden: torch.Tensor) -> torch.Tensor:
        """``fc`` over concatenated target layers [B, T, kH] -> [B, T, H]."""
        return self.fc(aux_hidden.to(self.fc.weight.dtype))

    def _layer(self, hidden_states, embeds, attention_mask, position_ids, cache) -> torch.Tensor:
        layer, fam = self.midlayer, self.family
        residual = hidden_states
        x = torch.cat((layer.input_layernorm(embeds), layer.hidden_norm(hidden_states)), dim=-1)
        pe = self.rotary(hidden_states, position_ids)
        mask = self._mask(attention_mask, hidden_states, cache)
        attn = arch.call_attention(fam, layer, x, pe, mask, cache)
        if not fam.llama_like and getattr(self.config, "use_parallel_residual", False):
            return residual + attn + layer.mlp(layer.post_attention_layernorm(residual))
        hidden = residual + attn
        return hidden + layer.mlp(layer.post_attention_layernorm(hidden))

    def logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary logits ``lm_head(norm(h))`` [B, T, H] -> [B, T, V_draft]."""
        return self.lm_head(self.norm(hidden_states))

    def to_target_ids(self, draft_ids: torch.Tensor) -> torch.Tensor:
        """Map draft-vocabulary ids to target ids (``draft_id + d2t[draft_id]``)."""
        return draft_ids + self.d2t[draft_ids]

    def target_to_draft_logits(self, target_logits: torch.Tensor) -> torch.Tensor:
        """Target logits [..., V] restricted to the draft vocabulary [..., V_draft]."""
        return target_logits[..., self.t2d]

    def draft_logits_to_target(self, draft_logits: torch.Tensor) -> torch.Tensor:
        """Scatter draft logits [..., V_draft] into the target vocabulary (others -inf)."""
        shape = (*draft_logits.shape[:-1], self.t2d.numel())
        out = draft_logits.new_full(shape, float("-inf"))
        out[..., self.t2d] = draft_logits
        return out


def _drop_attention_biases(family: arch.Family, layer: nn.Module) -> None:
    """Replace the layer's attention projections that carry a bias by bias-free ones."""
    attn = arch.attention(family, layer)
    for name in (*family.qkv_attrs, "o_proj", "dense"):
        old = getattr(attn, name, None)
        if isinstance(old, nn.Linear) and old.bias is not None:
            setattr(attn, name, nn.Linear(old.in_features, old.out_features, bias=False))


def draft_vocab_from_counts(counts: torch.Tensor, size: int) -> torch.Tensor:
    """Pick the ``size`` most frequent target tokens (ties broken by id), sorted by id.

    Args:
        counts: Token frequencies over the target vocabulary [V].
        size: Draft vocabulary size.

    """
    if size > counts.numel():
        raise ValueError(f"draft vocab size {size} exceeds the target vocabulary {counts.numel()}")
    order = torch.argsort(counts.double() * (counts.numel() + 1) - torch.arange(counts.numel()))
    return torch.sort(order.flip(0)[:size]).values


EagleHead = Eagle1Head | Eagle3Head


def build_head(target_config: Any, kind: str = "eagle1", **kwargs: Any) -> Eagle1Head | Eagle3Head:
    """Build an ``"eagle1"`` or ``"eagle3"`` head for a target config (kwargs go to the class)."""
    if kind == "eagle1":
        return Eagle1Head(target_config, **kwargs)
    if kind == "eagle3":
        return Eagle3Head(target_config, **kwargs)
    raise ValueError(f"head kind must be 'eagle1' or 'eagle3', got {kind!r}")
