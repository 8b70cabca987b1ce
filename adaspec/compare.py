"""The pipeline's last step: DistillSpec and AdaSPEC drafts side by side on held-out examples.

Every draft is measured with the same evaluation code as ``adaspec eval`` (speculative decoding
with greedy chain verification, γ tokens a round), plus its alignment with the target on the
held-out gold responses (:mod:`adaspec.eval.alignment`), and the table states each draft's training
budget (optimizer steps and gradient-carrying tokens) so that a gain of the method can be told
apart from a gain of extra compute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adaspec.data import Example, response_source
from adaspec.eval import evaluate_models, markdown_table, write_eval_outputs
from adaspec.eval.alignment import reference_alignment
from adaspec.pipeline_config import PipelineConfig
from adaspec.provenance import describe_environment, environment

COLUMNS = {
    "draft": "draft",
    "loss": "loss",
    "steps": "optimizer steps",
    "grad_tokens": "gradient tokens",
    "alpha": "α (γ={gamma})",
    "accepted/round": "accepted / round",
    "token acceptance": "E[Σ min(p,q)]",
    "greedy agreement": "greedy agreement",
    "identical": "output = target's",
    "ref_token": "E[Σ min(p,q)] on gold",
    "ref_agree": "agreement on gold",
}


def _training_budget(model_dir: Path) -> dict[str, Any]:
    """Optimizer steps and gradient-carrying tokens of a trained draft, from its trainer state."""
    path = model_dir / "trainer_state.json"
    if not path.exists():
        return {}
    state = json.loads(path.read_text())
    tokens = [
        h["adaspec/gradient_tokens"]
        for h in state.get("log_history", [])
        if "adaspec/gradient_tokens" in h
    ]
    return {"steps": state.get("global_step"), "grad_tokens": int(tokens[-1]) if tokens else None}


def compare_drafts(
    target: Any,
    drafts: dict[str, Any],
    tokenizer: Any,
    examples: list[Example],
    config: PipelineConfig,
    output_dir: str | Path,
    folders: dict[str, Path] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Evaluate ``drafts`` against ``target`` and write ``comparison.{json,md,png}``.

    Args:
        target: The trained target.
        drafts: Name -> trained draft (``distillspec-equal_steps`` is the reference).
        tokenizer: The shared tokenizer.
        examples: Held-out examples (the first ``evaluation.num_examples`` are used).
        config: The pipeline config.
        output_dir: Where the comparison is written.
        folders: Name -> the draft's training folder (for its budget); default: the pipeline's
            layout under ``output_dir``.
        labels: Name -> the loss column's text; default: AdaSPEC or DistillSpec by the name.

    Returns:
        The evaluation results with ``markdown`` (the table) added.
    """
    ev = config.evaluation
    out = Path(output_dir)
    results = evaluate_models(
        target,
        drafts,
        tokenizer,
        examples[: ev.num_examples],
        task=config.data.task,
        gamma=ev.gamma,
        max_new_tokens=ev.max_new_tokens,
        quality=ev.quality,
        chat_template=config.data.chat_template,
        alpha_method=ev.alpha_method,
        target_outputs=ev.target_outputs,
    )
    heldout = examples[: ev.num_examples]
    results["reference_alignment"] = reference_alignment(
        target,
        drafts,
        tokenizer,
        heldout,
        max_length=config.data.max_length,
        truncation_side=config.data.truncation_side,
        chat_template=config.data.chat_template,
    )
    results["settings"]["training_data"] = response_source(config.data)
    rows = {row["draft"]: row for row in results["table"]}
    for name, aligned in results["reference_alignment"].items():
        rows[name]["ref_token"] = aligned["token_acceptance"]
        rows[name]["ref_agree"] = aligned["greedy_agreement"]
    for name in drafts:
        folder = (folders or {}).get(name) or (
            out / ("reference" if name == "distillspec-equal_steps" else name)
        )
        budget = _training_budget(folder)
        default = "AdaSPEC" if name.startswith("adaspec") else "DistillSpec (KD)"
        rows[name]["loss"] = (labels or {}).get(name, default)
        rows[name]["steps"] = budget.get("steps")
        rows[name]["grad_tokens"] = budget.get("grad_tokens")
    columns = {k: v.format(gamma=ev.gamma) for k, v in COLUMNS.items()}
    quality_keys = sorted(
        {
            k
            for r in rows.values()
            for k in r
            if k.startswith(("accuracy", "pass", "rouge", "exact_match"))
        }
    )
    columns.update({k: k for k in quality_keys})
    table = markdown_table(list(rows.values()), columns)
    results["markdown"] = table
    results["environment"] = environment()
    write_eval_outputs(results, out / "comparison")
    (out / "comparison.md").write_text(
        table + "\n" + describe_environment(results["environment"]) + "\n"
    )
    return results
