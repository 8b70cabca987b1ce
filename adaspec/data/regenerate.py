"""``adaspec data regenerate``: the target's own responses to the training prompts, cached as jsonl.

The examples of ``data`` (its training split by default) are cut into fixed batches of
``batch_size`` in source order; each batch is left-padded and generated with ``generate`` (greedy
at ``temperature: 0``, else sampled with the torch seed ``seed + batch index``, so a resumed run
draws what an uninterrupted one would), and its records are appended to ``output`` (format in
:mod:`adaspec.data.generated`) and flushed. A second run skips the examples whose prompt hash is
already there; a run with other settings (model, generation, chat template) than the file's is
refused. Train on the result with ``data.generated_responses: OUTPUT``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from adaspec.config import ConfigBase, ConfigError, cfg_field, check_choice, check_range
from adaspec.data.chat import use_chat_template
from adaspec.data.config import DataConfig, load_task
from adaspec.data.example import DataError, Example
from adaspec.data.generated import SETTINGS_KEYS, cache_settings, prompt_hash, read_generated
from adaspec.data.sft import build_prompt_ids

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class RegenerateConfig(ConfigBase):
    """What ``adaspec data regenerate`` generates, with which model, and where it goes."""

    target: str = cfg_field("", help="the model that answers: a folder or hub id")
    tokenizer: str | None = cfg_field(None, help="tokenizer (default: the target's)")
    data: DataConfig = cfg_field(DataConfig, help="the prompts (chat_template applies)")
    split: str = cfg_field("train", help="which examples of `data`: train or eval")
    output: str = cfg_field("", help="the jsonl cache (appended to; resumable)")
    batch_size: int = cfg_field(8, help="prompts generated together (left-padded)")
    max_new_tokens: int = cfg_field(256, help="most new tokens per response (stops at EOS)")
    temperature: float = cfg_field(0.0, help="0: greedy; > 0: sampling at this temperature")
    top_p: float = cfg_field(1.0, help="nucleus sampling mass (sampling only)")
    seed: int = cfg_field(0, help="sampling seed (batch b uses seed + b)")
    dtype: str = cfg_field("float32", help="model dtype: float32, bfloat16 or float16")
    device: str = cfg_field("cpu", help="torch device")

    def validate(self) -> None:
        """Check the paths, counts and sampling settings."""
        super().validate()
        if not self.target:
            raise ConfigError("target is empty: give the model folder or hub id that answers")
        if not self.output:
            raise ConfigError("output is empty: give the jsonl file the responses go to")
        check_choice("split", self.split, ("train", "eval"))
        check_range("batch_size", self.batch_size, 1)
        check_range("max_new_tokens", self.max_new_tokens, 1)
        check_range("temperature", self.temperature, 0.0)
        check_range("top_p", self.top_p, 0.0, 1.0, low_open=True)
        check_choice("dtype", self.dtype, ("float32", "bfloat16", "float16"))

    def generation(self) -> dict[str, Any]:
        """The generation settings recorded with every response."""
        sampled = self.temperature > 0
        return {
            "do_sample": sampled,
            "temperature": self.temperature if sampled else None,
            "top_p": self.top_p if sampled else None,
            "seed": self.seed if sampled else None,
            "max_new_tokens": self.max_new_tokens,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
        }


def model_id(path: str) -> dict[str, Any]:
    """How the answering model is recorded: its path, and its registry name when prepared."""
    out: dict[str, Any] = {"path": str(path)}
    marker = Path(path) / "adaspec_model.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        out.update(name=info.get("name"), hub_id=info.get("hub_id"))
    return out


def _eos_ids(tokenizer: Any, model: Any) -> list[int]:
    ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    value = getattr(model.generation_config, "eos_token_id", None)
    ids.update([value] if isinstance(value, int) else list(value or []))
    return sorted(ids)


@torch.no_grad()
def generate_batch(
    model: Any, tokenizer: Any, prompts: list[list[int]], config: RegenerateConfig, seed: int
) -> list[tuple[list[int], str]]:
    """Left-padded batched ``generate``; returns (new tokens up to EOS, finish reason) per prompt."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    length = max(len(p) for p in prompts)
    device = next(model.parameters()).device
    ids = torch.tensor([[pad] * (length - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts], device=device)
    eos = _eos_ids(tokenizer, model)
    kwargs: dict[str, Any] = dict(
        attention_mask=mask,
        max_new_tokens=config.max_new_tokens,
        eos_token_id=eos,
        pad_token_id=pad,
        do_sample=config.temperature > 0,
    )
    if config.temperature > 0:
        torch.manual_seed(seed)
        kwargs.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    out = model.generate(ids, **kwargs)[:, length:].tolist()
    results = []
    for row in out:
        end = next((i for i, t in enumerate(row) if t in eos), None)
        results.append((row[: end + 1], "eos") if end is not None else (row, "length"))
    return results


def _decode(tokenizer: Any, tokens: list[int], finish: str) -> str:
    body = tokens[:-1] if finish == "eos" else tokens
    return tokenizer.decode(body, skip_special_tokens=True)


def regenerate(config: RegenerateConfig, model: Any = None, tokenizer: Any = None) -> dict:
    """Generate the missing responses of ``config`` into ``config.output``.

    Args:
        config: The settings.
        model: The answering model (default: loaded from ``config.target``).
        tokenizer: Its tokenizer (default: loaded from ``config.tokenizer`` or the target).

    Returns:
        ``{"output", "examples", "generated", "skipped", "seconds", "settings"}``.

    Raises:
        DataError: If ``output`` holds responses made with other settings.

    """
    from adaspec.modeling import load_model, load_tokenizer

    data = config.data.replace(generated_responses=None)
    examples: list[Example] = load_task(data, config.split)
    output = Path(config.output)
    if tokenizer is None:
        tokenizer = load_tokenizer(config.tokenizer or config.target)
    settings = {
        "model": model_id(config.target),
        "generation": config.generation(),
        "chat_template": use_chat_template(tokenizer, data.chat_template),
    }
    existing = read_generated(output, repair=True)
    if existing:
        found = cache_settings(existing, output)
        if found != settings:
            changed = [k for k in SETTINGS_KEYS if found.get(k) != settings[k]]
            raise DataError(
                f"{output} holds responses generated with other settings ({changed}: "
                f"{ {k: found.get(k) for k in changed} } there, now "
                f"{ {k: settings[k] for k in changed} }); write to another output or delete it"
            )
    done = {r["prompt_hash"] for r in existing}
    hashes = [prompt_hash(e) for e in examples]
    todo = [i for i, h in enumerate(hashes) if h not in done]
    start = time.perf_counter()
    generated = 0
    if todo:
        if model is None:
            model = load_model(config.target, dtype=config.dtype).to(config.device)
        model.eval()
        output.parent.mkdir(parents=True, exist_ok=True)
        size = config.batch_size
        batches = sorted({i // size for i in todo})
        with output.open("a", encoding="utf-8") as fh:
            for b in batches:
                members = list(range(b * size, min((b + 1) * size, len(examples))))
                prompts = [
                    build_prompt_ids(examples[i], tokenizer, data.chat_template) for i in members
                ]
                results = generate_batch(model, tokenizer, prompts, config, config.seed + b)
                for i, (tokens, finish) in zip(members, results):
                    if hashes[i] in done:
                        continue
                    fh.write(
                        json.dumps(
                            _record(
                                examples[i],
                                hashes[i],
                                tokens,
                                finish,
                                _decode(tokenizer, tokens, finish),
                                settings,
                            ),
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
                    done.add(hashes[i])
                    generated += 1
                fh.flush()
                os.fsync(fh.fileno())
                logger.info("regenerate: %d / %d responses", len(done), len(examples))
    return {
        "output": str(output),
        "examples": len(examples),
        "generated": generated,
        "skipped": len(examples) - len(todo),
        "seconds": time.perf_counter() - start,
        "settings": settings,
    }


def _record(
    example: Example, digest: str, tokens: list[int], finish: str, text: str, settings: dict
) -> dict[str, Any]:
    return {
        "prompt_hash": digest,
        "response": text,
        "gold_response": example.response,
        "finish": finish,
        "new_tokens": len(tokens),
        **settings,
        "source": example.meta.get("_source"),
        "line": example.meta.get("_line"),
    }
