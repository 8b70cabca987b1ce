"""Export heads to the layouts serving engines and the original EAGLE repository load.

* EAGLE-3 -> SGLang / vLLM (``LlamaForCausalLMEagle3``): ``config.json`` with
  ``num_hidden_layers: 1``, ``draft_vocab_size`` and
  ``eagle_config.eagle_aux_hidden_state_layer_ids``;
  ``model.safetensors`` with ``fc.weight``, ``midlayer.*``, ``norm.weight``, ``lm_head.weight``,
  ``d2t``, ``t2d``. SGLang skips unknown keys silently (a misnamed tensor would be served
  uninitialised), so the key set and every shape are validated here before anything is written.
* EAGLE-1/2 -> SafeAILab/EAGLE ``ea_model.py`` (``cnets1.Model``): ``config.json`` (a Llama config
  with ``num_hidden_layers: 1`` and ``bias``) + ``model.safetensors`` (optionally also
  ``pytorch_model.bin``, which ``ea_model.py`` tries first) with ``fc.*`` and ``layers.0.*``; no
  ``input_layernorm`` on layer 0 and no embeddings (EAGLE loads them from the base model).

Only Llama-layout targets (llama, mistral, qwen2) can be exported: the engines' EAGLE heads are
Llama layers. Qwen2's q/k/v biases are kept and flagged (``attention_bias``/``qkv_bias``).
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
_ARCH_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "vocab_size",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)


class ExportError(ValueError):
    """The state dict does not match the serving layout; the message lists every problem."""


def _check_exportable(head: Any) -> None:
    mt = head.config.model_type
    if mt not in EXPORTABLE:
        raise ExportError(
            f"cannot export a head for a {mt!r} target: SGLang/vLLM/EAGLE heads are Llama "
            f"layers; exportable target families: {EXPORTABLE}. Use save_head() instead"
        )


def _arch_fields(cfg: Any) -> dict[str, Any]:
    out = {}
    for key in _ARCH_KEYS:
        value = getattr(cfg, key, None)
        if value is not None:
            out[key] = value
    out.setdefault("head_dim", cfg.hidden_size // cfg.num_attention_heads)
    if isinstance(out.get("rope_parameters"), dict):  # transformers 5: theta lives here
        out.setdefault("rope_theta", out["rope_parameters"].get("rope_theta"))
    return out


def expected_shapes(config: dict[str, Any], kind: str) -> dict[str, tuple[int, ...]]:
    """Every tensor name of the serving layout with its shape, from an exported config."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    hd = config.get("head_dim") or h // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    bias = bool(config.get("attention_bias") or config.get("qkv_bias"))
    if kind == "eagle3":
        prefix, d_in = "midlayer.", 2 * h
        k = len(config["eagle_config"]["eagle_aux_hidden_state_layer_ids"])
        vd, v = config["draft_vocab_size"], config["vocab_size"]
        shapes = {
            "fc.weight": (h, k * h),
            "norm.weight": (h,),
            "lm_head.weight": (vd, h),
            "d2t": (vd,),
            "t2d": (v,),
            f"{prefix}input_layernorm.weight": (h,),
            f"{prefix}hidden_norm.weight": (h,),
        }
    else:
        prefix, d_in = "layers.0.", h
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
    if bias:
        for name, size in (("q", q), ("k", kv), ("v", kv)):
            shapes[f"{prefix}self_attn.{name}_proj.bias"] = (size,)
    return shapes


def validate_state_dict(state: dict[str, torch.Tensor], config: dict[str, Any], kind: str) -> None:
    """Check names and shapes key by key against the serving layout.

    Raises:
        ExportError: Listing missing keys, unexpected keys and shape mismatches.

    """
    want = expected_shapes(config, kind)
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    bad = [
        f"{k}: {tuple(state[k].shape)} != {want[k]}"
        for k in sorted(set(want) & set(state))
        if tuple(state[k].shape) != want[k]
    ]
    if missing or unexpected or bad:
        raise ExportError(
            f"{kind} state dict does not match the serving layout: missing keys {missing}, "
            f"unexpected keys {unexpected}, shape mismatches {bad}"
        )


def _write(
    directory: Path, config: dict, state: dict[str, torch.Tensor], torch_bin: bool = False
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / "model.safetensors")
    if torch_bin:
        torch.save(state, directory / "pytorch_model.bin")
    (directory / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return directory


def _state(head: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in head.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous()
    return out


def eagle3_config(head: Eagle3Head, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Build the SGLang/vLLM ``config.json`` of an EAGLE-3 head."""
    _check_exportable(head)
    cfg = head.config
    bad = [i for i in head.aux_layers if not 1 <= i < cfg.num_hidden_layers]
    if bad:
        raise ExportError(
            f"aux_layers {bad} cannot be served: engines capture decoder-layer outputs, i.e. "
            f"hidden_states indices 1..{cfg.num_hidden_layers - 1}"
        )
    out = {"architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama"}
    out.update(_arch_fields(cfg))
    bias = head.family.model_type == "qwen2"
    out.update(
        {
            "num_hidden_layers": 1,
            "draft_vocab_size": head.draft_vocab_size,
            "tie_word_embeddings": False,
            "attention_bias": bias,
            "torch_dtype": str(dtype or head.fc.weight.dtype).replace("torch.", ""),
            "eagle_config": {"eagle_aux_hidden_state_layer_ids": [i - 1 for i in head.aux_layers]},
            "adaspec_eagle": {
                "kind": "eagle3",
                "target_model_type": cfg.model_type,
                "target_num_hidden_layers": cfg.num_hidden_layers,
            },
        }
    )
    return out


def export_eagle3(
    head: Eagle3Head, directory: str | os.PathLike, dtype: torch.dtype | None = None
) -> Path:
    """Write an EAGLE-3 head in the SGLang/vLLM layout after validating every tensor."""
    config = eagle3_config(head, dtype)
    state = _state(head, dtype)
    state["d2t"], state["t2d"] = state["d2t"].long(), state["t2d"].bool()
    validate_state_dict(state, config, "eagle3")
    return _write(Path(directory), config, state)


def eagle1_config(head: Eagle1Head, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Build the SafeAILab/EAGLE ``config.json`` of an EAGLE-1/2 head."""
    _check_exportable(head)
    out = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    out.update(_arch_fields(head.config))
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
    fields.pop("rope_scaling", None)
    fields["num_hidden_layers"] = num_layers
    return AutoConfig.for_model(meta.get("target_model_type", "llama"), **fields)


def load_export(directory: str | os.PathLike, target: torch.nn.Module | None = None):
    """Reload an exported head (either layout) as an :class:`Eagle1Head`/:class:`Eagle3Head`.

    The file is validated against its config first; every tensor is loaded strictly.
    """
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    state = load_file(str(directory / "model.safetensors"))
    kind = "eagle3" if "LlamaForCausalLMEagle3" in config.get("architectures", []) else "eagle1"
    validate_state_dict(state, config, kind)
    if kind == "eagle3":
        ids = config["eagle_config"]["eagle_aux_hidden_state_layer_ids"]
        n = config.get("adaspec_eagle", {}).get("target_num_hidden_layers", max(ids) + 2)
        head = Eagle3Head(
            _target_config(config, n),
            aux_layers=[i + 1 for i in ids],
            draft_vocab_size=config["draft_vocab_size"],
        )
    else:
        head = Eagle1Head(_target_config(config, 1), bias=bool(config.get("bias", True)))
    dtype = state["fc.weight"].dtype
    head.to(dtype)
    head.load_state_dict(state, strict=True)
    if target is not None:
        head.attach(target)
    return head
