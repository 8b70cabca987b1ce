"""Evaluation: acceptance rate, token-level acceptance, text quality, and reports.

Typical use::

    from adaspec.eval import EvalConfig, run_eval, evaluate_models

    results = run_eval(EvalConfig.from_yaml("eval.yaml"))  # checkpoints on disk
    results = evaluate_models(target, {"adaspec": draft}, tokenizer, examples, task="gsm8k")
"""

from adaspec.eval.aggregate import DraftAccumulator, summary_rows
from adaspec.eval.config import EvalConfig
from adaspec.eval.evaluate import (
    eos_ids_for,
    evaluate_models,
    load_prompt_examples,
    resolve_device,
    run_eval,
    write_eval_outputs,
)
from adaspec.eval.execution import extract_code, run_python_tests
from adaspec.eval.loading import check_same_tokenizer, load_eval_models
from adaspec.eval.metrics import (
    canonical_task,
    corpus_rouge_l,
    extract_gsm8k_answer,
    gsm8k_accuracy,
    mbpp_pass_at_1,
    rouge_l,
    score,
)
from adaspec.eval.report import markdown_table, plot_acceptance_by_position, write_json
from adaspec.eval.token_acceptance import (
    expected_token_acceptance,
    min_overlap,
    scored_logits,
    total_variation,
)

__all__ = [
    "DraftAccumulator",
    "EvalConfig",
    "canonical_task",
    "check_same_tokenizer",
    "corpus_rouge_l",
    "eos_ids_for",
    "evaluate_models",
    "expected_token_acceptance",
    "extract_code",
    "extract_gsm8k_answer",
    "gsm8k_accuracy",
    "load_eval_models",
    "load_prompt_examples",
    "markdown_table",
    "mbpp_pass_at_1",
    "min_overlap",
    "plot_acceptance_by_position",
    "resolve_device",
    "rouge_l",
    "run_eval",
    "run_python_tests",
    "score",
    "scored_logits",
    "summary_rows",
    "total_variation",
    "write_eval_outputs",
    "write_json",
]
