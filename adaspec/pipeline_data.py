"""The pipeline's shared inputs: the run's tokenizer and its tokenized training data."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import PartialState
from transformers import PreTrainedTokenizerBase

from adaspec.config import save_config
from adaspec.data import (
    DataCollatorForCompletion,
    Example,
    TruncationReport,
    load_task,
    to_hf_dataset,
    tokenize_examples,
)
from adaspec.modeling import load_tokenizer, train_bpe_tokenizer
from adaspec.pipeline_config import PipelineConfig
from adaspec.pipeline_guard import changed_settings, saved_config, tokenizer_settings
from adaspec.tokenizer_io import save_tokenizer

logger = logging.getLogger(__name__)


def prepare_tokenizer(
    config: PipelineConfig, texts: list[str], rebuild: bool = False
) -> PreTrainedTokenizerBase:
    """The run's tokenizer, saved atomically to ``output_dir/tokenizer`` and reused from there.

    It is ``tokenizer.name_or_path``; when that is null, the tokenizer of a loaded target
    (``target.model.name_or_path``), whose ids are the ones it was trained on; otherwise a BPE
    trained on ``texts``. A saved tokenizer that cannot be read (a save cut short by an older
    version) is rebuilt, with a warning; trained stages are then checked against it by fingerprint.

    Args:
        config: The pipeline config.
        texts: Training texts for a fresh BPE.
        rebuild: Build it again even if a saved one exists (its settings changed).
    """
    folder = Path(config.output_dir) / "tokenizer"
    if folder.is_dir() and not rebuild:
        try:
            return load_tokenizer(str(folder))
        except ValueError as err:
            logger.warning("%s; rebuilding %s from the config", err, folder)
    source = config.tokenizer.name_or_path or config.target.model.name_or_path
    if source is not None:
        tokenizer = load_tokenizer(source)
    else:
        tokenizer = train_bpe_tokenizer(texts, vocab_size=config.tokenizer.bpe_vocab_size)
    save_tokenizer(tokenizer, folder)
    return tokenizer


@dataclass
class RunData:
    """What every stage of one run shares.

    Attributes:
        tokenizer: The run's tokenizer (see :func:`prepare_tokenizer`).
        train_dataset: The tokenized training split.
        eval_examples: The held-out examples the drafts are compared on.
        collator: Pads batches of ``train_dataset``.
        truncation: The tokenization report (how many examples were cut or dropped).
    """

    tokenizer: PreTrainedTokenizerBase
    train_dataset: Any
    eval_examples: list[Example]
    collator: DataCollatorForCompletion
    truncation: TruncationReport


def prepare_data(config: PipelineConfig, state: PartialState) -> RunData:
    """Load both splits, save the config and the tokenizer, tokenize the training split.

    The main process writes ``output_dir/adaspec_config.yaml`` and the tokenizer first; the
    others then read them. The tokenizer is rebuilt when the settings that decide it changed
    since the saved config.

    Args:
        config: The run's config.
        state: The accelerate state (which process this is).
    """
    out = Path(config.output_dir)
    train_examples = load_task(config.data, split="train")
    eval_examples = load_task(config.data, split="eval")
    texts = [e.prompt + e.response for e in train_examples]
    previous = saved_config(out) if (out / "adaspec_config.yaml").exists() else None
    rebuild = previous is not None and bool(
        changed_settings(tokenizer_settings(previous), tokenizer_settings(config))
    )
    with state.main_process_first():
        if state.is_main_process:
            save_config(config, out)
        tokenizer = prepare_tokenizer(config, texts, rebuild=rebuild)
    features, report = tokenize_examples(
        train_examples,
        tokenizer,
        config.data.max_length,
        truncation_side=config.data.truncation_side,
        chat_template=config.data.chat_template,
    )
    logger.info("training data: %s", report.summary())
    return RunData(
        tokenizer=tokenizer,
        train_dataset=to_hf_dataset(features),
        eval_examples=eval_examples,
        collator=DataCollatorForCompletion(tokenizer),
        truncation=report,
    )
