"""KV-cache surgery and 4D masks for speculative decoding with stock transformers models.

The target and draft models are the stock Hugging Face classes. A tree of ``q`` draft tokens is
scored in one forward with

* a 4D additive float mask ``[1, 1, q, past + q]`` (0 where attention is allowed, the dtype's
  minimum elsewhere): every tree node sees the whole committed prefix, its ancestors and itself;
* ``position_ids`` ``[1, q]`` equal to ``past + depth`` so siblings share a position;
* a :class:`~transformers.DynamicCache`, which appends the ``q`` keys/values of every layer.

After verification only the accepted root-to-node path is kept: :func:`keep_positions` gathers
those slots on the sequence dimension of every layer's keys/values (``[batch, heads, seq, dim]``)
and truncates the rest. A ``DynamicLayer`` stores ``keys``/``values`` as plain tensors and derives
its length from ``keys.shape[-2]``, so writing the tensors is all a commit takes.

The cache is handed to the model under the keyword its ``forward`` declares: ``cache`` in
recent transformers 5.x (where ``past_key_values`` is a deprecated alias, removed in 5.40),
``past_key_values`` in older 5.x releases (:func:`cache_keyword`, looked up once per class).

Sliding-window layers (Mistral-style ``DynamicSlidingWindowLayer``) are not supported: the cache
is always created without the model config, so every layer is a full ``DynamicLayer``, which is
exact for sequences shorter than the window.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
from transformers import DynamicCache

_CACHE_KEYWORDS = ("cache", "past_key_values", "layer_past")


def new_cache() -> DynamicCache:
    """A fresh cache of full (non-sliding) dynamic layers."""
    return DynamicCache()


@functools.cache
def cache_keyword(forward_fn: Callable) -> str:
    """The keyword a model's / layer's ``forward`` takes its KV cache under.

    ``cache`` where the installed transformers has it, else the older ``past_key_values`` (or
    GPT-NeoX layers' ``layer_past``). Cached per function, so the signature is read once.

    Raises:
        TypeError: If the function takes none of them.
    """
    params = inspect.signature(forward_fn).parameters
    for name in _CACHE_KEYWORDS:
        if name in params:
            return name
    raise TypeError(
        f"{getattr(forward_fn, '__qualname__', forward_fn)} takes no KV cache argument "
        f"(looked for {_CACHE_KEYWORDS}); speculative decoding needs a model with a KV cache"
    )


def cache_length(cache) -> int:
    """Number of positions held by the cache (0 for an empty one)."""
    return int(cache.get_seq_length())


def crop_cache(cache, length: int) -> None:
    """Drop every position at or after ``length``.

    Args:
        cache: A :class:`DynamicCache`.
        length: Positions to keep.
    """
    for layer in cache.layers:
        keys = layer.keys
        if keys is None or keys.numel() == 0 or keys.shape[-2] <= length:
            continue
        layer.keys, layer.values = keys[..., :length, :], layer.values[..., :length, :]


def keep_positions(cache, start: int, indices: torch.Tensor) -> None:
    """Keep the slots ``start + indices`` after ``start`` and drop the others.

    Positions before ``start`` (the committed prefix) are untouched; ``indices`` (ascending, as a
    root-to-node path is) are moved to ``start, start + 1, ...`` and the cache is truncated to
    ``start + len(indices)``.

    Args:
        cache: A :class:`DynamicCache` holding at least ``start + max(indices) + 1`` positions.
        start: Length of the committed prefix.
        indices: LongTensor ``[m]`` of slot offsets relative to ``start``.
    """
    m = int(indices.shape[0])
    for layer in cache.layers:
        keys, values = layer.keys, layer.values
        if keys is None or keys.numel() == 0:
            continue
        idx = indices.to(keys.device) + start
        # The right-hand side is gathered into a new tensor first, so the write cannot alias.
        keys[..., start : start + m, :] = keys.index_select(-2, idx)
        values[..., start : start + m, :] = values.index_select(-2, idx)
        layer.keys, layer.values = keys[..., : start + m, :], values[..., : start + m, :]


def additive_mask(
    allowed: torch.Tensor, past: int, dtype: torch.dtype, device: torch.device | None = None
) -> torch.Tensor:
    """Turn a boolean attention pattern among new tokens into the model's 4D additive mask.

    Args:
        allowed: Bool ``[q, q]`` (or ``[q, f + q]`` when ``f`` extra cached tokens precede the new
            ones inside the window); ``allowed[i, j]`` means new token ``i`` may attend to
            column ``j`` of the window.
        past: Committed positions before the window, visible to every new token.
        dtype: Floating dtype of the model (the mask is added to the attention scores).
        device: Device of the mask (``allowed.device`` by default).

    Returns:
        Float ``[1, 1, q, past + window]``: 0 where allowed, ``finfo(dtype).min`` elsewhere.
    """
    device = device or allowed.device
    q, w = allowed.shape
    mask = torch.zeros(1, 1, q, past + w, dtype=dtype, device=device)
    block = torch.zeros(q, w, dtype=dtype, device=device)
    block.masked_fill_(~allowed.to(device), torch.finfo(dtype).min)
    mask[0, 0, :, past:] = block
    return mask


def causal_allowed(q: int, device: torch.device | None = None) -> torch.Tensor:
    """Bool ``[q, q]`` lower-triangular pattern for a plain chunk of ``q`` new tokens."""
    return torch.ones(q, q, dtype=torch.bool, device=device).tril_()


def model_dtype(model) -> torch.dtype:
    """Floating dtype of the model's parameters (for the additive mask)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def model_device(model) -> torch.device:
    """Device of the model's first parameter."""
    return next(model.parameters()).device


def forward(
    model,
    input_ids: torch.Tensor,
    cache,
    allowed: torch.Tensor,
    position_ids: torch.Tensor,
    output_hidden_states: bool = False,
):
    """One forward of new tokens on top of a cache, with an explicit tree/causal pattern.

    Args:
        model: A Hugging Face causal LM.
        input_ids: LongTensor ``[1, q]``.
        cache: The model's :class:`DynamicCache` (extended in place by ``q`` positions).
        allowed: Bool ``[q, w]`` pattern over the last ``w`` cache columns (see
            :func:`additive_mask`); columns before them are visible to all new tokens.
        position_ids: LongTensor ``[1, q]``.
        output_hidden_states: Also return every layer's hidden states.

    Returns:
        The model output (``logits`` ``[1, q, V]``, ``hidden_states`` when asked).
    """
    past = cache_length(cache) + input_ids.shape[1] - allowed.shape[1]
    mask = additive_mask(allowed, past, model_dtype(model), input_ids.device)
    return model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=position_ids,
        use_cache=True,
        **{cache_keyword(type(model).forward): cache},
        output_hidden_states=output_hidden_states,
    )
