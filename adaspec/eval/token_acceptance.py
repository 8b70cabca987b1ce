"""Token-level expected acceptance: E[sum_x min(p(x), q(x))] = 1 - TV(p, q).

For a target distribution ``p`` and a draft distribution ``q`` at one position, speculative
sampling accepts the draft's sampled token with probability ``sum_x min(p(x), q(x))``, which is
``1 - TV(p, q)`` with ``TV = 0.5 * sum_x |p(x) - q(x)|``. Averaged over the positions of the
target's own greedy continuations, it measures how well the draft matches the target where the
target actually goes, independently of the block length. Both models are run teacher-forced, in a
single forward each, over the prompt plus the continuation; the logits are cut to the vocabulary
columns the models share and the softmax is taken in float32.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor


def min_overlap(target_logits: Tensor, draft_logits: Tensor) -> Tensor:
    """Per-row ``sum_x min(softmax(target), softmax(draft))``, computed in float32.

    Args:
        target_logits: ``[..., V]`` target logits.
        draft_logits: ``[..., V]`` draft logits over the same columns.

    Returns:
        ``[...]`` overlap in ``[0, 1]``.

    """
    _check_same_shape(target_logits, draft_logits)
    p = torch.softmax(target_logits.float(), dim=-1)
    q = torch.softmax(draft_logits.float(), dim=-1)
    return torch.minimum(p, q).sum(-1)


def total_variation(target_logits: Tensor, draft_logits: Tensor) -> Tensor:
    """Per-row total variation distance ``0.5 * sum_x |p(x) - q(x)|`` (float32).

    Args:
        target_logits: ``[..., V]`` target logits.
        draft_logits: ``[..., V]`` draft logits over the same columns.

    Returns:
        ``[...]`` distance in ``[0, 1]``; equals ``1 - min_overlap``.

    """
    _check_same_shape(target_logits, draft_logits)
    p = torch.softmax(target_logits.float(), dim=-1)
    q = torch.softmax(draft_logits.float(), dim=-1)
    return 0.5 * (p - q).abs().sum(-1)


def _check_same_shape(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"target logits {tuple(a.shape)} and draft logits {tuple(b.shape)} differ in shape; "
            "cut both to the shared vocabulary columns first"
        )


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


@torch.no_grad()
def scored_logits(
    model: torch.nn.Module,
    input_ids: Tensor,
    first_scored: int,
    vocab_size: int,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Logits predicting tokens ``first_scored ..`` of ``input_ids``, cut to ``vocab_size`` columns.

    Only the rows that are needed are materialized when the model takes ``logits_to_keep``.

    Args:
        model: A causal LM returning ``.logits``.
        input_ids: ``[B, T]`` token ids.
        first_scored: The first position whose token is scored (``>= 1``).
        vocab_size: Shared vocabulary columns to keep.
        attention_mask: Optional ``[B, T]`` mask.

    Returns:
        ``[B, T - first_scored, vocab_size]`` logits; row ``i`` predicts token ``first_scored + i``.

    """
    seq = input_ids.shape[1]
    keep = seq - first_scored + 1
    ids = input_ids.to(_model_device(model))
    kwargs = {}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask.to(ids.device)
    if _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = keep
    logits = model(input_ids=ids, use_cache=False, **kwargs).logits
    logits = logits[:, -keep:-1, :vocab_size]
    if logits.shape[-1] < vocab_size:
        raise ValueError(
            f"a model returned {logits.shape[-1]} logit columns but vocab_size={vocab_size}; "
            "pass the shared vocabulary size (len(tokenizer)) that both models cover"
        )
    return logits


def _shared_vocab(target: torch.nn.Module, draft: torch.nn.Module) -> int:
    from adaspec.modeling import model_vocab_size

    return min(model_vocab_size(target), model_vocab_size(draft))


