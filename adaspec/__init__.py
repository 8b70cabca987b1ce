"""AdaSPEC: selective knowledge distillation for speculative-decoding drafters.

The trainers are imported lazily, so ``import adaspec.losses`` stays a pure-torch import.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "AdaSPECTrainer": "adaspec.training.trainers",
    "KDTrainer": "adaspec.training.trainers",
    "TargetTrainer": "adaspec.training.trainers",
    "adaspec_token_loss": "adaspec.losses",
    "chunked_adaspec_loss": "adaspec.losses",
    "AdaSPECLoss": "adaspec.losses",
    "SelectiveLossSettings": "adaspec.losses",
    "PipelineConfig": "adaspec.pipeline_config",
    "run_pipeline": "adaspec.pipeline",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'adaspec' has no attribute {name!r}")
