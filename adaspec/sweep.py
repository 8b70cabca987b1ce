"""``adaspec sweep``: AdaSPEC's controls and recipes against plain KD at equal compute, over seeds.

Every recipe trains one draft with the draft stage's equal-steps schedule (the reference's), from
the same initial weights as the reference, so the optimizer steps are equal across recipes and
only the loss differs. The exceptions are ``ref_adaspec`` and ``ref_kd``, which continue from the
trained reference for that same schedule again: they are compared with each other. Per seed the
pipeline's target and reference are trained (or loaded) first; then each recipe's draft; then all
drafts are evaluated side by side with :func:`adaspec.compare.compare_drafts`.

A recipe that is exactly one of the pipeline's runs (same start, loss, schedule and seed: see
:func:`recipe_folders`) is that run: ``kd`` is normally the ``reference`` and ``adaspec`` the
``adaspec-equal_steps`` draft. It is loaded when the pipeline trained it already, and trained
into the pipeline's folder otherwise, so ``adaspec pipeline`` and ``adaspec sweep`` on one
folder never train the same run twice.

Layout of ``output_dir``::

    seed-<s>/                   one pipeline folder per seed (target, draft_init, reference, ...)
    seed-<s>/sweep-<recipe>/    each recipe's draft that is not one of the pipeline's runs
    seed-<s>/sweep/             that seed's comparison (comparison.json/.md/.png)
    sweep.json / sweep.md / sweep.png   the table over seeds, paired differences, wall times
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaspec.eval.report import markdown_table, write_json
from adaspec.pipeline import Pipeline
from adaspec.pipeline_config import PipelineConfig
from adaspec.pipeline_record import recorded_seconds, write_run_record
from adaspec.pipeline_runs import RunSpec, planned_runs
from adaspec.provenance import describe_environment, environment
from adaspec.training.checkpoints import is_complete_model_dir
from adaspec.training.config import LossConfig

logger = logging.getLogger(__name__)

METRICS = {
    "alpha": "α",
    "token acceptance": "E[Σ min(p,q)]",
    "ref_token": "E[Σ min(p,q)] on gold",
}


@dataclass(frozen=True)
class Recipe:
    """One sweep entry: where the draft starts, its loss, and whether ΔL needs the reference."""

    init: str
    loss: LossConfig
    uses_reference: bool
    label: str


def recipes(config: PipelineConfig) -> dict[str, Recipe]:
    """The recipes ``config.sweep.recipes`` names, built from the draft stage's loss settings."""
    sweep, loss = config.sweep, config.draft.loss
    kd = loss.plain_kd()
    k = loss.k
    table = {
        "kd": Recipe("draft_init", kd, False, "KD (DistillSpec)"),
        "adaspec": Recipe("draft_init", loss, True, f"AdaSPEC (k={k})"),
        "random_k": Recipe(
            "draft_init", loss.replace(selection="random"), False, f"random {k} of tokens"
        ),
        "late_phase": Recipe(
            "draft_init",
            loss.replace(
                k_schedule="step", k_start=1.0, k_schedule_fraction=sweep.late_phase_fraction
            ),
            True,
            f"KD for {sweep.late_phase_fraction:g} of steps, then AdaSPEC",
        ),
        "k_linear": Recipe(
            "draft_init",
            loss.replace(
                k_schedule="linear", k_start=1.0, k_schedule_fraction=sweep.k_linear_fraction
            ),
            True,
            f"k from 1 to {k} over {sweep.k_linear_fraction:g} of steps",
        ),
        "student_entropy": Recipe(
            "draft_init",
            loss.replace(selection="student_entropy"),
            False,
            f"top {k} by draft entropy",
        ),
        "draft_loss": Recipe(
            "draft_init", loss.replace(selection="draft_loss"), False, f"top {k} by L_draft"
        ),
        "ref_adaspec": Recipe("reference", loss, True, "reference + AdaSPEC"),
        "ref_kd": Recipe("reference", kd, False, "reference + KD"),
    }
    return {name: table[name] for name in sweep.recipes}


