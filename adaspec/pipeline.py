"""The standalone three-stage pipeline: fine-tune target, distil reference, distil draft(s), compare.

Layout of ``output_dir``::

    tokenizer/                 the shared tokenizer
    draft_init/                initial weights shared by the reference and every draft
                               (after draft_pretrain, when the config asks for it)
    target/                    stage 1 (each model folder holds adaspec_config.yaml)
    reference/                 stage 2: plain KD; also the DistillSpec draft at equal steps
    adaspec-equal_steps/       stage 3 at the reference's schedule
    adaspec-equal_tokens/      stage 3 at 1/k the data (when that budget is asked for)
    distillspec-equal_tokens/  plain KD on exactly that longer schedule (the compute-matched baseline)
    comparison.json / .md      the drafts against each other on held-out examples

A stage whose final model exists is skipped, and an interrupted stage resumes from its newest
complete checkpoint, so re-running the same command continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from accelerate import PartialState
from transformers import PreTrainedTokenizerBase

from adaspec.config import save_config
from adaspec.data import (
    DataCollatorForCompletion,
    label_every_token,
    load_task,
    to_hf_dataset,
    tokenize_examples,
)
from adaspec.eval.report import write_json
from adaspec.modeling import (
    check_max_length,
    check_same_vocabulary,
    load_model,
    load_tokenizer,
    train_bpe_tokenizer,
)
from adaspec.pipeline_config import PipelineConfig
from adaspec.training.checkpoints import is_complete_model_dir, save_final
from adaspec.training.config import scaled_optim
from adaspec.training.stages import build_or_load_model, run_stage
from adaspec.training.teacher_cache import TeacherCache

logger = logging.getLogger(__name__)
STAGES = ("target", "reference", "draft")


def prepare_tokenizer(config: PipelineConfig, texts: list[str]) -> PreTrainedTokenizerBase:
    """Load the configured tokenizer, or train a BPE on ``texts`` (saved to ``output_dir/tokenizer``)."""
    folder = Path(config.output_dir) / "tokenizer"
    if (folder / "tokenizer.json").exists():
        return load_tokenizer(str(folder))
    if config.tokenizer.name_or_path is not None:
        tokenizer = load_tokenizer(config.tokenizer.name_or_path)
    else:
        tokenizer = train_bpe_tokenizer(texts, vocab_size=config.tokenizer.bpe_vocab_size)
    tokenizer.save_pretrained(folder)
    return tokenizer


def draft_runs(config: PipelineConfig) -> dict[str, tuple[str, Any]]:
    """The drafts stage 3 trains: name -> (kind, optimisation settings).

    ``kind`` is ``"adaspec"`` (selective loss against the reference) or ``"distillspec"`` (plain
    KD, the compute-matched baseline of a longer budget).
    """
    base = config.draft.optim or config.reference.optim
    k = config.draft.loss.k
    budget = config.draft.budget
    runs: dict[str, tuple[str, Any]] = {}
    for mode in budget.modes:
        optim = scaled_optim(base, k, mode, budget.token_scaling).replace(seed=config.seed)
        runs[f"adaspec-{mode}"] = ("adaspec", optim)
        if mode == "equal_tokens" and budget.compute_matched_baseline and k < 1.0:
            runs[f"distillspec-{mode}"] = ("distillspec", optim)
    return runs


class Pipeline:
    """Runs the stages of one :class:`PipelineConfig`, sharing data and models between them."""

    def __init__(self, config: PipelineConfig, resume: bool = True) -> None:
        self.config = config
        self.resume = resume
        self.out = Path(config.output_dir)
        self.state = PartialState()
        self.timings: dict[str, float] = {}
        train_examples = load_task(config.data, split="train")
        self.eval_examples = load_task(config.data, split="eval")
        texts = [e.prompt + e.response for e in train_examples]
        with self.state.main_process_first():
            if self.state.is_main_process:
                self.out.mkdir(parents=True, exist_ok=True)
                save_config(config, self.out)
            self.tokenizer = prepare_tokenizer(config, texts)
        features, report = tokenize_examples(
            train_examples,
            self.tokenizer,
            config.data.max_length,
            truncation_side=config.data.truncation_side,
        )
        logger.info("training data: %s", report.summary())
        self.truncation = report
        self.train_dataset = to_hf_dataset(features)
        self.collator = DataCollatorForCompletion(self.tokenizer)
        self._teacher_cache: TeacherCache | None = None

    def teacher_cache(self, target) -> TeacherCache | None:
        """The target's logits on the training set, built on first use when the config asks."""
        if self.config.teacher_cache and self._teacher_cache is None:
            start = time.perf_counter()
            self._teacher_cache = TeacherCache.build(
                target,
                self.train_dataset,
                self.collator,
                vocab_size=len(self.tokenizer),
                batch_size=self.config.reference.optim.per_device_batch_size,
            )
            self.timings["teacher_cache"] = time.perf_counter() - start
        return self._teacher_cache

    def _load(self, name: str):
        return load_model(str(self.out / name)).eval()

    def _save(self, model, folder: Path) -> None:
        """Save an untrained model on the main process; the others wait until it is there."""
        with self.state.main_process_first():
            if self.state.is_main_process:
                save_final(model, folder, self.tokenizer, self.config)

    def _stage(self, name: str, fn) -> Any:
        folder = self.out / name
        if self.resume and is_complete_model_dir(folder):
            logger.info("stage %s: found %s, skipping", name, folder)
            return self._load(name)
        start = time.perf_counter()
        model = fn(folder)
        self.timings[name] = time.perf_counter() - start
        return model

    def _ce_model(self, spec, seed: int, optim, folder: Path, *, prompt_loss: bool = False):
        """A fresh or loaded model, trained with cross-entropy when ``optim`` is set.

        The loss covers response tokens, and prompt tokens too when ``prompt_loss`` is true.
        """
        model = build_or_load_model(spec, len(self.tokenizer), seed=seed)
        check_max_length(model, self.config.data.max_length, folder.name)
        if optim is None:
            self._save(model, folder)
            return model
        return run_stage(
            "target",
            model,
            self.tokenizer,
            label_every_token(self.train_dataset) if prompt_loss else self.train_dataset,
            optim.replace(seed=self.config.seed),
            folder,
            data_collator=self.collator,
            config=self.config,
            resume=self.resume,
        )

    def target(self):
        """Stage 1: fine-tune (or train from scratch) the target with cross-entropy."""
        cfg = self.config.target
        optim = cfg.optim if cfg.train else None
        return self._stage(
            "target",
            lambda folder: self._ce_model(
                cfg.model, self.config.seed, optim, folder, prompt_loss=cfg.prompt_loss
            ),
        )

    def draft_init(self):
        """The initial weights that the reference and every draft start from (saved once)."""
        cfg = self.config
        return self._stage(
            "draft_init",
            lambda folder: self._ce_model(
                cfg.draft_model, cfg.seed + 1, cfg.draft_pretrain, folder
            ),
        )

    def reference(self, target):
        """Stage 2: plain forward-KL distillation (the DistillSpec draft at equal steps)."""
        cfg = self.config.reference

        def train(folder: Path):
            self.draft_init()
            return run_stage(
                "reference",
                self._load("draft_init"),
                self.tokenizer,
                self.train_dataset,
                cfg.optim.replace(seed=self.config.seed),
                folder,
                data_collator=self.collator,
                target_model=target,
                loss=cfg.loss.replace(k=1.0),
                config=self.config,
                resume=self.resume,
                teacher_cache=self.teacher_cache(target),
            )

        return self._stage("reference", train)

    def drafts(self, target, reference) -> dict[str, Any]:
        """Stage 3: the AdaSPEC draft at each budget, plus compute-matched DistillSpec baselines."""
        trained = {}
        for name, (kind, optim) in draft_runs(self.config).items():
            loss = (
                self.config.draft.loss
                if kind == "adaspec"
                else self.config.draft.loss.replace(k=1.0)
            )
            ref = reference if kind == "adaspec" else None

            def train(folder: Path, optim=optim, loss=loss, ref=ref):
                self.draft_init()
                return run_stage(
                    "draft",
                    self._load("draft_init"),
                    self.tokenizer,
                    self.train_dataset,
                    optim,
                    folder,
                    data_collator=self.collator,
                    target_model=target,
                    ref_model=ref,
                    loss=loss,
                    config=self.config,
                    resume=self.resume,
                    teacher_cache=self.teacher_cache(target),
                )

            trained[name] = self._stage(name, train)
        return trained

    def run(self, stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
        """Run the requested stages in order (loading earlier stages' outputs), then compare."""
        for stage in stages:
            if stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r}: choose from {STAGES}")
        target = self.target() if "target" in stages else self._require("target")
        reference = self.reference(target) if "reference" in stages else None
        drafts: dict[str, Any] = {}
        if "draft" in stages:
            reference = reference or self._require("reference")
            drafts = self.drafts(target, reference)
        result: dict[str, Any] = {"output_dir": str(self.out), "stage_seconds": self.timings}
        if self.config.evaluation.enabled and "draft" in stages and self.state.is_main_process:
            from adaspec.compare import compare_drafts

            candidates = {"distillspec-equal_steps": reference, **drafts}
            check_same_vocabulary({"target": target, **candidates}, self.tokenizer)
            start = time.perf_counter()
            result["comparison"] = compare_drafts(
                target, candidates, self.tokenizer, self.eval_examples, self.config, self.out
            )
            self.timings["comparison"] = time.perf_counter() - start
        if self.state.is_main_process:
            path = self.out / f"pipeline_{'-'.join(stages)}.json"
            write_json(
                {
                    "stages": list(stages),
                    "stage_seconds": {**_recorded_seconds(path), **self.timings},
                    "truncation": vars(self.truncation),
                },
                path,
            )
        return result

    def _require(self, name: str):
        if not is_complete_model_dir(self.out / name):
            raise FileNotFoundError(
                f"{self.out / name} holds no trained {name}: run that stage first "
                f"(adaspec train {'ref' if name == 'reference' else name} CONFIG)"
            )
        return self._load(name)


def _recorded_seconds(path: Path) -> dict[str, float]:
    """Stage times an earlier run wrote to ``path``, so that a resumed run keeps them."""
    try:
        return dict(json.loads(path.read_text())["stage_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def run_pipeline(
    config: PipelineConfig, stages: tuple[str, ...] = STAGES, resume: bool = True
) -> dict:
    """Run ``stages`` of the pipeline described by ``config`` and return the results."""
    return Pipeline(config, resume=resume).run(stages)
