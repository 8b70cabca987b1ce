"""An independent, plain-torch EAGLE-3 draft forward as SGLang and vLLM run an exported head.

Written from the engines' ``llama_eagle3.py`` (see docs/integration.md for the commits), it uses
nothing of :mod:`adaspec_eagle.heads`, :mod:`adaspec_eagle.arch` or transformers' modeling code:
it reads only the exported ``config.json`` and ``model.safetensors`` (plus the target's input
embedding, which the engines share with the draft model).

Loading mimics the engines' ``load_weights``: it builds the parameters the engine would build from
the config (SGLang: ``qkv_proj`` never has a bias, ``o_proj`` has one when ``attention_bias`` or
``bias`` is set, ``fc`` when ``bias`` is; vLLM: ``qkv_proj``/``o_proj`` biases from
``attention_bias``, MLP biases from ``mlp_bias``), fuses ``q/k/v`` and ``gate/up`` as the engines
do, and records in :attr:`ServingEagle3.problems` every tensor the engine would skip (SGLang,
silently) or fail on (vLLM) and every parameter no tensor fills (left at zero here; uninitialised
memory in the engines).

Forward (one draft step over ``T`` positions, engines' semantics)::

    h      = fc(aux)                          # when aux is 3 x hidden wide
    x      = cat(rms(embed(ids), input_layernorm), rms(h, hidden_norm))
    a      = o_proj(attention(rope(qkv_proj(x))))           # KV cache across steps
    r      = h + a;  out = r + mlp(rms(r, post_attention_layernorm))
    logits = lm_head(rms(out, norm))          # draft vocabulary; target id = id + d2t[id]

``out`` (the pre-norm value) is the next step's ``h``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

ENGINES = ("sglang", "vllm")
_ACTS = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


class ServingLoadError(ValueError):
    """The exported files cannot be built into the engine's model at all."""


