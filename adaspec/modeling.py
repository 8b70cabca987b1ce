"""Model and tokenizer construction: Hugging Face checkpoints, or tiny models built from a config.

Every stage of the project goes through these helpers, so that a user's ``from_pretrained``
checkpoint and the tiny models that tests and the offline demo build from a config follow the same
path, and so that vocabulary checks live in one place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from adaspec._base.models import model_vocab_size

FAMILIES = ("gpt_neox", "llama", "qwen2")
SPECIAL_TOKENS = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>"}


def tiny_config(
    family: str = "gpt_neox",
    vocab_size: int = 128,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 1024,
    num_kv_heads: int | None = None,
    **overrides: Any,
):
    """Build a small transformers config of one of the supported families.

    Args:
        family: One of ``gpt_neox`` (Pythia), ``llama`` or ``qwen2``.
        vocab_size: Rows of the embedding and the lm_head.
        hidden_size: Model width.
        num_layers: Decoder layers.
        num_heads: Attention heads (``hidden_size`` must divide by it).
        intermediate_size: MLP width; ``4 * hidden_size`` by default.
        max_position_embeddings: Longest position the rotary embedding is built for.
        num_kv_heads: Key/value heads for Llama and Qwen2 (grouped-query attention);
            ``num_heads`` by default.
        **overrides: Any further config field.

    Returns:
        The config object, ready for ``AutoModelForCausalLM.from_config``.

    Raises:
        ValueError: If ``family`` is unknown or the head count does not divide the width.
    """
    if family not in FAMILIES:
        raise ValueError(f"model family {family!r} is not supported; use one of {FAMILIES}")
    if hidden_size % num_heads:
        raise ValueError(
            f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}; "
            "pick a head count that divides the width"
        )
    inter = intermediate_size or 4 * hidden_size
    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=inter,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    if family == "gpt_neox":
        cfg = GPTNeoXConfig(**common, rotary_pct=0.25, use_parallel_residual=True)
    elif family == "llama":
        cfg = LlamaConfig(**common, num_key_value_heads=num_kv_heads or num_heads)
    else:
        cfg = Qwen2Config(**common, num_key_value_heads=num_kv_heads or num_heads)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def build_model(
    config, seed: int | None = None, dtype: torch.dtype | None = None
) -> PreTrainedModel:
    """Instantiate a causal LM with random weights from ``config``.

    Args:
        config: A transformers config (for example from :func:`tiny_config`).
        seed: Seeds torch before the weights are drawn, so two calls give identical models.
        dtype: Optional parameter dtype.

    Returns:
        The model, in eval mode.
    """
    if seed is not None:
        torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 512, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` (about a second for a few thousand lines).

    The ids 0, 1 and 2 are the BOS, EOS and PAD tokens, matching :func:`tiny_config`.

    Args:
        texts: Training text.
        vocab_size: Target vocabulary size, special tokens included.
        min_frequency: Minimum pair frequency for a merge.

    Returns:
        A fast tokenizer with ``bos_token``, ``eos_token`` and ``pad_token`` set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a hub name, a directory, or a single ``tokenizer.json`` file.

    A tokenizer without a pad token gets its EOS token as pad token (as Pythia needs).

    Raises:
        ValueError: Naming the file, when a local tokenizer file is truncated or not a tokenizer.
    """
    import os

    try:
        if name_or_path.endswith(".json"):
            tok = PreTrainedTokenizerFast(tokenizer_file=name_or_path)
            if tok.eos_token is None and "<|endoftext|>" in tok.get_vocab():
                tok.eos_token = "<|endoftext|>"
        else:
            tok = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ImportError):
        raise
    except Exception as err:  # tokenizers raises a bare Exception on a malformed file
        if not os.path.exists(name_or_path):
            raise
        raise ValueError(
            f"cannot read the tokenizer at {name_or_path}: {err}. The file is truncated (a save cut "
            "short, e.g. by a full disk) or not a tokenizer: restore it from its source, or delete "
            "it so that it is rebuilt"
        ) from err
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name_or_path: str, dtype: str | torch.dtype | None = None, **kwargs: Any
) -> PreTrainedModel:
    """Load a causal LM checkpoint with ``from_pretrained`` (hub name or local directory).

    Args:
        name_or_path: Hub id or directory.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"`` or a torch dtype.
        **kwargs: Passed to ``from_pretrained`` (for example ``attn_implementation``).
    """
    check_local_path(name_or_path, "model")
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except Exception as err:
        if type(err).__name__ != "SafetensorError":
            raise
        bad = _unreadable_safetensors(name_or_path)
        raise OSError(
            f"{bad or name_or_path}: the safetensors weights are truncated or corrupt ({err}); "
            "the save was probably interrupted: save or download the checkpoint again"
        ) from err