@torch.no_grad()
def expected_token_acceptance(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    input_ids: Tensor,
    response_mask: Tensor | None = None,
    prompt_len: int | None = None,
    vocab_size: int | None = None,
    attention_mask: Tensor | None = None,
    return_tv: bool = False,
    target_logits: Tensor | None = None,
) -> tuple[float, Tensor] | tuple[float, Tensor, float]:
    """Mean of ``sum_x min(p(x), q(x))`` over the scored tokens of a teacher-forced sequence.

    Row ``b``'s token at position ``t`` is scored when ``response_mask[b, t]`` is true (or
    ``t >= prompt_len``); ``p`` and ``q`` are the target's and the draft's next-token
    distributions at position ``t - 1``. Pass the prompt followed by the target's greedy
    continuation to get the expected token acceptance of the paper's setting.

    Args:
        target: The target causal LM.
        draft: The draft causal LM (same tokenizer).
        input_ids: ``[T]`` or ``[B, T]`` prompt + continuation ids.
        response_mask: ``[T]`` or ``[B, T]`` bool mask of scored tokens (position 0 is never
            scored). Give this or ``prompt_len``.
        prompt_len: Tokens before the first scored one (same for every row).
        vocab_size: Shared logit columns; the smaller of the two models' vocabularies by default
            (pass ``len(tokenizer)`` to drop padded embedding rows).
        attention_mask: Optional ``[B, T]`` mask for padded batches.
        return_tv: Also return the mean total variation distance.
        target_logits: The target's :func:`scored_logits` for the same ``input_ids`` and first
            scored position, when already computed (saves the target forward when several
            drafts are compared on one continuation).

    Returns:
        ``(mean, per_position)`` and, with ``return_tv``, the mean TV as a third element.
        ``per_position`` is a float32 CPU tensor of the scored tokens' acceptances in row-major
        order (for one sequence: position ``i`` of the continuation is entry ``i``). ``mean``
        is ``nan`` when nothing is scored.

    Raises:
        ValueError: When neither or both of ``response_mask`` and ``prompt_len`` are given, or
            the shapes disagree.

    """
    if (response_mask is None) == (prompt_len is None):
        raise ValueError(
            "expected_token_acceptance needs exactly one of response_mask (which tokens to "
            "score) or prompt_len (score every token after the prompt)"
        )
    ids = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
    if ids.dim() != 2:
        raise ValueError(f"input_ids must be [T] or [B, T], got shape {tuple(input_ids.shape)}")
    batch, seq = ids.shape
    if response_mask is None:
        if not 1 <= prompt_len <= seq:
            raise ValueError(
                f"prompt_len={prompt_len} must be in [1, {seq}] (the sequence length); "
                "at least one prompt token is needed to predict the first scored token"
            )
        mask = torch.zeros(batch, seq, dtype=torch.bool)
        mask[:, prompt_len:] = True
    else:
        mask = response_mask.unsqueeze(0) if response_mask.dim() == 1 else response_mask
        if mask.shape != ids.shape:
            raise ValueError(
                f"response_mask {tuple(mask.shape)} must match input_ids {tuple(ids.shape)}"
            )
        mask = mask.bool().cpu().clone()
        mask[:, 0] = False
    if not mask.any():
        empty = torch.zeros(0)
        return (float("nan"), empty, float("nan")) if return_tv else (float("nan"), empty)
    first = int(mask.any(0).nonzero()[0])
    vocab = vocab_size or _shared_vocab(target, draft)
    if target_logits is None:
        t_logits = scored_logits(target, ids, first, vocab, attention_mask)
    else:
        t_logits = target_logits[..., :vocab]
        if t_logits.shape[:2] != (batch, seq - first):
            raise ValueError(
                f"target_logits {tuple(target_logits.shape)} do not cover the scored positions: "
                f"expected [{batch}, {seq - first}, V]; compute them with scored_logits(target, "
                f"input_ids, {first}, vocab_size)"
            )
    d_logits = scored_logits(draft, ids, first, vocab, attention_mask).to(t_logits.device)
    sel = mask[:, first:].to(t_logits.device)
    overlap = min_overlap(t_logits[sel], d_logits[sel]).cpu()
    mean = float(overlap.mean())
    if return_tv:
        tv = total_variation(t_logits[sel], d_logits[sel]).mean()
        return mean, overlap, float(tv)
    return mean, overlap
