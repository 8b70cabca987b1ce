"""What each distilled run of the pipeline is: where it starts, its loss, its schedule.

The pipeline (:mod:`adaspec.pipeline`) trains these runs, and ``adaspec sweep``
(:mod:`adaspec.sweep`) compares its recipes against them, reusing a pipeline run whenever a
recipe is exactly that run instead of training it twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from adaspec.pipeline_config import PipelineConfig
from adaspec.training.config import LossConfig, OptimConfig, scaled_optim


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides a distilled run's result, apart from the data and the target.

    Attributes:
        init: The folder of the initial weights: ``draft_init`` or ``reference``.
        loss: The run's loss settings.
        optim: The run's optimisation settings (seed included).
        uses_reference: Whether the loss takes ΔL against the trained reference.
    """

    init: str
    loss: LossConfig
    optim: OptimConfig
    uses_reference: bool


def draft_runs(config: PipelineConfig) -> dict[str, tuple[str, OptimConfig]]:
    """The drafts stage 3 trains: name -> (kind, optimisation settings).

    ``kind`` is ``"adaspec"`` (selective loss against the reference) or ``"distillspec"`` (plain
    KD, the compute-matched baseline of a longer budget).
    """
    base = config.draft.optim or config.reference.optim
    k = config.draft.loss.k
    budget = config.draft.budget
    runs: dict[str, tuple[str, OptimConfig]] = {}
    for mode in budget.modes:
        optim = scaled_optim(base, k, mode, budget.token_scaling).replace(seed=config.seed)
        runs[f"adaspec-{mode}"] = ("adaspec", optim)
        if mode == "equal_tokens" and budget.compute_matched_baseline and k < 1.0:
            runs[f"distillspec-{mode}"] = ("distillspec", optim)
    return runs


def planned_runs(config: PipelineConfig) -> dict[str, RunSpec]:
    """Every distilled run the pipeline trains for ``config``: the reference, then stage 3's drafts.

    Returns:
        Run (folder) name -> its :class:`RunSpec`, in training order.
    """
    runs = {
        "reference": RunSpec(
            "draft_init",
            config.reference.loss.plain_kd(),
            config.reference.optim.replace(seed=config.seed),
            False,
        )
    }
    for name, (kind, optim) in draft_runs(config).items():
        adaspec = kind == "adaspec"
        loss = config.draft.loss if adaspec else config.draft.loss.plain_kd()
        runs[name] = RunSpec("draft_init", loss, optim, adaspec)
    return runs