def check_local_path(name_or_path: str, what: str = "model") -> None:
    """Raise ``FileNotFoundError`` at once for a local-looking path that does not exist.

    A name that :func:`adaspec.data.sources.looks_like_path` (``./x``, ``/x``, ``~/x``, ``a/b/c``,
    ``runs/x`` with ``runs`` present) would otherwise be sent to the hub, which fails late.
    """
    from adaspec.data.sources import looks_like_path

    path = os.path.expanduser(str(name_or_path))
    if looks_like_path(str(name_or_path)) and not os.path.exists(path):
        raise FileNotFoundError(
            f"{what} path {name_or_path!r} does not exist (looked for {os.path.abspath(path)}): "
            "fix the path; a hub id has the form org/name"
        )


def _unreadable_safetensors(name_or_path: str) -> str | None:
    """The first ``*.safetensors`` file of a local folder that safetensors cannot open."""
    from safetensors import safe_open

    if not os.path.isdir(name_or_path):
        return None
    for name in sorted(os.listdir(name_or_path)):
        if name.endswith(".safetensors"):
            path = os.path.join(name_or_path, name)
            try:
                with safe_open(path, framework="pt") as f:
                    for key in f.keys():
                        f.get_slice(key)
            except Exception:
                return path
    return None


def check_max_length(model: PreTrainedModel, max_length: int, name: str = "model") -> None:
    """Refuse a ``data.max_length`` longer than the model's positions.

    Raises:
        ConfigError: Naming both numbers and the fix.
    """
    from adaspec.config import ConfigError

    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        raise ConfigError(
            f"data.max_length={max_length} is longer than the {name} model's {positions} "
            "positions (config.max_position_embeddings): lower data.max_length to at most "
            f"{positions}, or use a model with more positions"
        )


def check_same_vocabulary(
    models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase | None = None
) -> int:
    """Refuse models that cannot share one tokenizer.

    Embedding rows padded past the tokenizer's size are allowed (Pythia pads 50277 tokens to
    50304 rows); the models' logits are later cut to the shared ``len(tokenizer)`` columns.

    Args:
        models: Role name (``"target"``, ``"draft"``, ...) to model.
        tokenizer: The shared tokenizer, if known.

    Returns:
        The number of logit columns all models share: ``len(tokenizer)`` if given, else the
        smallest vocabulary.

    Raises:
        ValueError: Naming each model's vocabulary when one is smaller than the tokenizer, or when
            the models differ and no tokenizer says which columns they share.
    """
    sizes = {name: model_vocab_size(m) for name, m in models.items()}
    if tokenizer is not None:
        n = len(tokenizer)
        small = {name: v for name, v in sizes.items() if v < n}
        if small:
            raise ValueError(
                f"vocabulary mismatch: the tokenizer has {n} tokens but {small} "
                f"(all sizes: {sizes}); target, reference and draft must share one tokenizer: "
                "use models trained with the same tokenizer, or resize their embeddings"
            )
        return n
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"vocabulary mismatch between models: {sizes}; target, reference and draft must share "
            "one tokenizer: pass the tokenizer so padded embedding rows can be told apart, or use "
            "models trained with the same tokenizer"
        )
    return next(iter(sizes.values()))


def freeze(model: PreTrainedModel) -> PreTrainedModel:
    """Put ``model`` in eval mode with gradients off, as the frozen target and reference are."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_config(name_or_path: str):
    """Load a transformers config (used to build a draft from a named architecture)."""
    return AutoConfig.from_pretrained(name_or_path)
