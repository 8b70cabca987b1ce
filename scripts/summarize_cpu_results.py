"""Aggregate pipeline runs of several seeds into mean and spread per draft (for docs/results.md).

Usage: python scripts/summarize_cpu_results.py runs/cpu/gsm8k-s0 runs/cpu/gsm8k-s1 ... --out DIR
Reads each run's comparison/results.json and pipeline_*.json; writes DIR/summary.json and
DIR/summary.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

from adaspec.eval.report import markdown_table, write_json

ORDER = [
    "distillspec-equal_steps",
    "adaspec-equal_steps",
    "distillspec-equal_tokens",
    "adaspec-equal_tokens",
]


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(pair: tuple[float | None, float | None], digits: int = 4) -> str:
    mean, sd = pair
    return "-" if mean is None else f"{mean:.{digits}f} ± {sd:.{digits}f}"


PAIRS = {
    "equal_steps": ("adaspec-equal_steps", "distillspec-equal_steps"),
    "equal_tokens": ("adaspec-equal_tokens", "distillspec-equal_tokens"),
}
PAIRED_KEYS = ("alpha", "token_acceptance", "gold_token_acceptance", "gold_agreement")


def paired_differences(per_draft: dict[str, dict[str, list]]) -> dict[str, dict]:
    """AdaSPEC minus DistillSpec at the same step count, seed by seed, then mean ± sd.

    The two drafts of one seed share the initialisation and the data order, so the per-seed
    difference removes the spread that both share.
    """
    paired = {}
    for budget, (ada, kd) in PAIRS.items():
        if ada not in per_draft or kd not in per_draft:
            continue
        paired[budget] = {}
        for key in PAIRED_KEYS:
            diffs = [
                a - b
                for a, b in zip(per_draft[ada].get(key, []), per_draft[kd].get(key, []))
                if a is not None and b is not None
            ]
            paired[budget][key] = {"per_seed": diffs, "mean_sd": _mean_sd(diffs)}
    return paired


def summarize(runs: list[Path]) -> dict:
    """Per draft: α, token acceptance, greedy agreement and quality over seeds; stage times."""
    per_draft: dict[str, dict[str, list]] = {}
    seeds, stage_seconds, target_quality, identical = [], {}, [], {}
    for run in runs:
        results = json.loads((run / "comparison" / "results.json").read_text())
        seeds.append(run.name)
        target_quality.append(results["target"]["quality"])
        for name, d in results["drafts"].items():
            row = per_draft.setdefault(name, {})
            for key in ("alpha", "token_acceptance", "greedy_agreement", "mean_accepted_per_round"):
                row.setdefault(key, []).append(d.get(key))
            for key, value in d.get("quality", {}).items():
                row.setdefault("quality/" + key, []).append(value)
            gold = results.get("reference_alignment", {}).get(name, {})
            row.setdefault("gold_token_acceptance", []).append(gold.get("token_acceptance"))
            row.setdefault("gold_agreement", []).append(gold.get("greedy_agreement"))
            identical.setdefault(name, []).append(d.get("identical_to_target"))
        timings = {}
        for path in sorted(run.glob("pipeline_*.json")):
            timings.update(json.loads(path.read_text())["stage_seconds"])
        config_path = run / "adaspec_config.yaml"
        if config_path.exists() and not yaml.safe_load(config_path.read_text())["target"]["train"]:
            timings["target"] = None  # loaded from another run, not trained here
        stage_seconds[run.name] = timings
        for table_row in results["table"]:
            per_draft[table_row["draft"]].setdefault("steps", []).append(table_row.get("steps"))
    summary = {
        "runs": seeds,
        "drafts": {
            name: {
                key: _mean_sd(values) if key != "steps" else values for key, values in row.items()
            }
            for name, row in per_draft.items()
        },
        "per_seed": per_draft,
        "paired": paired_differences(per_draft),
        "identical_to_target": identical,
        "target_quality": target_quality,
        "stage_seconds": stage_seconds,
    }
    return summary


def to_markdown(summary: dict) -> str:
    """The summary as a markdown table (mean ± standard deviation over seeds)."""
    rows = []
    names = [n for n in ORDER if n in summary["drafts"]] + [
        n for n in summary["drafts"] if n not in ORDER
    ]
    for name in names:
        d = summary["drafts"][name]
        row = {
            "draft": name,
            "steps": "/".join(str(s) for s in d.get("steps", [])),
            "alpha": _fmt(d["alpha"]),
            "per_round": _fmt(d.get("mean_accepted_per_round", (None, None)), 2),
            "token": _fmt(d["token_acceptance"]),
            "agree": _fmt(d.get("greedy_agreement", (None, None))),
            "gold_token": _fmt(d.get("gold_token_acceptance", (None, None))),
            "gold_agree": _fmt(d.get("gold_agreement", (None, None))),
            "identical": all(summary["identical_to_target"][name]),
        }
        for key, value in d.items():
            if key.startswith("quality/"):
                row[key] = _fmt(value)
        rows.append(row)
    columns = {
        "draft": "draft",
        "steps": "optimizer steps (per seed)",
        "alpha": "α (γ=4)",
        "per_round": "accepted / round",
        "token": "E[Σ min(p,q)]",
        "agree": "greedy agreement",
        "gold_token": "E[Σ min(p,q)] on gold responses",
        "gold_agree": "agreement on gold responses",
        "identical": "output = target's greedy",
    }
    for row in rows:
        for key in row:
            if key.startswith("quality/"):
                columns.setdefault(key, key.removeprefix("quality/") + " (spec. decoding)")
    table = markdown_table(rows, columns)
    paired_rows = [
        {"budget": budget, **{key: _fmt(v["mean_sd"]) for key, v in diffs.items()}}
        for budget, diffs in summary.get("paired", {}).items()
    ]
    if paired_rows:
        paired_columns = {
            "budget": "AdaSPEC - DistillSpec, same steps and seed",
            "alpha": "Δα",
            "token_acceptance": "Δ E[Σ min(p,q)]",
            "gold_token_acceptance": "Δ E[Σ min(p,q)] on gold",
            "gold_agreement": "Δ agreement on gold",
        }
        table += "\n" + markdown_table(paired_rows, paired_columns)
    return table


def _seconds(timings: dict, stage: str) -> str:
    if stage not in timings:
        return "-"
    return "loaded" if timings[stage] is None else f"{timings[stage]:.0f}"


def timing_table(summary: dict) -> str:
    """Wall seconds of each stage per run ('loaded': a target from another run; '-': not recorded)."""
    stages = []
    for timings in summary["stage_seconds"].values():
        stages += [s for s in timings if s not in stages]
    rows = [
        {
            "run": run,
            **{s: _seconds(t, s) for s in stages},
        }
        for run, t in summary["stage_seconds"].items()
    ]
    return markdown_table(rows, {"run": "run", **{s: s for s in stages}})


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="pipeline output folders, one per seed")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for summary.json and summary.md"
    )
    args = parser.parse_args()
    runs = [r for r in args.runs if (r / "comparison" / "results.json").exists()]
    if not runs:
        raise SystemExit("no run folder holds comparison/results.json")
    summary = summarize(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(summary, args.out / "summary.json")
    table = to_markdown(summary) + "\nWall seconds per stage:\n\n" + timing_table(summary)
    (args.out / "summary.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
