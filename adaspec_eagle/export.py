"""Export heads to the layouts serving engines and the original EAGLE repository load.

* EAGLE-3 -> SGLang / vLLM (``LlamaForCausalLMEagle3``): ``config.json`` with
  ``num_hidden_layers: 1``, ``draft_vocab_size``, ``attention_bias: false``, the aux layers in
  each engine's convention (top-level ``eagle_aux_hidden_state_layer_ids`` = hidden-states
  indices, read by vLLM; ``eagle_config.eagle_aux_hidden_state_layer_ids`` = one less, read by
  SGLang) and ``model.safetensors`` with ``fc.weight``, ``midlayer.*``, ``norm.weight``,
  ``lm_head.weight``, ``d2t``, ``t2d``. Engines skip unknown tensors and leave parameters no tensor
  fills uninitialised (SGLang silently, vLLM's EAGLE-3 ``load_weights`` without its strict check),
  so :func:`validate_state_dict` checks the config for what the engines will *build* from it
  (:func:`serving_problems`), then every name, shape and the ``d2t``/``t2d`` values.
* EAGLE-1/2 -> SafeAILab/EAGLE ``ea_model.py`` (``cnets1.Model``, ``EaModel.from_pretrained(...,
  use_eagle3=False)``): ``config.json`` (a Llama config with ``num_hidden_layers: 1``, ``bias``,
  ``rope_theta`` and a ``rope_scaling`` only of the ``{type: linear|dynamic, factor}`` form
  ``EConfig`` accepts) + ``model.safetensors`` (optionally ``pytorch_model.bin``, which
  ``ea_model.py`` tries first) with ``fc.*`` and ``layers.0.*``; no ``input_layernorm`` on layer
  0 and no embeddings (EAGLE loads them from the base model).

Only Llama-layout targets (llama, mistral, qwen2) can be exported: the engines' EAGLE heads are
Llama layers. See docs/integration.md for the upstream commits these layouts were checked against.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig

from adaspec_eagle.heads import Eagle1Head, Eagle3Head

EXPORTABLE = ("llama", "mistral", "qwen2")
EAGLE3_ARCH = "LlamaForCausalLMEagle3"
NUM_AUX = 3  # SGLang, vLLM and EAGLE all build fc = Linear(3 * hidden, hidden)
_ARCH_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "vocab_size",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)


class ExportError(ValueError):
    """The head or state dict does not fit the serving layout; the message lists every problem."""


def _check_exportable(head: Any) -> None:
    mt = head.config.model_type
    if mt not in EXPORTABLE:
        raise ExportError(
            f"cannot export a head for a {mt!r} target: SGLang/vLLM/EAGLE heads are Llama "
            f"layers; exportable target families: {EXPORTABLE}. Use save_head() instead"
        )


def rope_settings(cfg: Any) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, scaling)`` of a transformers config; ``scaling`` is None for default rope.

    ``scaling`` is the transformers-4 ``rope_scaling`` dict (``rope_type`` plus its parameters,
    without ``rope_theta``), which SGLang's and vLLM's ``get_rope`` read.
    """
    params = getattr(cfg, "rope_parameters", None)
    if not isinstance(params, dict):
        params = getattr(cfg, "rope_scaling", None) or {}
    if params and all(isinstance(v, dict) for v in params.values()):  # per layer type
        params = params.get("full_attention") or next(iter(params.values()))
    theta = float(params.get("rope_theta") or getattr(cfg, "rope_theta", None) or 10000.0)
    rope_type = params.get("rope_type", params.get("type")) or "default"
    if rope_type == "default":
        return theta, None
    scaling = {k: v for k, v in params.items() if k not in ("rope_theta", "type", "rope_type")}
    return theta, {"rope_type": rope_type, **scaling}


