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

from adaspec_eagle.export_checks import (
    EAGLE3_ARCH,
    ExportError,
    aux_layer_problems,
    expected_shapes,
    serving_problems,
    validate_state_dict,
)
from adaspec_eagle.heads import Eagle1Head, Eagle3Head

__all__ = [
    "EAGLE3_ARCH",
    "ExportError",
    "eagle1_config",
    "eagle3_config",
    "expected_shapes",
    "export_head",
    "load_any",
    "load_export",
    "serving_problems",
    "validate_state_dict",
]

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
    "vocab_size",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)


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
    problems = aux_layer_problems(list(head.aux_layers), cfg.num_hidden_layers, "aux_layers")
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