def _rms(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def _rotate_half(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def engine_aux_layers(config: dict[str, Any], engine: str) -> list[int] | None:
    """Hidden-states indices of the target layers the engine feeds the head (None: its default).

    vLLM reads the top-level ``eagle_aux_hidden_state_layer_ids`` as they are; SGLang reads
    ``eagle_config.eagle_aux_hidden_state_layer_ids`` and captures ``layer_id + 1``.
    """
    if engine == "vllm":
        ids = config.get("eagle_aux_hidden_state_layer_ids")
        return list(ids) if ids else None
    ids = (config.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids")
    return [i + 1 for i in ids] if ids else None


class ServingEagle3(nn.Module):
    """The EAGLE-3 draft model an engine builds from an export; see the module docstring.

    Use :meth:`load`. Attributes: ``aux_layer_ids`` (hidden-states indices), ``problems``
    (sentences; empty when the engine loads every tensor into a parameter and fills them all).
    """

    def __init__(self, config: dict[str, Any], engine: str) -> None:
        super().__init__()
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.cfg, self.engine = config, engine
        self.hidden_size = h = int(config["hidden_size"])
        self.num_heads = int(config["num_attention_heads"])
        self.num_kv = int(config.get("num_key_value_heads") or self.num_heads)
        self.head_dim = int(config.get("head_dim") or h // self.num_heads)
        self.eps = float(config["rms_norm_eps"])
        self.vocab_size = int(config["vocab_size"])
        self.draft_vocab_size = int(config.get("draft_vocab_size") or self.vocab_size)
        act = config.get("hidden_act", "silu")
        if act not in _ACTS:
            raise ServingLoadError(f"hidden_act {act!r} is not implemented by the reference")
        self.act = _ACTS[act]
        self.problems: list[str] = []
        target_layers = (config.get("adaspec_eagle") or {}).get("target_num_hidden_layers")
        ids = engine_aux_layers(config, engine)
        if ids is None:
            if target_layers is None:
                raise ServingLoadError("no aux layer ids and no target layer count in config")
            ids = [2, target_layers // 2, target_layers - 3]
            self.problems.append(f"{engine} falls back to its default aux layers {ids}")
        self.aux_layer_ids = ids
        self._init_rope(config)
        q, kv = self.num_heads * self.head_dim, self.num_kv * self.head_dim
        inter = int(config["intermediate_size"])
        attention_bias = bool(config.get("attention_bias") or config.get("bias"))
        if engine == "sglang":
            qkv_bias, o_bias, mlp_bias = False, attention_bias, False
            fc_bias = bool(config.get("bias"))
        else:
            qkv_bias = bool(config.get("attention_bias"))
            o_bias, mlp_bias, fc_bias = attention_bias, bool(config.get("mlp_bias")), False
        if engine == "vllm" and config.get("norm_before_residual"):
            self.problems.append("vLLM normalises the residual (norm_before_residual)")
        shapes: dict[str, tuple[int, ...]] = {
            "fc.weight": (h, 3 * h),
            "input_layernorm": (h,),
            "hidden_norm": (h,),
            "post_attention_layernorm": (h,),
            "qkv.weight": (q + 2 * kv, 2 * h),
            "o.weight": (h, q),
            "gate_up.weight": (2 * inter, h),
            "down.weight": (h, inter),
            "norm": (h,),
            "lm_head": (self.draft_vocab_size, h),
        }
        for name, on, shape in (
            ("fc.bias", fc_bias, (h,)),
            ("qkv.bias", qkv_bias, (q + 2 * kv,)),
            ("o.bias", o_bias, (h,)),
            ("gate_up.bias", mlp_bias, (2 * inter,)),
            ("down.bias", mlp_bias, (h,)),
        ):
            if on:
                shapes[name] = shape
        self.shapes = shapes
        for name, shape in shapes.items():
            self.register_buffer(name.replace(".", "_"), torch.zeros(shape))
        self.register_buffer("d2t", torch.zeros(self.draft_vocab_size, dtype=torch.long))
        self._filled: set[str] = set()
        self.embed: Tensor | None = None

    def _init_rope(self, config: dict[str, Any]) -> None:
        scaling = config.get("rope_scaling") or {}
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind not in ("default", "linear"):
            raise ServingLoadError(f"rope type {kind!r} is not implemented by the reference")
        theta = float(config.get("rope_theta") or 10000.0)
        d = self.head_dim
        self.inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        self.pos_scale = 1.0 / float(scaling.get("factor", 1.0)) if kind == "linear" else 1.0

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, directory: str | os.PathLike, embed_tokens: Tensor, engine: str = "sglang"
    ) -> ServingEagle3:
        """Build the engine's model from an export; ``embed_tokens`` is the target's [V, H]."""
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        if config.get("architectures") != ["LlamaForCausalLMEagle3"]:
            raise ServingLoadError(f"{directory} is not an EAGLE-3 export")
        model = cls(config, engine)
        state = load_file(str(directory / "model.safetensors"))
        dtype = state["fc.weight"].dtype
        model.to(device=embed_tokens.device, dtype=dtype)
        model.embed = embed_tokens.detach().to(dtype)
        for name, tensor in state.items():
            model._load_one(name, tensor)
        if engine == "sglang" and config.get("tie_word_embeddings"):
            model.lm_head.copy_(model.embed[: model.draft_vocab_size])  # lm_head = embed_tokens
            model._filled.add("lm_head")
        unfilled = sorted(set(model.shapes) - model._filled)
        if unfilled:
            model.problems.append(f"{engine} parameters no tensor fills: {unfilled}")
        return model.eval()

    def _put(self, key: str, tensor: Tensor, rows: slice | None = None) -> None:
        buf = getattr(self, key.replace(".", "_"))
        target = buf if rows is None else buf[rows]
        if tuple(target.shape) != tuple(tensor.shape):
            raise ServingLoadError(f"{key}: shape {tuple(tensor.shape)} != {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(tensor)
        self._filled.add(key)

    def _load_one(self, name: str, tensor: Tensor) -> None:
        q, kv = self.num_heads * self.head_dim, self.num_kv * self.head_dim
        inter = self.shapes["down.weight"][1]
        if name == "d2t":
            self.d2t.copy_(tensor.long())
            return
        if name == "t2d":
            return  # both engines skip t2d
        base = name.removeprefix("midlayer.").removeprefix("self_attn.").removeprefix("mlp.")
        stem, _, kind = base.rpartition(".")
        spans = {
            "q_proj": ("qkv", slice(0, q)),
            "k_proj": ("qkv", slice(q, q + kv)),
            "v_proj": ("qkv", slice(q + kv, q + 2 * kv)),
            "gate_proj": ("gate_up", slice(0, inter)),
            "up_proj": ("gate_up", slice(inter, 2 * inter)),
            "o_proj": ("o", None),
            "down_proj": ("down", None),
            "fc": ("fc", None),
        }
        if stem in spans:
            key, rows = spans[stem]
            key = f"{key}.{kind}"
        elif kind == "weight" and stem in ("input_layernorm", "hidden_norm", "norm", "lm_head",
                                           "post_attention_layernorm"):  # fmt: skip
            key, rows = stem, None
        else:
            key, rows = None, None
        if key not in self.shapes:
            how = "skips" if self.engine == "sglang" else "fails to load (KeyError)"
            self.problems.append(f"{self.engine} {how} {name}: it builds no such parameter")
            return
        self._put(key, tensor, rows)

    # ------------------------------------------------------------------ forward
    def fuse(self, aux: Tensor) -> Tensor:
        """``fc`` over the concatenated aux hidden states [..., 3H] -> [..., H]."""
        aux = aux.to(self.fc_weight.dtype)
        if aux.shape[-1] == self.hidden_size:
            return aux
        return F.linear(aux, self.fc_weight, getattr(self, "fc_bias", None))

    def _cos_sin(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        freqs = positions.double()[..., None] * self.pos_scale * self.inv_freq.to(positions.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]

    def step(
        self,
        hidden_states: Tensor,
        input_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: Any = None,
    ) -> Tensor:
        """One draft step.

        Args:
            hidden_states: Fused features or the previous step's output [B, T, H].
            input_ids: Tokens [B, T] (or ``inputs_embeds``).
            inputs_embeds: Embeddings [B, T, H].
            attention_mask: 4D additive mask [B, 1, T, past + T]; causal when None.
            position_ids: Rotary positions [B, T]; ``past ..`` by default.
            cache: An object with ``update(k, v, layer_idx) -> (k_all, v_all)`` and
                ``get_seq_length()`` (e.g. a transformers ``DynamicCache``), or None.

        Returns:
            The pre-norm output [B, T, H].

        """
        dtype = self.fc_weight.dtype
        h = hidden_states.to(dtype)
        if inputs_embeds is None:
            inputs_embeds = F.embedding(input_ids, self.embed)
        b, t, _ = h.shape
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=h.device)[None].expand(b, t)
        x = torch.cat(
            (_rms(inputs_embeds.to(dtype), self.input_layernorm, self.eps),
             _rms(h, self.hidden_norm, self.eps)), dim=-1,
        )  # fmt: skip
        qkv = F.linear(x, self.qkv_weight, getattr(self, "qkv_bias", None))
        q_n, kv_n = self.num_heads * self.head_dim, self.num_kv * self.head_dim
        q, k, v = qkv.split((q_n, kv_n, kv_n), dim=-1)
        q = q.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.num_kv, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.num_kv, self.head_dim).transpose(1, 2)
        cos, sin = self._cos_sin(position_ids, dtype)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        if cache is not None:
            k, v = cache.update(k, v, 0)
        rep = self.num_heads // self.num_kv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if attention_mask is None:
            s = k.shape[2]
            allowed = torch.ones(t, s, dtype=torch.bool, device=h.device).tril(s - t)
            attention_mask = torch.zeros(t, s, dtype=dtype, device=h.device).masked_fill(
                ~allowed, torch.finfo(dtype).min
            )
        scores = scores + attention_mask.to(dtype)
        attn = torch.softmax(scores.float(), dim=-1).to(dtype) @ v
        attn = attn.transpose(1, 2).reshape(b, t, q_n)
        residual = h + F.linear(attn, self.o_weight, getattr(self, "o_bias", None))
        y = _rms(residual, self.post_attention_layernorm, self.eps)
        gate, up = F.linear(y, self.gate_up_weight, getattr(self, "gate_up_bias", None)).chunk(
            2, -1
        )
        mlp = F.linear(self.act(gate) * up, self.down_weight, getattr(self, "down_bias", None))
        return residual + mlp

    def logits(self, out: Tensor) -> Tensor:
        """Draft-vocabulary logits ``lm_head(norm(out))`` [..., V_draft]."""
        return F.linear(_rms(out, self.norm, self.eps), self.lm_head)

    def target_logits(self, draft_logits: Tensor) -> Tensor:
        """Scatter to the target vocabulary at ``arange + d2t`` (vLLM's ``compute_logits``)."""
        out = draft_logits.new_full((*draft_logits.shape[:-1], self.vocab_size), float("-inf"))
        targets = torch.arange(self.draft_vocab_size, device=draft_logits.device) + self.d2t
        out[..., targets] = draft_logits
        return out
