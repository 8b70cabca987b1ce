"""Validation of exported heads: what the engines build from a config, names, shapes, vocab maps.

Used by :mod:`adaspec_eagle.export` before anything is written and when an export is reloaded.
"""

from __future__ import annotations

from typing import Any

import torch

EAGLE3_ARCH = "LlamaForCausalLMEagle3"
NUM_AUX = 3  # SGLang, vLLM and EAGLE all build fc = Linear(3 * hidden, hidden)


class ExportError(ValueError):
    """The head or state dict does not fit the serving layout; the message lists every problem."""


def aux_layer_problems(ids: Any, num_target_layers: int | None, what: str) -> list[str]:
    """Problems of hidden-states indices ``ids`` as serving aux layers (empty when fine)."""
    ok = isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    if not ok or len(ids) != NUM_AUX or len(set(ids)) != NUM_AUX or ids != sorted(ids):
        return [
            f"{what} {ids} must be exactly three distinct, sorted target layers: SGLang, vLLM "
            "and EAGLE build fc for 3 x hidden and capture layers in ascending order. Train the "
            "head with aux_layers=[low, mid, high] (hidden_states indices), e.g. "
            "adaspec_eagle.arch.default_eagle3_layers(L) for a target of 7+ layers"
        ]
    if num_target_layers is not None and not all(1 <= i < num_target_layers for i in ids):
        return [
            f"{what} {ids} cannot be served: engines capture decoder-layer outputs, i.e. "
            f"hidden_states indices 1..{num_target_layers - 1}"
        ]
    return []


