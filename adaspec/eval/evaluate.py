"""The evaluation runner: acceptance rate, token-level acceptance and quality of target + drafts.

For each prompt the target first decodes greedily on its own (the reference). Then, for each
draft, the speculative decoder of :mod:`adaspec.decoding` runs with a chain of ``gamma`` draft
tokens and greedy verification; its output must equal the reference token for token (recorded as
``identical_to_target``). From the decoder's per-round records come the paper's acceptance rate
``alpha = accepted / (accepted + rejected)`` (each round counts its accepted tokens and at most
one rejection; the bonus token is not counted), the mean accepted tokens per round and the
acceptance by position in the block. The reference continuation is reused, teacher-forced, for
the token-level expected acceptance ``E[sum_x min(p, q)]``. The generated text is scored with the
task's quality metric (:func:`adaspec.eval.metrics.score`).

:func:`evaluate_models` takes models in memory (the pipeline calls it right after training);
:func:`run_eval` loads checkpoints from an :class:`EvalConfig` and writes ``results.json``,
``results.md`` and ``acceptance_by_position.png``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from adaspec.config import ConfigError
from adaspec.data import (
    FORMATTERS,
    MBPP_SPLITS,
    Example,
    build_prompt_ids,
    get_formatter,
    load_records,
    load_task,
    mbpp_split,
    use_chat_template,
)
from adaspec.decoding import (
    DraftModelDrafter,
    SamplingConfig,
    SpeculativeDecoder,
    autoregressive_generate,
    chain,
)
from adaspec.eval.aggregate import DraftAccumulator, summary_rows
from adaspec.eval.config import EvalConfig
from adaspec.eval.greedy_alpha import ALPHA_METHODS, simulate_greedy_chain
from adaspec.eval.loading import check_finite_logits, load_eval_models
from adaspec.eval.metrics import canonical_task, mean_dicts, score
from adaspec.eval.report import write_eval_outputs
from adaspec.eval.target_outputs import TargetOutputCache
from adaspec.eval.token_acceptance import min_overlap, scored_logits

logger = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; anything else is parsed by torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device {device!r} is not a torch device ({err}); use 'auto'") from None


def eos_ids_for(tokenizer: Any, model: Any = None, extra: Sequence[int] | None = None) -> list[int]:
    """Collect the ids that end generation: ``extra``, else the tokenizer's and model's EOS."""
    if extra:
        return sorted({int(e) for e in extra})
    ids: set[int] = set()
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    for source in (gen, getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return sorted(ids)


def _decode(tokenizer: Any, tokens: list[int], eos: set[int]) -> str:
    body = tokens[:-1] if tokens and tokens[-1] in eos else tokens
    return tokenizer.decode(body, skip_special_tokens=True)


@torch.no_grad()
def evaluate_models(
    target: torch.nn.Module,
    drafts: Mapping[str, torch.nn.Module],
    tokenizer: Any,
    examples: Sequence[Example],
    task: str | None = None,
    gamma: int = 4,
    max_new_tokens: int = 512,
    eos_token_ids: Sequence[int] | None = None,
    quality: bool = True,
    token_acceptance: bool = True,
    mbpp_timeout: float = 5.0,
    keep_samples: bool = True,
    progress: bool = True,
    warmup: bool = True,
    chat_template: str = "never",
    alpha_method: str = "decode",
    target_outputs: str | None = None,
) -> dict[str, Any]:
    """Measure acceptance and quality of in-memory drafts against an in-memory target.

    Args:
        target: The target causal LM (its device is used for the prompts).
        drafts: Draft name -> draft causal LM sharing the target's tokenizer.
        tokenizer: The shared tokenizer.
        examples: Prompt set (``Example.prompt`` is generated from; ``meta`` is scored).
        task: Quality metric family; ``None`` or a task without a metric skips quality.
        gamma: Draft tokens per round.
        max_new_tokens: Most new tokens per prompt.
        eos_token_ids: Ids that end generation (default: tokenizer's and target's EOS).
        quality: Score generated text.
        token_acceptance: Measure the token-level expected acceptance.
        mbpp_timeout: Seconds per MBPP test run.
        keep_samples: Include per-prompt results in the output.
        progress: Show a tqdm progress bar.
        warmup: Decode a few tokens of the first prompt (untimed) before measuring, so that
            one-off start-up costs (kernels, allocator) do not enter the timings.
        chat_template: ``"never"``, ``"auto"`` or ``"always"``: whether prompts go through the
            tokenizer's chat template (recorded as ``settings.chat_template``).
        alpha_method: ``"decode"`` runs the speculative decoder for each draft (and checks its
            output against the target's); ``"teacher_forced"`` takes the same rounds from one
            teacher-forced draft forward over the target's greedy continuation
            (:mod:`adaspec.eval.greedy_alpha`), without decoding: much cheaper on a large
            target, no speed or output check.
        target_outputs: A jsonl file of the target's greedy continuations
            (:class:`~adaspec.eval.target_outputs.TargetOutputCache`), read where it holds this
            target's output for a prompt and appended to otherwise; None decodes every prompt.
            The target's time is then the time recorded when it was decoded.

    Returns:
        A JSON-ready dict: ``settings``, ``target`` (quality, tokens, time), ``drafts`` (name ->
        ``alpha``, ``mean_accepted_per_round``, ``acceptance_by_position``,
        ``token_acceptance``, ``identical_to_target``, ``quality``, ``speedup``...), ``table``
        rows and, with ``keep_samples``, ``samples``.

    Raises:
        ValueError: If a draft does not share the target's vocabulary, there is no example, or
            a model gives non-finite logits (NaN weights).

    """
    from tqdm.auto import tqdm

    from adaspec.modeling import check_same_vocabulary

    if not drafts:
        raise ValueError("evaluate_models needs at least one draft: drafts={name: model}")
    if not examples:
        raise ValueError("evaluate_models got no examples; check the prompt set and num_prompts")
    vocab = check_same_vocabulary({"target": target, **dict(drafts)}, tokenizer)
    eos_list = eos_ids_for(tokenizer, target, eos_token_ids)
    eos = set(eos_list)
    kind = canonical_task(task) if quality else None
    device = next(target.parameters()).device
    greedy = SamplingConfig(temperature=0.0)
    chat = use_chat_template(tokenizer, chat_template)
    if alpha_method not in ALPHA_METHODS:
        raise ValueError(f"alpha_method must be one of {ALPHA_METHODS}, got {alpha_method!r}")
    decode = alpha_method == "decode"
    decoders = {
        name: SpeculativeDecoder(
            target, DraftModelDrafter(draft, vocab_size=vocab), tree=chain(gamma), sampling=greedy
        )
        for name, draft in drafts.items()
        if decode
    }
    accs = {name: DraftAccumulator(gamma) for name in drafts}
    cache = TargetOutputCache(target_outputs, target) if target_outputs else None
    target_quality: list[dict[str, float]] = []
    target_tokens = 0
    target_seconds = 0.0
    samples: list[dict[str, Any]] = []
    first = torch.tensor([build_prompt_ids(examples[0], tokenizer, chat)], device=device)
    check_finite_logits({"target": target, **{f"draft {n!r}": d for n, d in drafts.items()}}, first)
    if warmup:
        autoregressive_generate(target, first, min(8, max_new_tokens), eos_list, sampling=greedy)
        for decoder in decoders.values():
            decoder.generate(first, min(8, max_new_tokens), eos_list)
    for i, example in enumerate(tqdm(examples, desc="eval", disable=not progress)):
        prompt = torch.tensor([build_prompt_ids(example, tokenizer, chat)], device=device)
        key = cache.key(prompt[0].tolist(), max_new_tokens, eos_list) if cache else None
        hit = cache.get(key) if cache else None
        if hit is None:
            ref = autoregressive_generate(target, prompt, max_new_tokens, eos_list, sampling=greedy)
            ref_tokens, ref_s = ref.new_tokens[0].tolist(), ref.total_s
            if cache:
                cache.put(key, ref_tokens, ref_s)
        else:
            ref_tokens, ref_s = hit
        target_tokens += len(ref_tokens)
        target_seconds += ref_s
        ref_text = _decode(tokenizer, ref_tokens, eos)
        ref_scores = score(kind, ref_text, example, timeout=mbpp_timeout) if kind else {}
        target_quality.append(ref_scores)
        sample: dict[str, Any] = {
            "index": i,
            "prompt_tokens": int(prompt.shape[1]),
            "target_text": ref_text,
            "target_quality": ref_scores,
            "drafts": {},
        }
        # The target's greedy continuation, reused teacher-forced for the token-level acceptance.
        full = torch.cat([prompt, torch.tensor([ref_tokens], dtype=prompt.dtype, device=device)], 1)
        p_len = prompt.shape[1]
        t_logits = scored_logits(target, full, p_len, vocab) if token_acceptance else None
        for name, draft in drafts.items():
            if decode:
                out = decoders[name].generate(prompt, max_new_tokens, eos_list)
                tokens, steps, seconds = out.new_tokens[0].tolist(), out.steps, out.total_s
                identical: bool | None = tokens == ref_tokens
            else:  # the rounds follow from the draft's teacher-forced argmax along ref_tokens
                d_argmax = scored_logits(draft, full, p_len, vocab)[0].argmax(-1).tolist()
                steps = simulate_greedy_chain([d == r for d, r in zip(d_argmax, ref_tokens)], gamma)
                tokens, seconds, identical = ref_tokens, 0.0, None
            if identical is False:
                logger.warning(
                    "draft %r, prompt %d: speculative output differs from the target's greedy "
                    "output after %d tokens; greedy verification should reproduce it exactly "
                    "(low-precision noise can flip near-ties)",
                    name,
                    i,
                    _common_prefix(tokens, ref_tokens),
                )
            per_token = agree = None
            if t_logits is not None:
                d_logits = scored_logits(draft, full, p_len, vocab).to(t_logits.device)
                per_token = min_overlap(t_logits[0], d_logits[0]).tolist()
                agree = (t_logits[0].argmax(-1) == d_logits[0].argmax(-1)).tolist()
            if not kind:
                scores: dict[str, float] = {}
            elif identical is not False:  # equal to the target's output (or taken as it)
                scores = ref_scores
            else:
                scores = score(kind, _decode(tokenizer, tokens, eos), example, mbpp_timeout)
            alpha = accs[name].add(steps, len(tokens), seconds, identical, per_token, scores, agree)
            sample["drafts"][name] = {
                "alpha": alpha,
                "rounds": len(steps),
                "identical_to_target": identical,
                "token_acceptance": sum(per_token) / len(per_token) if per_token else None,
            }
        if keep_samples:
            samples.append(sample)
    target_summary = {
        "quality": mean_dicts(target_quality),
        "new_tokens": target_tokens,
        "seconds": target_seconds,
        "tokens_per_second": target_tokens / target_seconds if target_seconds else None,
    }
    draft_summaries = {
        name: acc.summary(target_seconds=target_seconds) for name, acc in accs.items()
    }
    results: dict[str, Any] = {
        "settings": {
            "task": task,
            "num_prompts": len(examples),
            "gamma": gamma,
            "max_new_tokens": max_new_tokens,
            "chat_template": chat,
            "alpha_method": alpha_method,
            "target_outputs_cached": cache.hits if cache else 0,
            "eos_token_ids": eos_list,
            "vocab_size": vocab,
            "device": str(device),
            "dtype": str(next(target.parameters()).dtype).replace("torch.", ""),
        },
        "target": target_summary,
        "drafts": draft_summaries,
    }
    results["table"] = summary_rows(results)
    if keep_samples:
        results["samples"] = samples
    return results


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def load_prompt_examples(config: EvalConfig) -> list[Example]:
    """Load the first ``num_prompts`` examples of the configured prompt set.

    Raises:
        ConfigError: If neither ``data`` nor ``source`` is set.

    """
    if config.data is not None:
        data = config.data
        if data.max_eval_examples is None or data.max_eval_examples > config.num_prompts:
            data = data.replace(max_eval_examples=config.num_prompts)
        return load_task(data, "eval")[: config.num_prompts]
    if config.source is not None:
        task = config.task if config.task in FORMATTERS else canonical_task(config.task)
        task = task if task in FORMATTERS else "prompt_response"
        is_mbpp = task == "mbpp" and config.split in MBPP_SPLITS
        limit = None if is_mbpp else config.num_prompts
        records = load_records(config.source, split=config.split, limit=limit)
        if is_mbpp and records and "task_id" in records[0]:
            records = mbpp_split(records, config.split)
        fmt = get_formatter(task)
        return [fmt(r) for r in records[: config.num_prompts]]
    raise ConfigError(
        "no prompt set: set `data` (a DataConfig, e.g. {task: gsm8k, eval_source: "
        "../shared/data/gsm8k/test.jsonl}) or `source` with `task` (e.g. source: "
        "../shared/data/gsm8k/test.jsonl, task: gsm8k)"
    )


def eval_chat_mode(config: EvalConfig) -> str:
    """The chat-template mode of an evaluation: its own, else its data config's, else auto."""
    if config.chat_template is not None:
        return config.chat_template
    return config.data.chat_template if config.data is not None else "auto"


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Load the target, the drafts and the prompt set, evaluate, and write the reports.

    Returns:
        The results dict of :func:`evaluate_models` with the resolved ``config`` and the
        written ``files`` added.

    Raises:
        ConfigError: For a missing target, no draft, or no prompt set.
        ValueError: If a draft does not share the target's tokenizer.

    """
    from adaspec.config import save_config

    if not config.target:
        raise ConfigError("target is required: a hub id or a checkpoint directory")
    if not config.drafts:
        raise ConfigError("drafts is empty: give at least one {name: checkpoint}")
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    examples = load_prompt_examples(config)
    target, drafts, tokenizer = load_eval_models(config, device)
    task = config.task or (config.data.task if config.data is not None else None)
    start = time.perf_counter()
    results = evaluate_models(
        target,
        drafts,
        tokenizer,
        examples,
        task=task,
        gamma=config.gamma,
        max_new_tokens=config.max_new_tokens,
        eos_token_ids=config.eos_token_ids,
        quality=config.quality,
        token_acceptance=config.token_acceptance,
        mbpp_timeout=config.mbpp_timeout,
        keep_samples=config.keep_samples,
        chat_template=eval_chat_mode(config),
        alpha_method=config.alpha_method,
    )
    results["settings"]["wall_seconds"] = time.perf_counter() - start
    results = {"config": config.to_dict(), **results}
    files = write_eval_outputs(results, config.output_dir)
    results["markdown"] = files["markdown"].read_text()
    save_config(config, config.output_dir, name="eval_config.yaml")
    results["files"] = {k: str(v) for k, v in files.items()}
    return results
