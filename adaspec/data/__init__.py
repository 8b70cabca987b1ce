"""Data layer: task formatters, record sources, tokenization with prompt masking, synthetic task.

Typical use::

    from adaspec.data import DataConfig, load_task, tokenize_examples, DataCollatorForCompletion

    cfg = DataConfig(task="gsm8k", source="data/gsm8k", split="train", eval_split="test")
    examples = load_task(cfg, split="train")
    features, report = tokenize_examples(examples, tokenizer, cfg.max_length)
    collator = DataCollatorForCompletion(tokenizer)
"""

from adaspec.data.chat import (
    CHAT_MODES,
    chat_prompt_ids,
    chat_token_ids,
    messages,
    use_chat_template,
    user_message,
)
from adaspec.data.collate import DataCollatorForCompletion
from adaspec.data.config import DataConfig, load_task
from adaspec.data.example import DataError, Example, record_location
from adaspec.data.formatters import (
    ALPACA_PROMPT_INPUT,
    ALPACA_PROMPT_NO_INPUT,
    FORMATTERS,
    GSM8K_ANSWER_PROMPT,
    GSM8K_QUESTION_PROMPT,
    MBPP_PROMPT,
    MBPP_SPLITS,
    SUMMARY_PROMPT,
    Formatter,
    format_records,
    get_formatter,
    gsm8k_final_answer,
    mbpp_split,
    prompt_response_formatter,
)
from adaspec.data.generated import apply_generated, prompt_hash, response_source
from adaspec.data.sft import (
    IGNORE_INDEX,
    TruncationReport,
    adds_bos_token,
    build_prompt_ids,
    label_every_token,
    to_hf_dataset,
    tokenize_examples,
)
from adaspec.data.sources import (
    DEFAULT_HUB_SOURCE,
    HUB_TASKS,
    default_subset,
    load_records,
    task_for_source,
)
from adaspec.data.synthetic import (
    KINDS as SYNTHETIC_KINDS,
)
from adaspec.data.synthetic import (
    lookup_code,
    make_synthetic_examples,
    make_synthetic_records,
    synthetic_tokenizer_texts,
)

__all__ = [
    "CHAT_MODES",
    "apply_generated",
    "chat_prompt_ids",
    "chat_token_ids",
    "messages",
    "prompt_hash",
    "response_source",
    "use_chat_template",
    "user_message",
    "ALPACA_PROMPT_INPUT",
    "ALPACA_PROMPT_NO_INPUT",
    "DEFAULT_HUB_SOURCE",
    "FORMATTERS",
    "GSM8K_ANSWER_PROMPT",
    "GSM8K_QUESTION_PROMPT",
    "HUB_TASKS",
    "IGNORE_INDEX",
    "MBPP_PROMPT",
    "MBPP_SPLITS",
    "SUMMARY_PROMPT",
    "SYNTHETIC_KINDS",
    "DataCollatorForCompletion",
    "DataConfig",
    "DataError",
    "Example",
    "Formatter",
    "TruncationReport",
    "adds_bos_token",
    "build_prompt_ids",
    "default_subset",
    "format_records",
    "get_formatter",
    "gsm8k_final_answer",
    "load_records",
    "load_task",
    "lookup_code",
    "make_synthetic_examples",
    "make_synthetic_records",
    "mbpp_split",
    "prompt_response_formatter",
    "record_location",
    "synthetic_tokenizer_texts",
    "task_for_source",
    "label_every_token",
    "to_hf_dataset",
    "tokenize_examples",
]