def serving_problems(config: dict[str, Any]) -> list[str]:
    """What SGLang/vLLM would build from an EAGLE-3 ``config.json`` that no tensor here fills.

    Returns:
        One sentence per problem (empty when the engines build exactly the exported layout).

    """
    out = []
    if config.get("architectures") != [EAGLE3_ARCH] or config.get("num_hidden_layers") != 1:
        out.append(f"architectures must be [{EAGLE3_ARCH!r}] with num_hidden_layers 1")
    if config.get("attention_bias"):
        out.append(
            "attention_bias is true: vLLM builds qkv_proj and o_proj with bias, SGLang o_proj "
            "(qkv_proj never): midlayer.self_attn.o_proj.bias would be served uninitialised"
        )
    if config.get("bias"):
        out.append(
            "'bias' is set: SGLang builds fc with bias=config.bias (fc.bias unfilled) and both "
            "engines take it as attention_bias (midlayer.self_attn.o_proj.bias unfilled)"
        )
    if "qkv_bias" in config:
        out.append("'qkv_bias' is set: vLLM's base attention would build q/k/v biases")
    if config.get("mlp_bias"):
        out.append("mlp_bias is true: vLLM builds MLP biases, SGLang does not")
    if config.get("tie_word_embeddings"):
        out.append(
            "tie_word_embeddings is true: SGLang serves lm_head = embed_tokens and ignores "
            "lm_head.weight"
        )
    if config.get("norm_before_residual"):
        out.append("norm_before_residual is true: vLLM would feed the normed hidden as residual")
    if not config.get("draft_vocab_size"):
        out.append("draft_vocab_size missing: SGLang would load the target's lm_head instead")
    if config.get("target_hidden_size", config.get("hidden_size")) != config.get("hidden_size"):
        out.append("target_hidden_size differs from hidden_size: not the layout trained here")
    top = config.get("eagle_aux_hidden_state_layer_ids")
    nested = (config.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids")
    n = (config.get("adaspec_eagle") or {}).get("target_num_hidden_layers")
    out += aux_layer_problems(top, n, "eagle_aux_hidden_state_layer_ids (vLLM)")
    if (
        not isinstance(nested, list)
        or not isinstance(top, list)
        or nested != [i - 1 for i in top if isinstance(i, int)]
    ):
        out.append(
            f"eagle_config.eagle_aux_hidden_state_layer_ids {nested} must be the vLLM ids {top} "
            "minus one (SGLang captures layer_id + 1)"
        )
    return out


def expected_shapes(config: dict[str, Any], kind: str) -> dict[str, tuple[int, ...]]:
    """Every tensor name of the serving layout with its shape, from an exported config.

    EAGLE-3: the modules SGLang/vLLM build for a config without :func:`serving_problems` (no
    biases, ``fc`` over 3 x hidden). EAGLE-1: what ``cnets1.Model`` builds (``fc`` bias from
    ``bias``, q/k/v biases when ``qkv_bias`` is present).
    """
    h, inter = config["hidden_size"], config["intermediate_size"]
    hd = config.get("head_dim") or h // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    if kind == "eagle3":
        prefix, d_in, qkv_bias = "midlayer.", 2 * h, False
        vd, v = config["draft_vocab_size"], config["vocab_size"]
        shapes = {
            "fc.weight": (h, NUM_AUX * h),
            "norm.weight": (h,),
            "lm_head.weight": (vd, h),
            "d2t": (vd,),
            "t2d": (v,),
            f"{prefix}input_layernorm.weight": (h,),
            f"{prefix}hidden_norm.weight": (h,),
        }
    else:
        prefix, d_in, qkv_bias = "layers.0.", h, bool(config.get("qkv_bias"))
        shapes = {"fc.weight": (h, 2 * h)}
        if config.get("bias", True):
            shapes["fc.bias"] = (h,)
    shapes.update(
        {
            f"{prefix}self_attn.q_proj.weight": (q, d_in),
            f"{prefix}self_attn.k_proj.weight": (kv, d_in),
            f"{prefix}self_attn.v_proj.weight": (kv, d_in),
            f"{prefix}self_attn.o_proj.weight": (h, q),
            f"{prefix}mlp.gate_proj.weight": (inter, h),
            f"{prefix}mlp.up_proj.weight": (inter, h),
            f"{prefix}mlp.down_proj.weight": (h, inter),
            f"{prefix}post_attention_layernorm.weight": (h,),
        }
    )
    if qkv_bias:
        for name, size in (("q", q), ("k", kv), ("v", kv)):
            shapes[f"{prefix}self_attn.{name}_proj.bias"] = (size,)
    return shapes


def _vocab_problems(state: dict[str, torch.Tensor], config: dict[str, Any]) -> list[str]:
    d2t, t2d = state["d2t"], state["t2d"]
    if d2t.is_floating_point() or t2d.dtype != torch.bool:
        return [f"d2t must be an integer tensor and t2d bool, got {d2t.dtype} and {t2d.dtype}"]
    ids = torch.arange(d2t.numel()) + d2t.long().cpu()
    out = []
    if ids.numel() > 1 and not bool((ids[1:] > ids[:-1]).all()):
        bad = int((ids[1:] <= ids[:-1]).nonzero()[0]) + 1
        out.append(f"arange + d2t must be strictly increasing; draft id {bad} maps to {ids[bad]}")
    if ids.numel() and not (0 <= int(ids.min()) and int(ids.max()) < config["vocab_size"]):
        out.append(
            f"arange + d2t must lie in [0, vocab_size={config['vocab_size']}), got "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )
    kept = t2d.cpu().nonzero().flatten()
    if kept.numel() != ids.numel() or not torch.equal(kept, ids):
        out.append(
            "arange + d2t must equal nonzero(t2d) (the draft vocabulary as target ids): "
            f"{kept.numel()} ids in t2d, {ids.numel()} in d2t"
        )
    return out


def validate_state_dict(state: dict[str, torch.Tensor], config: dict[str, Any], kind: str) -> None:
    """Check the config (EAGLE-3: what the engines build), names, shapes and ``d2t``/``t2d``.

    Raises:
        ExportError: Listing every problem found.

    """
    problems = serving_problems(config) if kind == "eagle3" else []
    want = expected_shapes(config, kind)
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    bad = [
        f"{k}: {tuple(state[k].shape)} != {want[k]}"
        for k in sorted(set(want) & set(state))
        if tuple(state[k].shape) != want[k]
    ]
    if missing or unexpected or bad:
        problems.insert(
            0,
            f"{kind} state dict does not match the serving layout: missing keys {missing}, "
            f"unexpected keys {unexpected}, shape mismatches {bad}",
        )
    elif kind == "eagle3":
        problems += _vocab_problems(state, config)
    if problems:
        raise ExportError("; ".join(problems))