def _arch_fields(cfg: Any) -> dict[str, Any]:
    out = {k: getattr(cfg, k) for k in _ARCH_KEYS if getattr(cfg, k, None) is not None}
    out.setdefault("head_dim", cfg.hidden_size // cfg.num_attention_heads)
    return out


def _eagle1_rope(cfg: Any) -> dict[str, Any]:
    """``rope_theta`` and, if any, the two-key ``rope_scaling`` EAGLE's ``EConfig`` accepts."""
    theta, scaling = rope_settings(cfg)
    out: dict[str, Any] = {"rope_theta": theta}
    if scaling is None:
        return out
    kind, factor = scaling["rope_type"], scaling.get("factor")
    if kind not in ("linear", "dynamic") or not isinstance(factor, (int, float)) or factor <= 1:
        raise ExportError(
            f"the target's rope scaling {scaling} cannot be expressed for SafeAILab/EAGLE: "
            "eagle/model/configs.py accepts only rope_scaling={'type': 'linear'|'dynamic', "
            "'factor': float > 1} and cnets1.py builds nothing else, so EaModel would draft "
            f"with a different rotary embedding than the target's {kind!r}. Export an EAGLE-3 "
            "head for SGLang/vLLM instead, or patch cnets1._init_rope"
        )
    out["rope_scaling"] = {"type": kind, "factor": float(factor)}
    return out


def _eagle3_rope(cfg: Any) -> dict[str, Any]:
    theta, scaling = rope_settings(cfg)
    params = {"rope_type": "default", "rope_theta": theta}
    if scaling is not None:
        params = {**scaling, "rope_theta": theta}
    return {"rope_theta": theta, "rope_scaling": scaling, "rope_parameters": params}


def _aux_problems(ids: Any, num_target_layers: int | None, what: str) -> list[str]:
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


def eagle3_config(head: Eagle3Head, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Build the SGLang/vLLM ``config.json`` of an EAGLE-3 head.

    Raises:
        ExportError: For a non-Llama-layout target, attention biases, or aux layers the engines
            cannot capture.

    """
    _check_exportable(head)
    cfg = head.config
    if head.attention_bias or head.has_attention_bias():
        raise ExportError(
            "this EAGLE-3 head has attention biases (attention_bias=True): SGLang's EAGLE-3 layer "
            "builds qkv_proj without bias and skips those tensors silently, and vLLM builds an "
            "o_proj bias no tensor fills. Train serving heads with attention_bias=False (the "
            "default of Eagle3Head)"
        )
    problems = _aux_problems(list(head.aux_layers), cfg.num_hidden_layers, "aux_layers")
    if problems:
        raise ExportError(problems[0])
    out: dict[str, Any] = {"architectures": [EAGLE3_ARCH], "model_type": "llama"}
    out.update(_arch_fields(cfg))
    out.update(_eagle3_rope(cfg))
    out.update(
        {
            "num_hidden_layers": 1,
            "draft_vocab_size": head.draft_vocab_size,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "mlp_bias": False,
            "norm_before_residual": False,
            "torch_dtype": str(dtype or head.fc.weight.dtype).replace("torch.", ""),
            "eagle_aux_hidden_state_layer_ids": list(head.aux_layers),
            "eagle_config": {
                "eagle_aux_hidden_state_layer_ids": [i - 1 for i in head.aux_layers],
                "use_aux_hidden_state": True,
            },
            "adaspec_eagle": {
                "kind": "eagle3",
                "target_model_type": cfg.model_type,
                "target_num_hidden_layers": cfg.num_hidden_layers,
            },
        }
    )
    return out


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
    out += _aux_problems(top, n, "eagle_aux_hidden_state_layer_ids (vLLM)")
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


def _write(
    directory: Path, config: dict, state: dict[str, torch.Tensor], torch_bin: bool = False
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / "model.safetensors")
    if torch_bin:
        torch.save(state, directory / "pytorch_model.bin.tmp")
        os.replace(directory / "pytorch_model.bin.tmp", directory / "pytorch_model.bin")
    (directory / "config.json.tmp").write_text(json.dumps(config, indent=2, default=str))
    os.replace(directory / "config.json.tmp", directory / "config.json")
    return directory


def _state(head: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in head.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous()
    if "d2t" in out:
        out["d2t"], out["t2d"] = out["d2t"].long(), out["t2d"].bool()
    return out


def export_eagle3(
    head: Eagle3Head, directory: str | os.PathLike, dtype: torch.dtype | None = None
) -> Path:
    """Write an EAGLE-3 head in the SGLang/vLLM layout after validating config and tensors."""
    config = eagle3_config(head, dtype)
    state = _state(head, dtype)
    validate_state_dict(state, config, "eagle3")
    return _write(Path(directory), config, state)


def eagle1_config(head: Eagle1Head, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Build the SafeAILab/EAGLE ``config.json`` of an EAGLE-1/2 head (see the module doc)."""
    _check_exportable(head)
    out = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    out.update(_arch_fields(head.config))
    out.update(_eagle1_rope(head.config))
    out.update(
        {
            "num_hidden_layers": 1,
            "bias": head.bias,
            "torch_dtype": str(dtype or head.fc.weight.dtype).replace("torch.", ""),
            "adaspec_eagle": {"kind": "eagle1", "target_model_type": head.config.model_type},
        }
    )
    if head.family.model_type == "qwen2":
        out["qkv_bias"] = True  # cnets1.LlamaAttention: hasattr(config, "qkv_bias")
    return out


def export_eagle1(
    head: Eagle1Head,
    directory: str | os.PathLike,
    dtype: torch.dtype | None = None,
    torch_bin: bool = False,
) -> Path:
    """Write an EAGLE-1/2 head in the layout SafeAILab/EAGLE's ``EaModel`` loads."""
    config = eagle1_config(head, dtype)
    state = _state(head, dtype)
    validate_state_dict(state, config, "eagle1")
    return _write(Path(directory), config, state, torch_bin=torch_bin)


def export_head(head: Eagle1Head | Eagle3Head, directory: str | os.PathLike, **kw: Any) -> Path:
    """Export either head kind to its serving layout."""
    if isinstance(head, Eagle3Head):
        return export_eagle3(head, directory, **kw)
    return export_eagle1(head, directory, **kw)


def _target_config(config: dict[str, Any], num_layers: int) -> Any:
    meta = config.get("adaspec_eagle", {})
    fields = {k: config[k] for k in _ARCH_KEYS if k in config}
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict):
        scaling = dict(config.get("rope_scaling") or {})
        kind = scaling.pop("rope_type", scaling.pop("type", "default"))
        rope = {"rope_type": kind, **scaling, "rope_theta": config.get("rope_theta", 10000.0)}
    fields["rope_parameters"] = rope
    fields["num_hidden_layers"] = num_layers
    return AutoConfig.for_model(meta.get("target_model_type", "llama"), **fields)


def is_export(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds an exported serving layout (not a native checkpoint)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        return False
    config = json.loads(path.read_text())
    return "target_config" not in config and "architectures" in config


def load_export(directory: str | os.PathLike, target: torch.nn.Module | None = None):
    """Reload an exported head (either layout) as an :class:`Eagle1Head`/:class:`Eagle3Head`.

    The file is validated against its config first; every tensor is loaded strictly.
    """
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    state = load_file(str(directory / "model.safetensors"))
    kind = "eagle3" if EAGLE3_ARCH in config.get("architectures", []) else "eagle1"
    validate_state_dict(state, config, kind)
    if kind == "eagle3":
        ids = config["eagle_aux_hidden_state_layer_ids"]
        n = config.get("adaspec_eagle", {}).get("target_num_hidden_layers", max(ids) + 1)
        head = Eagle3Head(
            _target_config(config, n),
            aux_layers=list(ids),
            draft_vocab_size=config["draft_vocab_size"],
            attention_bias=False,
        )
    else:
        head = Eagle1Head(_target_config(config, 1), bias=bool(config.get("bias", True)))
    head.to(state["fc.weight"].dtype)
    head.load_state_dict(state, strict=True)
    if target is not None:
        head.attach(target)
    return head


def load_any(directory: str | os.PathLike, target: torch.nn.Module | None = None):
    """Load a native head checkpoint or an exported folder (whichever ``directory`` holds)."""
    if is_export(directory):
        return load_export(directory, target)
    from adaspec_eagle.checkpoint import load_head

    return load_head(directory, target)
