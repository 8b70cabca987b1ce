"""The three training stages: fine-tune the target, distil the reference, distil the draft.

Each stage is a function that takes models, a tokenized dataset and a stage config, trains with
the matching trainer, resumes from the newest complete checkpoint, and saves the final model
atomically with the resolved config beside it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerState, TrainingArguments

from adaspec.config import ConfigBase
from adaspec.modeling import build_model, load_model, tiny_config
from adaspec.tokenizer_io import check_same_tokenizer
from adaspec.training.checkpoints import checkpoint_state, latest_complete_checkpoint, save_final
from adaspec.training.config import LossConfig, ModelSpec, OptimConfig
from adaspec.training.teacher_cache import TeacherCache, with_example_index
from adaspec.training.trainers import AdaSPECTrainer, KDTrainer, TargetTrainer

logger = logging.getLogger(__name__)


def build_or_load_model(spec: ModelSpec, vocab_size: int, seed: int = 0) -> PreTrainedModel:
    """Load ``spec.name_or_path`` with ``from_pretrained``, or build a fresh model from the spec.

    Args:
        spec: The model section of a config.
        vocab_size: Vocabulary of a fresh model (the tokenizer's size).
        seed: Seed for a fresh model's initial weights.
    """
    if spec.name_or_path is not None:
        kwargs = {}
        if spec.attn_implementation:
            kwargs["attn_implementation"] = spec.attn_implementation
        return load_model(spec.name_or_path, dtype=spec.dtype, **kwargs)
    config = tiny_config(
        spec.family,
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        num_layers=spec.num_layers,
        num_heads=spec.num_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
    )
    if spec.attn_implementation:
        config._attn_implementation = spec.attn_implementation
    dtype = None if spec.dtype in ("float32", "auto") else getattr(torch, spec.dtype)
    return build_model(config, seed=seed, dtype=dtype)


def training_arguments(
    optim: OptimConfig, output_dir: str | Path, run_name: str
) -> TrainingArguments:
    """Map a stage's :class:`OptimConfig` onto ``TrainingArguments``."""
    report_to = [r for r in optim.report_to if r != "none"] or "none"
    kwargs: dict[str, Any] = {}
    if optim.disable_tqdm is not None:
        kwargs["disable_tqdm"] = optim.disable_tqdm
    if optim.gradient_checkpointing:
        kwargs["activation_checkpointing"] = True
    return TrainingArguments(
        output_dir=str(output_dir),
        run_name=run_name,
        num_train_epochs=optim.epochs,
        max_steps=optim.max_steps,
        learning_rate=optim.learning_rate,
        lr_scheduler_type=optim.lr_scheduler_type,
        warmup_steps=optim.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        weight_decay=optim.weight_decay,
        per_device_train_batch_size=optim.per_device_batch_size,
        per_device_eval_batch_size=optim.per_device_batch_size,
        gradient_accumulation_steps=optim.gradient_accumulation_steps,
        max_grad_norm=optim.max_grad_norm,
        bf16=optim.bf16,
        fp16=optim.fp16,
        logging_steps=optim.logging_steps,
        save_strategy="steps",
        save_steps=optim.save_steps,
        save_total_limit=optim.save_total_limit,
        report_to=report_to,
        deepspeed=optim.deepspeed,
        dataloader_num_workers=optim.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=optim.seed,
        data_seed=optim.seed,
        remove_unused_columns=False,
        average_tokens_across_devices=True,
        **kwargs,
    )


def _fit(trainer: Any, checkpoint_dir: Path, resume: bool) -> None:
    """Train, resuming from the newest committed checkpoint; without ``resume``, from scratch.

    A checkpoint at the end of training (the run was killed before or during the final save) is
    loaded as it is: ``Trainer.train`` would run one optimizer step past ``max_steps`` when the
    last step is not at an epoch boundary.
    """
    if not resume:
        if checkpoint_dir.exists() and trainer.args.should_save:
            shutil.rmtree(checkpoint_dir)  # a later resume must not find this older run's steps
        trainer.train()
        return
    last = latest_complete_checkpoint(checkpoint_dir)
    if last is None:
        trainer.train()
        return
    check_same_tokenizer(trainer.processing_class, {f"checkpoint {last}": last})
    state = checkpoint_state(last)
    if 0 < state.get("max_steps", 0) <= state.get("global_step", 0):
        logger.info("%s is the end of training: loading it without further steps", last)
        trainer._load_from_checkpoint(last)
        trainer.state = TrainerState.load_from_json(str(Path(last) / "trainer_state.json"))
        return
    logger.info("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)


def run_stage(
    stage: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Any,
    optim: OptimConfig,
    output_dir: str | Path,
    *,
    data_collator: Any,
    target_model: PreTrainedModel | None = None,
    ref_model: PreTrainedModel | None = None,
    loss: LossConfig | None = None,
    config: ConfigBase | None = None,
    resume: bool = True,
    teacher_cache: TeacherCache | None = None,
    ref_cache: TeacherCache | None = None,
    callbacks: list[Any] | None = None,
) -> PreTrainedModel:
    """Train one stage and save the result to ``output_dir`` (checkpoints in ``output_dir/checkpoints``).

    Args:
        stage: ``"target"`` (cross-entropy), ``"reference"`` (plain KD) or ``"draft"`` (AdaSPEC).
        model: The model to train.
        tokenizer: The shared tokenizer (saved with the model).
        train_dataset: Tokenized examples with ``input_ids``, ``attention_mask``, ``labels``.
        optim: Optimisation settings.
        output_dir: Where the final model goes.
        data_collator: Pads a list of examples into a batch.
        target_model: The frozen teacher (reference and draft stages).
        ref_model: The frozen reference (draft stage).
        loss: The distillation loss settings (reference and draft stages).
        config: The resolved config to save beside the model.
        resume: Continue from the newest complete checkpoint if there is one.
        teacher_cache: Precomputed target outputs for the reference and draft stages.
        ref_cache: Precomputed reference outputs for the draft stage.
        callbacks: Extra ``TrainerCallback`` objects (progress reporting, tests that stop a run).

    Returns:
        The trained model.
    """
    output_dir = Path(output_dir)
    ckpt_dir = output_dir.with_name(output_dir.name + "-checkpoints")
    args = training_arguments(optim, ckpt_dir, run_name=output_dir.name)
    if (teacher_cache is not None or ref_cache is not None) and stage != "target":
        train_dataset = with_example_index(train_dataset)
    distill = {"teacher_cache": teacher_cache} if stage != "target" else {}
    common = dict(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=data_collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    if stage == "target":
        trainer = TargetTrainer(**common)
    elif stage == "reference":
        if target_model is None:
            raise ValueError("the reference stage needs target_model")
        trainer = KDTrainer(
            **common,
            **distill,
            target_model=target_model,
            loss_config=loss,
        )
    elif stage == "draft":
        if target_model is None:
            raise ValueError("the draft stage needs target_model (and ref_model for AdaSPEC)")
        trainer = AdaSPECTrainer(
            **common,
            **distill,
            target_model=target_model,
            ref_model=ref_model,
            loss_config=loss or LossConfig(),
            ref_cache=ref_cache,
        )
    else:
        raise ValueError(f"stage must be 'target', 'reference' or 'draft', got {stage!r}")
    trainer.resolved_config = config
    _fit(trainer, ckpt_dir, resume)
    trained = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.args.should_save:
        save_final(trained, output_dir, tokenizer=tokenizer, config=config)
        tokens = getattr(trainer, "_gradient_tokens", None)
        if tokens is not None:  # the final count, also when the run ended between logging steps
            trainer.state.log_history.append(
                {"step": trainer.state.global_step, "adaspec/gradient_tokens": tokens}
            )
        tmp = output_dir / "trainer_state.json.tmp"
        trainer.state.save_to_json(str(tmp))
        os.replace(tmp, output_dir / "trainer_state.json")
    return trained.eval()