def seed_config(config: PipelineConfig, seed: int) -> PipelineConfig:
    """The pipeline config of one seed: its own folder under the sweep's ``output_dir``."""
    return config.replace(seed=seed, output_dir=str(Path(config.output_dir) / f"seed-{seed}"))


def recipe_folders(config: PipelineConfig) -> dict[str, str]:
    """The run folder of each recipe under a seed's folder.

    A recipe whose :class:`~adaspec.pipeline_runs.RunSpec` equals one of the pipeline's runs
    (:func:`~adaspec.pipeline_runs.planned_runs`) uses that run's folder; any other recipe gets
    ``sweep-<name>``.

    Args:
        config: One seed's config (see :func:`seed_config`).

    Returns:
        Recipe name -> folder name, in the order of ``config.sweep.recipes``.
    """
    optim = (config.draft.optim or config.reference.optim).replace(seed=config.seed)
    planned = planned_runs(config)
    folders = {}
    for name, recipe in recipes(config).items():
        spec = RunSpec(recipe.init, recipe.loss, optim, recipe.uses_reference)
        same = [run for run, other in planned.items() if other == spec]
        folders[name] = same[0] if same else f"sweep-{name}"
    return folders


def _legacy_folder(out: Path, name: str, run: str) -> str:
    """``sweep-<name>`` where a sweep before :func:`recipe_folders` trained the recipe there."""
    legacy = f"sweep-{name}"
    if not is_complete_model_dir(out / run) and is_complete_model_dir(out / legacy):
        return legacy
    return run


def run_seed(config: PipelineConfig, resume: bool = True) -> dict[str, Any]:
    """Train every recipe of one seed's config and compare them.

    Returns:
        ``{"seconds": {recipe: training seconds}, "rows": {recipe: comparison row}}`` (``rows``
        on the main process only). A recipe's seconds are this run's, or those the pipeline
        recorded when it trained that run earlier; a recipe with neither has none.
    """
    from adaspec.compare import compare_drafts

    pipe = Pipeline(config, resume=resume)
    target = pipe.target()
    reference = pipe.reference(target)
    optim = (config.draft.optim or config.reference.optim).replace(seed=config.seed)
    names = {
        name: _legacy_folder(pipe.out, name, run) for name, run in recipe_folders(config).items()
    }
    drafts: dict[str, Any] = {}
    for name, recipe in recipes(config).items():
        run = names[name]
        if run == "reference":
            drafts[name] = reference
            continue
        ref = reference if recipe.uses_reference else None
        drafts[name] = pipe.train_draft(run, target, ref, optim, recipe.loss, init=recipe.init)
    if pipe.state.is_main_process:  # pipeline_sweep.json: kept for a resumed sweep's table
        write_run_record(
            pipe.out, ("sweep",), pipe.timings, pipe.truncation, config, pipe.tokenizer
        )
    recorded: dict[str, float] = {}
    for path in sorted(pipe.out.glob("pipeline_*.json")):
        recorded.update(recorded_seconds(path))
    seconds = {**recorded, **pipe.timings}
    result: dict[str, Any] = {
        "seconds": {name: seconds[run] for name, run in names.items() if run in seconds}
    }
    if pipe.state.is_main_process:
        labels = {name: r.label for name, r in recipes(config).items()}
        comparison = compare_drafts(
            target,
            drafts,
            pipe.tokenizer,
            pipe.eval_examples,
            config,
            pipe.out / "sweep",
            folders={name: pipe.out / run for name, run in names.items()},
            labels=labels,
        )
        result["rows"] = {row["draft"]: row for row in comparison["table"]}
    return result


