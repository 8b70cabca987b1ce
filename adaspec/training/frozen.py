"""Frozen teacher models (target, reference) placed beside a ``Trainer``'s model.

Under DeepSpeed ZeRO-3 a frozen model is wrapped in an inference engine so its parameters are
partitioned like the student's; otherwise it is moved to the trainer's device. Either way it is in
eval mode with gradients off.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from adaspec.modeling import freeze


def deepspeed_zero_stage(trainer: Any) -> int | None:
    """The ZeRO stage the trainer runs under, or ``None`` without DeepSpeed."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return None
    return int(plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0))


def prepare_frozen_model(model: nn.Module, trainer: Any) -> nn.Module:
    """Freeze ``model`` and place it for ``trainer`` (ZeRO-3 inference engine or device move).

    Args:
        model: The target or reference model.
        trainer: The ``transformers.Trainer`` that trains the student.

    Returns:
        The model (or DeepSpeed engine) to call under ``torch.no_grad``.
    """
    freeze(model)
    if deepspeed_zero_stage(trainer) == 3:
        import deepspeed

        plugin = trainer.accelerator.state.deepspeed_plugin
        config = copy.deepcopy(plugin.deepspeed_config)
        config.pop("optimizer", None)
        config.pop("scheduler", None)
        config["train_micro_batch_size_per_gpu"] = trainer.args.per_device_train_batch_size
        config.pop("train_batch_size", None)
        config["gradient_accumulation_steps"] = 1
        hidden = getattr(getattr(model, "config", None), "hidden_size", None)
        zero = config.setdefault("zero_optimization", {})
        if hidden is not None:
            zero.setdefault("reduce_bucket_size", hidden * hidden)
            zero.setdefault("stage3_param_persistence_threshold", 10 * hidden)
            zero.setdefault("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden))
        for key in (
            "reduce_bucket_size",
            "stage3_param_persistence_threshold",
            "stage3_prefetch_bucket_size",
        ):
            if zero.get(key) == "auto":
                zero[key] = 10 * (hidden or 1024) * (hidden or 1024)
        engine, *_ = deepspeed.initialize(model=model, config=config)
        engine.eval()
        return engine
    device = trainer.args.device
    if trainer.args.bf16:
        model = model.to(torch.bfloat16)
    elif trainer.args.fp16:
        model = model.to(torch.float16)
    return model.to(device)
