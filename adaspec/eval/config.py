"""The evaluation config: which target, drafts and prompt set ``adaspec eval`` measures.

It lives apart from the runner (:mod:`adaspec.eval.evaluate`) so that the model loader
(:mod:`adaspec.eval.loading`) and the runner both import it without importing each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from adaspec.config import ConfigBase, ConfigError, cfg_field, check_choice, check_range
from adaspec.data import CHAT_MODES, DataConfig

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclasses.dataclass
class EvalConfig(ConfigBase):
    """What ``adaspec eval`` measures: a target, one or more drafts, a prompt set."""

    target: str | None = cfg_field(None, help="target checkpoint: hub id or local directory")
    drafts: dict[str, str] = cfg_field(
        {}, help="draft name -> checkpoint (hub id or directory), e.g. {adaspec: runs/x/draft}"
    )
    tokenizer: str | None = cfg_field(
        None, help="shared tokenizer (hub id, directory or tokenizer.json); None: the target's"
    )
    data: DataConfig | None = cfg_field(
        None, help="prompt set through the data layer (its held-out split: eval_source/eval_split)"
    )
    source: str | None = cfg_field(
        None,
        help="alternative to `data`: a .jsonl/.json/.parquet file, a folder of <split>.jsonl "
        "files or a hub dataset, formatted with `task` (prompt/response pairs when the task has "
        "no formatter)",
    )
    split: str = cfg_field("test", help="split of `source` (MBPP: test = task ids 11-510)")
    task: str | None = cfg_field(
        None, help="quality metric family (gsm8k, mbpp, xsum, cnn_dailymail); None: data.task"
    )
    num_prompts: int = cfg_field(100, help="prompts to evaluate (the first N of the set)")
    gamma: int = cfg_field(4, help="draft tokens proposed per round (chain length)")
    max_new_tokens: int = cfg_field(512, help="most new tokens per prompt (stops at EOS)")
    dtype: str = cfg_field("auto", help=f"model dtype, one of {DTYPES}")
    device: str = cfg_field("auto", help="'auto' (cuda if available, else cpu) or a torch device")
    attn_implementation: str | None = cfg_field(None, help="e.g. 'sdpa' or 'eager'; None: default")
    seed: int = cfg_field(0, help="torch seed (greedy decoding itself is deterministic)")
    output_dir: str = cfg_field("runs/eval", help="folder for results.json, results.md, the plot")
    eos_token_ids: list[int] | None = cfg_field(
        None, help="ids that end generation; None: the tokenizer's and the target's EOS ids"
    )
    quality: bool = cfg_field(True, help="score the generated text with the task's metric")
    token_acceptance: bool = cfg_field(True, help="also measure E[sum min(p, q)] (1 - TV)")
    mbpp_timeout: float = cfg_field(5.0, help="seconds allowed to each MBPP test run")
    keep_samples: bool = cfg_field(True, help="write per-prompt results (texts, α) to results.json")
    chat_template: str | None = cfg_field(
        None,
        help="prompts through the tokenizer's chat template: auto (when it has one), always or "
        "never; None: data.chat_template when `data` is set, else auto",
    )

    alpha_method: str = cfg_field(
        "decode",
        help="decode: run the speculative decoder per draft (checks its output too); "
        "teacher_forced: the same greedy rounds from one teacher-forced draft forward over the "
        "target's greedy output (exact up to near-tie rounding, no decoding, much cheaper)",
    )

    def validate(self) -> None:
        """Check counts, choices and that a prompt source is given."""
        super().validate()
        check_range("num_prompts", self.num_prompts, 1)
        check_range("gamma", self.gamma, 1, hint="the draft proposes at least one token a round")
        check_range("max_new_tokens", self.max_new_tokens, 1)
        check_range("mbpp_timeout", self.mbpp_timeout, 0.0, low_open=True)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("alpha_method", self.alpha_method, ("decode", "teacher_forced"))
        if self.chat_template is not None:
            check_choice("chat_template", self.chat_template, CHAT_MODES)
        if not isinstance(self.drafts, Mapping):
            raise ConfigError(
                f"drafts must map a draft name to a checkpoint, got {type(self.drafts).__name__} "
                "(e.g. drafts: {adaspec: runs/adaspec/draft, distillspec: runs/adaspec/reference})"
            )
        if self.data is not None and self.source is not None:
            raise ConfigError(
                "give the prompt set either as data (a DataConfig) or as source, not both"
            )
