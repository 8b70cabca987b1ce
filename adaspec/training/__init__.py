"""Training stages on ``transformers.Trainer``: target fine-tuning, reference KD, AdaSPEC draft."""

from adaspec.training.config import BudgetConfig, LossConfig, ModelSpec, OptimConfig, scaled_optim
from adaspec.training.trainers import AdaSPECTrainer, KDTrainer, TargetTrainer

__all__ = [
    "AdaSPECTrainer",
    "BudgetConfig",
    "KDTrainer",
    "LossConfig",
    "ModelSpec",
    "OptimConfig",
    "TargetTrainer",
    "scaled_optim",
]