def _spread(values: list[float]) -> dict[str, float | int]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarize(per_seed: dict[int, dict[str, dict[str, Any]]], baseline: str) -> dict[str, Any]:
    """Mean and spread over seeds per recipe, and differences to ``baseline`` paired by seed.

    ``ref_adaspec`` is paired with ``ref_kd`` when both ran (both continue from the reference).

    Args:
        per_seed: Seed -> recipe -> that draft's comparison row (keys of :data:`METRICS`).
        baseline: The recipe that differences are taken against.

    Returns:
        ``{"recipes": {name: {metric: spread}}, "paired": {name: {"against", metric: spread,
        "wins"}}}``; a spread holds mean, std (sample), min, max and n.
    """
    names = list(next(iter(per_seed.values())))
    out: dict[str, Any] = {"recipes": {}, "paired": {}}
    for name in names:
        out["recipes"][name] = {
            m: _spread(
                [rows[name][m] for rows in per_seed.values() if rows[name].get(m) is not None]
            )
            for m in METRICS
            if any(rows[name].get(m) is not None for rows in per_seed.values())
        }
    for name in names:
        against = "ref_kd" if name == "ref_adaspec" and "ref_kd" in names else baseline
        if name == against:
            continue
        pair: dict[str, Any] = {"against": against}
        for m in METRICS:
            diffs = [
                rows[name][m] - rows[against][m]
                for rows in per_seed.values()
                if rows[name].get(m) is not None and rows[against].get(m) is not None
            ]
            if diffs:
                pair[m] = _spread(diffs)
                if m == "alpha":
                    pair["wins"] = sum(d > 0 for d in diffs)
        out["paired"][name] = pair
    return out


def markdown(summary: dict[str, Any], labels: dict[str, str], seconds: dict[str, float]) -> str:
    """The sweep's tables: mean ± std over seeds, paired differences, mean wall seconds."""
    rows = []
    for name, metrics in summary["recipes"].items():
        row: dict[str, Any] = {"recipe": name, "what": labels.get(name, name)}
        for m, spread in metrics.items():
            row[m] = f"{spread['mean']:.4f} ± {spread['std']:.4f}"
        pair = summary["paired"].get(name)
        if pair and "alpha" in pair:
            a = pair["alpha"]
            row["d_alpha"] = f"{a['mean']:+.4f} ± {a['std']:.4f} ({pair['wins']}/{a['n']} higher)"
            row["against"] = pair["against"]
        row["seconds"] = seconds.get(name)
        rows.append(row)
    columns = {"recipe": "recipe", "what": "what", **METRICS}
    columns.update({"d_alpha": "Δα paired by seed", "against": "against", "seconds": "train s"})
    return markdown_table(rows, columns, digits=1)


def plot(summary: dict[str, Any], path: Path) -> Path:
    """Bar chart of α per recipe, mean over seeds with the seeds' min-max range."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = [n for n, m in summary["recipes"].items() if "alpha" in m]
    means = [summary["recipes"][n]["alpha"]["mean"] for n in names]
    lows = [m - summary["recipes"][n]["alpha"]["min"] for n, m in zip(names, means)]
    highs = [summary["recipes"][n]["alpha"]["max"] - m for n, m in zip(names, means)]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.5))
    ax.bar(names, means, yerr=[lows, highs], capsize=4, color="tab:blue")
    ax.set_ylabel("α (mean; bars: seeds' range)")
    ax.set_ylim(min(means) - 0.1 if means else 0, min(1.0, max(means) + 0.1) if means else 1)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_sweep(config: PipelineConfig, resume: bool = True) -> dict[str, Any]:
    """Run every seed of ``config.sweep`` and write ``sweep.{json,md,png}`` to ``output_dir``."""
    per_seed, seconds = {}, {}
    for seed in config.sweep.seeds:
        logger.info("sweep: seed %d", seed)
        result = run_seed(seed_config(config, seed), resume=resume)
        if "rows" not in result:  # not the main process
            continue
        per_seed[seed] = result["rows"]
        for name, t in result["seconds"].items():
            seconds.setdefault(name, []).append(t)
    if not per_seed:
        return {}
    summary = summarize(per_seed, config.sweep.baseline)
    labels = {name: r.label for name, r in recipes(config).items()}
    mean_seconds = {n: statistics.fmean(v) for n, v in seconds.items()}
    table = markdown(summary, labels, mean_seconds)
    out = Path(config.output_dir)
    env = environment()
    write_json(
        {
            "summary": summary,
            "per_seed": per_seed,
            "train_seconds": seconds,
            "labels": labels,
            "environment": env,
        },
        out / "sweep.json",
    )
    table += "\n" + describe_environment(env) + "\n"
    (out / "sweep.md").write_text(table)
    plot(summary, out / "sweep.png")
    return {"summary": summary, "markdown": table, "output_dir": str(out)}
