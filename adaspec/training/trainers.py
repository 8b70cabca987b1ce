"""``transformers.Trainer`` subclasses for the distillation stages.

:class:`AdaSPECTrainer` is a drop-in for the official snippet's class (same name, same
``target_model=``, ``ref_model=`` and ``k=`` arguments): it distils the trained model from a frozen
target, keeping only the top-k fraction of response tokens by ΔL = L_draft - L_ref. Without a
reference (or with ``k=1``) it is plain forward-KL distillation, the reference stage and the
DistillSpec baseline. The loss maths is :mod:`adaspec.losses`; this module only wires models,
DeepSpeed and logging around it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from adaspec.losses import adaspec_token_loss, chunked_adaspec_loss, shift_for_causal_lm
from adaspec.modeling import check_same_vocabulary
from adaspec.training.checkpoints import CheckpointCommitMixin
from adaspec.training.config import LossConfig
from adaspec.training.frozen import deepspeed_zero_stage, prepare_frozen_model
from adaspec.training.teacher_cache import INDEX_KEY as TEACHER_INDEX
from adaspec.training.teacher_cache import TeacherCache

IGNORE_INDEX = -100
_MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


class StatsLoggingMixin:
    """Averages the loss module's statistics between logging steps and adds them to the logs.

    Also logs ``adaspec/gradient_tokens``: the running total of tokens that carried gradient on
    this process (restored from the log history on resume), the budget that the equal-tokens
    comparison is about.
    """

    _stat_prefix = "adaspec/"
    _gradient_tokens: float | None = None

    def _init_stats(self) -> None:
        self._stat_sums: dict[str, float] = defaultdict(float)
        self._stat_count = 0

    def _record_stats(self, stats: dict[str, float]) -> None:
        if self._gradient_tokens is None:
            history = [h for h in self.state.log_history if "adaspec/gradient_tokens" in h]  # type: ignore[attr-defined]
            self._gradient_tokens = history[-1]["adaspec/gradient_tokens"] if history else 0.0
        self._gradient_tokens += float(stats.get("num_kept", 0.0))
        for key, value in stats.items():
            self._stat_sums[key] += float(value)
        self._stat_count += 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:  # noqa: D102
        if self._stat_count and "loss" in logs:
            for key, total in self._stat_sums.items():
                logs[self._stat_prefix + key] = round(total / self._stat_count, 6)
            logs[self._stat_prefix + "gradient_tokens"] = self._gradient_tokens
            self._init_stats()
        super().log(logs, *args, **kwargs)  # type: ignore[misc]


class TargetTrainer(CheckpointCommitMixin, Trainer):
    """Fine-tunes the target with cross-entropy on response tokens (prompt labels are -100)."""


class AdaSPECTrainer(CheckpointCommitMixin, StatsLoggingMixin, Trainer):
    """Distils the trained model from ``target_model``, filtered by ``ref_model`` (AdaSPEC).

    Args:
        *args: Passed to ``transformers.Trainer`` (model, args, train_dataset, ...).
        target_model: The frozen target (teacher).
        ref_model: The frozen reference, distilled from the target with plain KD; ``None`` keeps
            every response token (plain KD, DistillSpec).
        k: Kept fraction in (0, 1] (the official snippet's argument); when given, the loss
            settings are ``loss_config`` with this ``k``.
        loss_config: The loss settings (:class:`LossConfig`: divergence, temperature, selection,
            scope, reduction, chunking, the ``k`` schedule); default ``LossConfig()``, which
            without a reference keeps every response token.
        teacher_cache: Precomputed target logits or final hidden states
            (:class:`TeacherCache`); the batches then carry ``example_index`` and the target is
            not run during training (only its ``lm_head``, for a ``"hidden"`` cache).
        ref_cache: The same for the reference (a draft stage that reuses one reference over
            several runs). Must be of the same kind as ``teacher_cache`` when both are given.
        **kwargs: Passed to ``transformers.Trainer``.

    A ``"hidden"`` cache always runs the chunked loss (logits are recomputed from the cached
    hidden states chunk by chunk); a ``"logits"`` cache needs ``loss.chunked=false``.

    Raises:
        ValueError: If the models do not share a vocabulary, or ``k`` is outside (0, 1].
    """

    def __init__(
        self,
        *args: Any,
        target_model: nn.Module | None = None,
        ref_model: nn.Module | None = None,
        k: float | None = None,
        loss_config: LossConfig | None = None,
        teacher_cache: TeacherCache | None = None,
        ref_cache: TeacherCache | None = None,
        **kwargs: Any,
    ) -> None:
        if target_model is None:
            raise ValueError("target_model is required: pass the frozen target (teacher) model")
        super().__init__(*args, **kwargs)
        loss_config = loss_config or LossConfig()
        if k is not None:
            loss_config = loss_config.replace(k=k)
        self.loss_config = loss_config
        models = {"draft": self.model, "target": target_model}
        if ref_model is not None:
            models["reference"] = ref_model
        self.vocab_size = check_same_vocabulary(models, self.processing_class)
        if ref_cache is not None and ref_model is None:
            raise ValueError("ref_cache was given without ref_model: pass the reference too")
        self.cache_kind = _cache_kind(teacher_cache, ref_cache, loss_config)
        self.use_chunked = loss_config.chunked or self.cache_kind == "hidden"
        if self.use_chunked and deepspeed_zero_stage(self) == 3:
            raise ValueError(
                "the chunked loss (loss.chunked=true, or a 'hidden' teacher cache) needs whole "
                "lm_head weights, which ZeRO-3 partitions: use ZeRO stage 1 or 2, or set "
                "loss.chunked=false with no cache or a 'logits' cache"
            )
        self.teacher_cache = teacher_cache
        self.ref_cache = ref_cache
        self.target_model = prepare_frozen_model(target_model, self)
        self.ref_model = prepare_frozen_model(ref_model, self) if ref_model is not None else None
        # Causal-LM labels are shifted; count num_items_in_batch over labels[:, 1:].
        self.model_accepts_loss_kwargs = True
        self._loss_shifts_labels = True
        self._init_stats()

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """Selective distillation loss of one micro-batch (see :mod:`adaspec.losses`)."""
        labels = inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k in _MODEL_INPUTS}
        if self.use_chunked:
            outputs, result = self._chunked_loss(model, inputs, model_inputs, num_items_in_batch)
        elif self.cache_kind == "logits":
            outputs, result = self._cached_loss(model, inputs, model_inputs, num_items_in_batch)
        else:
            outputs = model(**model_inputs, use_cache=False)
            with torch.no_grad():
                target_logits = self.target_model(**model_inputs, use_cache=False).logits
                ref_logits = (
                    self.ref_model(**model_inputs, use_cache=False).logits
                    if self.ref_model is not None
                    else None
                )
            v = self.vocab_size
            draft_logits, valid = shift_for_causal_lm(outputs.logits[..., :v], labels, IGNORE_INDEX)
            result = adaspec_token_loss(
                draft_logits,
                target_logits[:, :-1, :v],
                ref_logits[:, :-1, :v] if ref_logits is not None else None,
                valid,
                self._loss_settings(),
                num_items_in_batch,
            )
        loss = result.loss
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        if (
            self.args.average_tokens_across_devices
            and num_items_in_batch is not None
            and self.accelerator.num_processes > 1
        ):
            # num_items_in_batch counts every rank's tokens; DDP averages gradients over ranks.
            loss = loss * self.accelerator.num_processes
        if model.training:
            self._record_stats(result.stats)
        return (loss, outputs) if return_outputs else loss

    def _loss_settings(self) -> LossConfig:
        """The loss settings at this optimizer step (``k`` follows ``loss.k_schedule``)."""
        total = self.state.max_steps or 0
        progress = self.state.global_step / total if total > 0 else 0.0
        return self.loss_config.at(min(progress, 1.0))

    def _cached(
        self, cache: TeacherCache, inputs: dict[str, torch.Tensor], rows: int, device: Any
    ) -> torch.Tensor:
        """The cached rows of this batch's response tokens, checked against the batch."""
        if TEACHER_INDEX not in inputs:
            raise ValueError(
                f"a teacher cache is set but the batch has no {TEACHER_INDEX!r}: build the "
                "dataset with adaspec.training.teacher_cache.with_example_index"
            )
        flat = cache.gather(inputs[TEACHER_INDEX], device=device)
        if flat.shape[0] != rows:
            raise ValueError(
                f"cached {cache.kind} {tuple(flat.shape)} do not match this batch's {rows} "
                "response tokens: the dataset changed since the cache was built; rebuild it"
            )
        return flat

    def _cached_loss(self, model, inputs, model_inputs, num_items_in_batch):
        v = self.vocab_size
        outputs = model(**model_inputs, use_cache=False)
        draft_logits, valid = shift_for_causal_lm(
            outputs.logits[..., :v], inputs["labels"], IGNORE_INDEX
        )
        draft_flat = draft_logits[valid]
        n, device = draft_flat.shape[0], draft_flat.device
        target_flat = (
            self._cached(self.teacher_cache, inputs, n, device)
            if self.teacher_cache is not None
            else self._frozen_logits(self.target_model, model_inputs, valid)
        )
        if target_flat.shape != draft_flat.shape:
            raise ValueError(
                f"cached target logits {tuple(target_flat.shape)} do not match this batch's "
                f"response tokens {tuple(draft_flat.shape)}: the dataset changed since the cache "
                "was built; rebuild it"
            )
        ref_flat = None
        if self.ref_cache is not None:
            ref_flat = self._cached(self.ref_cache, inputs, n, device)
        elif self.ref_model is not None:
            ref_flat = self._frozen_logits(self.ref_model, model_inputs, valid)
        result = adaspec_token_loss(
            draft_flat,
            target_flat,
            ref_flat,
            torch.ones(n, dtype=torch.bool, device=device),
            self._loss_settings(),
            num_items_in_batch,
        )
        return outputs, result

    @torch.no_grad()
    def _frozen_logits(self, model: nn.Module, model_inputs, valid) -> torch.Tensor:
        logits = model(**model_inputs, use_cache=False).logits
        return logits[:, :-1, : self.vocab_size][valid]

    def _last_hidden(self, model: nn.Module, model_inputs: dict[str, torch.Tensor]):
        # logits_to_keep=1 computes the lm_head for one position only; the loss takes the weights.
        out = model(**model_inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
        return out, out.hidden_states[-1]

    def _frozen_hidden(self, model, cache, inputs, model_inputs, valid) -> torch.Tensor:
        """Flat ``[N, H]`` final hidden states of a frozen model: from its cache, or a forward."""
        if cache is not None:
            return self._cached(cache, inputs, int(valid.sum()), valid.device)
        with torch.no_grad():
            return self._last_hidden(model, model_inputs)[1][:, :-1][valid]

    def _chunked_loss(self, model, inputs, model_inputs, num_items_in_batch):
        valid = inputs["labels"][:, 1:] != IGNORE_INDEX
        outputs, hidden = self._last_hidden(model, model_inputs)
        target_hidden = self._frozen_hidden(
            self.target_model, self.teacher_cache, inputs, model_inputs, valid
        )
        ref_hidden = None
        if self.ref_model is not None:
            ref_hidden = self._frozen_hidden(
                self.ref_model, self.ref_cache, inputs, model_inputs, valid
            )

        def head(m: nn.Module) -> nn.Linear:
            return self.accelerator.unwrap_model(m).get_output_embeddings()

        d_head, t_head = head(model), head(self.target_model)
        r_head = head(self.ref_model) if self.ref_model is not None else None
        result = chunked_adaspec_loss(
            hidden[:, :-1][valid],
            d_head.weight,
            target_hidden,
            t_head.weight,
            ref_hidden,
            r_head.weight if r_head is not None else None,
            valid=None,
            settings=self._loss_settings(),
            num_items_in_batch=num_items_in_batch,
            draft_bias=d_head.bias,
            target_bias=t_head.bias,
            ref_bias=r_head.bias if r_head is not None else None,
            vocab_size=self.vocab_size,
        )
        return outputs, result


def _cache_kind(
    teacher_cache: TeacherCache | None, ref_cache: TeacherCache | None, loss: LossConfig
) -> str | None:
    """The kind shared by the given caches (``None`` without any); refuses what cannot work."""
    kinds = {c.kind for c in (teacher_cache, ref_cache) if c is not None}
    if not kinds:
        return None
    if len(kinds) > 1:
        raise ValueError(
            f"teacher_cache and ref_cache must be of one kind, got {sorted(kinds)}: build both "
            "with the same kind"
        )
    kind = kinds.pop()
    if loss.scope == "sequence":
        raise ValueError(
            "a teacher cache works on the flat list of response tokens: use loss.scope 'batch' or "
            "'global' with it"
        )
    if kind == "logits" and loss.chunked:
        raise ValueError(
            "a 'logits' teacher cache holds whole logits, which the chunked loss never builds: "
            "set loss.chunked=false, or cache 'hidden' states for the chunked loss"
        )
    return kind


class KDTrainer(AdaSPECTrainer):
    """Plain KD on every response token (the reference stage, DistillSpec).

    ``loss_config`` (default ``LossConfig()``) is taken as :meth:`LossConfig.plain_kd`: its
    divergence, temperature and reduction, with ``k = 1`` throughout.
    """

    def __init__(
        self,
        *args: Any,
        target_model: nn.Module | None = None,
        loss_config: LossConfig | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("ref_model") is not None:
            raise ValueError(
                "KDTrainer takes no ref_model: use AdaSPECTrainer for selective distillation"
            )
        if kwargs.get("k") not in (None, 1.0):
            raise ValueError(
                f"KDTrainer keeps every response token (k = 1), got k={kwargs['k']!r}: use "
                "AdaSPECTrainer for selective distillation"
            )
        kwargs.pop("k", None)
        plain = (loss_config or LossConfig()).plain_kd()
        super().__init__(*args, target_model=target_model, loss_config=plain, **kwargs)
