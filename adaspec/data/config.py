"""The data section of a config, and :func:`load_task` that turns it into examples.

``load_task(config, "train")`` reads ``source`` / ``split`` (first ``max_train_examples``);
``load_task(config, "eval")`` reads the held-out set: ``eval_source`` (``source`` when None) /
``eval_split`` (first ``max_eval_examples``). MBPP records with a ``task_id`` are cut to the
standard split by task id (test 11-510, train 601-974, validation 511-600, prompt 1-10), so one
file holding all tasks serves both. The synthetic task needs no source: it generates
``num_synthetic_train`` / ``num_synthetic_eval`` examples from ``seed``, and the eval set leaves
out any prompt that also appears in the training set.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from adaspec.config import ConfigBase, ConfigError, cfg_field, check_choice, check_range
from adaspec.data.chat import CHAT_MODES
from adaspec.data.example import DataError, Example
from adaspec.data.formatters import FORMATTERS, MBPP_SPLITS, get_formatter, mbpp_split
from adaspec.data.sources import DEFAULT_HUB_SOURCE, is_local_source, load_records
from adaspec.data.synthetic import KINDS, make_synthetic_examples

logger = logging.getLogger(__name__)

#: Offset between the training and held-out seeds of the synthetic task.
SYNTHETIC_EVAL_SEED_OFFSET = 7919


@dataclasses.dataclass
class DataConfig(ConfigBase):
    """Which task, where its records come from, and how long sequences may be."""

    task: str = cfg_field(
        "synthetic",
        help="formatter that turns records into prompt/response pairs: one of "
        f"{sorted(FORMATTERS)}",
    )
    source: str | None = cfg_field(
        None,
        help="training data: a .jsonl/.json/.parquet file, a folder of <split>.jsonl files, or a "
        "hub dataset name; None uses the task's usual hub dataset (e.g. openai/gsm8k); for "
        "the synthetic task None generates the data (a file of saved synthetic records also works)",
    )
    split: str = cfg_field("train", help="split of `source` used for training")
    subset: str | None = cfg_field(
        None, help="hub dataset config name; None picks the usual one (gsm8k: main, cnn: 3.0.0)"
    )
    eval_source: str | None = cfg_field(
        None, help="held-out data, same forms as `source`; None reuses `source`"
    )
    eval_split: str = cfg_field("test", help="split of the held-out data")
    eval_holdout: int | None = cfg_field(
        None,
        help="hold out the LAST N records of source/split as the eval set and train on the rest "
        "(for a source with a single split, e.g. Alpaca or a local XSUM file); overrides "
        "eval_source / eval_split",
    )
    max_length: int = cfg_field(
        512, help="longest training sequence in tokens (BOS, prompt, response and EOS)"
    )
    truncation_side: str = cfg_field(
        "right", help="'right' cuts the response tail, 'left' cuts the prompt head"
    )
    max_train_examples: int | None = cfg_field(
        None, help="keep the first N training examples (None keeps all)"
    )
    max_eval_examples: int | None = cfg_field(
        None, help="keep the first N held-out examples (None keeps all)"
    )
    num_synthetic_train: int = cfg_field(2000, help="synthetic task: training examples")
    num_synthetic_eval: int = cfg_field(200, help="synthetic task: held-out examples")
    synthetic_kind: str = cfg_field(
        "mixed", help=f"synthetic task: 'mixed' or one of {list(KINDS)}"
    )
    seed: int = cfg_field(0, help="seed of the synthetic data")
    prompt_field: str = cfg_field("prompt", help="prompt_response task: record field of prompts")
    response_field: str = cfg_field(
        "response", help="prompt_response task: record field of responses"
    )
    chat_template: str = cfg_field(
        "auto",
        help="format examples with the tokenizer's chat template (user turn, assistant response "
        "ending with the end-of-turn token): auto (when the tokenizer has one), always or never",
    )
    generated_responses: str | None = cfg_field(
        None,
        help="jsonl of the target's own responses to the training prompts, written by `adaspec "
        "data regenerate`; they replace the gold responses of the training split; null: gold",
    )

    def validate(self) -> None:
        """Check the task name, lengths and counts."""
        super().validate()
        check_choice("task", self.task, sorted(FORMATTERS))
        check_choice("truncation_side", self.truncation_side, ("right", "left"))
        check_choice("synthetic_kind", self.synthetic_kind, ("mixed", *KINDS))
        check_choice("chat_template", self.chat_template, CHAT_MODES)
        check_range("max_length", self.max_length, 2, hint="it counts BOS, prompt, response, EOS")
        for name in ("max_train_examples", "max_eval_examples", "eval_holdout"):
            value = getattr(self, name)
            if value is not None:
                check_range(name, value, 1, hint="use null to keep all examples")
        check_range("num_synthetic_train", self.num_synthetic_train, 1)
        check_range("num_synthetic_eval", self.num_synthetic_eval, 0)
        if self.task == "prompt_response" and self.source is None:
            raise ConfigError(
                "source is required for task 'prompt_response': give a .jsonl/.json/.parquet "
                "file or a hub dataset name"
            )


def _resolve_source(config: DataConfig, source: str | None) -> str:
    if source is not None:
        return source
    if config.task in DEFAULT_HUB_SOURCE:
        return DEFAULT_HUB_SOURCE[config.task]
    raise ConfigError(f"source is required for task {config.task!r}")


def _synthetic(config: DataConfig, which: str) -> list[Example]:
    train = make_synthetic_examples(config.num_synthetic_train, config.seed, config.synthetic_kind)
    if which == "train":
        return train
    seen = {e.prompt for e in train}
    n = config.num_synthetic_eval
    # Draw extra so that dropping prompts seen in training still leaves n examples.
    pool = make_synthetic_examples(
        2 * n + 16, config.seed + SYNTHETIC_EVAL_SEED_OFFSET, config.synthetic_kind
    )
    held_out = [e for e in pool if e.prompt not in seen][:n]
    if len(held_out) < n:
        logger.warning("synthetic eval set: only %d of %d unseen prompts", len(held_out), n)
    return held_out


def load_task(config: DataConfig, split: str = "train") -> list[Example]:
    """Load and format the training or held-out examples of a data config.

    Args:
        config: The data config.
        split: ``"train"`` (``source`` / ``split``) or ``"eval"`` (``eval_source`` /
            ``eval_split``).

    Returns:
        The formatted examples, in source order, cut to ``max_train_examples`` /
        ``max_eval_examples``; training responses come from ``generated_responses`` when set.

    Raises:
        ConfigError: For an unknown ``split`` argument.
        DataError: For unreadable sources or records the formatter cannot use; an MBPP split
            that leaves no record.

    """
    if split not in ("train", "eval"):
        raise ConfigError(f"load_task split must be 'train' or 'eval', got {split!r}")
    examples = _load_split(config, split)
    if split == "train" and config.generated_responses:
        from adaspec.data.generated import apply_generated

        examples = apply_generated(examples, config.generated_responses)
    return examples


def _load_split(config: DataConfig, split: str) -> list[Example]:
    """The gold examples of one split (see :func:`load_task`)."""
    if config.task == "synthetic" and config.source is None:
        return _synthetic(config, split)
    if config.eval_holdout:
        return _holdout(config, split)
    if split == "train":
        source = _resolve_source(config, config.source)
        data_split, limit = config.split, config.max_train_examples
    else:
        source = _resolve_source(config, config.eval_source or config.source)
        data_split, limit = config.eval_split, config.max_eval_examples
        same = config.eval_source is None or config.eval_source == config.source
        one_file = is_local_source(source) and not os.path.isdir(source)
        if same and (config.split == config.eval_split or (one_file and config.task != "mbpp")):
            logger.warning(
                "held-out data is the training data (source %r, split %r); set data.eval_source "
                "(or data.eval_split for a hub dataset or a folder) to a separate set",
                source,
                data_split,
            )
    return _load_formatted(config, source, data_split, limit)


def _holdout(config: DataConfig, split: str) -> list[Example]:
    """Split one source into training records and the last ``eval_holdout`` held-out records."""
    source = _resolve_source(config, config.source)
    examples = _load_formatted(config, source, config.split, None)
    n = int(config.eval_holdout or 0)
    if n >= len(examples):
        raise DataError(
            f"data.eval_holdout={n} leaves no training example: {source} (split "
            f"{config.split!r}) holds {len(examples)}; use a smaller eval_holdout"
        )
    part = examples[:-n] if split == "train" else examples[-n:]
    limit = config.max_train_examples if split == "train" else config.max_eval_examples
    return part[:limit] if limit else part


def _load_formatted(
    config: DataConfig, source: str, data_split: str, limit: int | None
) -> list[Example]:
    formatter = get_formatter(config.task, config.prompt_field, config.response_field)
    is_mbpp = config.task == "mbpp" and data_split in MBPP_SPLITS
    records = load_records(
        source, split=data_split, subset=config.subset, limit=None if is_mbpp else limit
    )
    if is_mbpp and records and "task_id" in records[0]:
        n_all = len(records)
        records = mbpp_split(records, data_split)
        if not records:
            low, high = MBPP_SPLITS[data_split]
            raise DataError(
                f"{source}: no MBPP record has a task_id in {low}-{high} (split {data_split!r}) "
                f"among its {n_all} records; pick the split this file holds, or the full file"
            )
        if limit is not None:
            records = records[:limit]
    if not records:
        where = source if is_local_source(source) else f"hub dataset {source}"
        raise DataError(f"{where} (split {data_split!r}) holds no records")
    return [formatter(r) for r in records]
