"""Aggregation of one draft's per-prompt results into its evaluation summary.

The acceptance bookkeeping is the decoding core's :func:`adaspec.decoding.acceptance_counts`
(per round: the accepted draft tokens and at most one rejection; the bonus token is not counted;
tokens past EOS or the length cap are not counted). Here the rounds of all prompts are pooled:
``alpha`` is ``sum accepted / sum (accepted + rejected)`` over the whole prompt set (the paper's
number) and ``alpha_macro`` the mean of the per-prompt rates. ``acceptance_by_position[k - 1]``
is the acceptance rate at block position ``k`` among the rounds that reached it (the first
``k - 1`` drafted tokens accepted), so ``sum accepted_at / sum reached_at == alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from adaspec.eval.metrics import mean_dicts


def _acceptance_counts(records: Iterable[Any]) -> dict[str, Any]:
    from adaspec.decoding import acceptance_counts

    return acceptance_counts(records)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _pad(values: Sequence[Any], length: int, fill: Any) -> list[Any]:
    values = list(values)[:length]
    return values + [fill] * (length - len(values))


class DraftAccumulator:
    """Running results of one draft over the prompts of an evaluation.

    Args:
        gamma: Draft tokens per round (length of the by-position lists).

    """

    def __init__(self, gamma: int) -> None:
        self.gamma = int(gamma)
        self.records: list[Any] = []
        self.prompt_alphas: list[float] = []
        self.prompts = 0
        self.identical = 0
        self.checked = 0
        self.new_tokens = 0
        self.seconds = 0.0
        self.token_acc: list[float] = []
        self.agree: list[bool] = []
        self.quality: list[dict[str, float]] = []

    def add(
        self,
        steps: Sequence[Any],
        num_new_tokens: int,
        seconds: float,
        identical: bool | None,
        token_acceptance: Iterable[float] | None,
        quality: Mapping[str, float],
        greedy_agreement: Iterable[bool] | None = None,
    ) -> float | None:
        """Add one prompt.

        Args:
            steps: The decoder's step records for the prompt (``DecodeResult.steps``).
            num_new_tokens: Tokens the speculative decoder generated.
            seconds: Its wall-clock time.
            identical: Whether its output equals the target's greedy output; ``None`` when it
                was not decoded (teacher-forced α).
            token_acceptance: Per-token ``sum_x min(p, q)`` along the target's continuation.
            quality: The prompt's quality scores of the speculative output.
            greedy_agreement: Per token of the target's continuation, whether the draft's argmax
                equals the target's (teacher-forced).

        Returns:
            The prompt's acceptance rate (``None`` when no drafted token was judged).

        """
        steps = list(steps)
        self.records.extend(steps)
        alpha = _finite(_acceptance_counts(steps)["alpha"])
        if alpha is not None:
            self.prompt_alphas.append(alpha)
        self.prompts += 1
        if identical is not None:
            self.checked += 1
            self.identical += int(bool(identical))
        self.new_tokens += int(num_new_tokens)
        self.seconds += float(seconds)
        if token_acceptance is not None:
            self.token_acc.extend(float(v) for v in token_acceptance)
        if greedy_agreement is not None:
            self.agree.extend(bool(v) for v in greedy_agreement)
        self.quality.append(dict(quality))
        return alpha

    def summary(self, target_seconds: float | None = None) -> dict[str, Any]:
        """Summarize the draft's results as a JSON-ready dict.

        Args:
            target_seconds: Time of the target's plain greedy decoding of the same prompts,
                for ``speedup`` (wall-clock, indicative only; speed claims live in benchmarks/).

        """
        c = _acceptance_counts(self.records)
        rounds = c["rounds"]
        token_acc = sum(self.token_acc) / len(self.token_acc) if self.token_acc else None
        return {
            "alpha": _finite(c["alpha"]),
            "alpha_macro": (
                sum(self.prompt_alphas) / len(self.prompt_alphas) if self.prompt_alphas else None
            ),
            "accepted": c["accepted"],
            "rejected": c["rejected"],
            "rounds": rounds,
            "mean_accepted_per_round": c["accepted"] / rounds if rounds else None,
            "mean_committed_per_round": _finite(c["tau"]),
            "acceptance_by_position": [
                _finite(a) for a in _pad(c["alpha_by_depth"], self.gamma, None)
            ],
            "accepted_at_position": _pad(c["accepted_by_depth"], self.gamma, 0),
            "reached_at_position": _pad(c["attempts_by_depth"], self.gamma, 0),
            "token_acceptance": token_acc,
            "total_variation": None if token_acc is None else 1.0 - token_acc,
            "greedy_agreement": sum(self.agree) / len(self.agree) if self.agree else None,
            "identical_to_target": self.identical == self.checked if self.checked else None,
            "num_identical": self.identical,
            "num_checked": self.checked,
            "num_prompts": self.prompts,
            "quality": mean_dicts(self.quality),
            "new_tokens": self.new_tokens,
            "seconds": self.seconds,
            "speedup": target_seconds / self.seconds if target_seconds and self.seconds else None,
        }


def summary_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One table row per draft from :func:`adaspec.eval.evaluate.evaluate_models` output.

    Columns: ``draft``, ``alpha``, ``accepted/round``, ``token acceptance``,
    ``greedy agreement``, ``identical``,
    ``speedup``, ``pos 1 .. pos gamma`` and the draft's quality metrics.
    """
    rows = []
    for name, d in results.get("drafts", {}).items():
        row: dict[str, Any] = {
            "draft": name,
            "alpha": d.get("alpha"),
            "accepted/round": d.get("mean_accepted_per_round"),
            "token acceptance": d.get("token_acceptance"),
            "greedy agreement": d.get("greedy_agreement"),
            "identical": d.get("identical_to_target"),
            "speedup": d.get("speedup"),
        }
        for k, v in enumerate(d.get("acceptance_by_position", []), start=1):
            row[f"pos {k}"] = v
        for key, value in sorted(d.get("quality", {}).items()):
            row[key] = value
        rows.append(row)
    return rows
