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
complete checkpoint, so re-running the same command continues where it stopped. A rerun whose
config changes a setting that decides a trained stage's result is refused (or, asked to, retrains
that stage), a model whose tokenizer differs from the run's is refused, and a second run on the
same ``output_dir`` stops at once (see :mod:`adaspec.pipeline_guard`).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from accelerate import PartialState

from adaspec.config import ConfigError
from adaspec.data import label_every_token
from adaspec.modeling import check_max_length, check_same_vocabulary, load_model
from adaspec.pipeline_config import PipelineConfig
from adaspec.pipeline_data import prepare_data, prepare_tokenizer
from adaspec.pipeline_guard import OutputLock, drift_error, drifted_stages
from adaspec.pipeline_record import write_run_record
from adaspec.pipeline_runs import draft_runs, planned_runs
from adaspec.tokenizer_io import check_same_tokenizer
from adaspec.training.checkpoints import is_complete_model_dir, save_final
from adaspec.training.stages import build_or_load_model, run_stage
from adaspec.training.teacher_cache import TeacherCache

__all__ = ["STAGES", "Pipeline", "draft_runs", "prepare_tokenizer", "run_pipeline"]

logger = logging.getLogger(__name__)
STAGES = ("target", "reference", "draft")


class Pipeline:
    """Runs the stages of one :class:`PipelineConfig`, sharing data and models between them."""

    def __init__(
        self, config: PipelineConfig, resume: bool = True, retrain_changed: bool = False
    ) -> None:
        """Lock ``output_dir``, check trained stages against ``config``, prepare the data.

        Args:
            config: The run's config.
            resume: Skip finished stages and resume interrupted ones; ``False`` retrains all.
            retrain_changed: Retrain from scratch the stages whose saved settings differ from
                ``config`` instead of refusing to run.

        Raises:
            ConfigError: Listing each trained stage whose settings changed (old -> new), unless
                ``retrain_changed``.
            OutputDirInUse: If another run holds ``output_dir``.
        """
        self.config = config
        self.resume = resume
        self.out = Path(config.output_dir)
        self.state = PartialState()
        self.timings: dict[str, float] = {}
        self._lock = OutputLock(self.out) if self.state.is_main_process else None
        try:
            self._retrain = self._check_drift(retrain_changed) if resume else set()
            self._setup()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release ``output_dir`` for other runs."""
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _stage_names(self) -> list[str]:
        sweep = [f"sweep-{name}" for name in self.config.sweep.recipes]
        return ["target", "draft_init", "reference", *draft_runs(self.config), *sweep]

    def _check_drift(self, retrain_changed: bool) -> set[str]:
        drift = drifted_stages(self.config, self.out, self._stage_names())
        if drift and not retrain_changed:
            raise ConfigError(drift_error(self.out, drift))
        for name, (_saved, changes) in drift.items():
            logger.warning("stage %s will be retrained: %s", name, "; ".join(changes))
        return set(drift)

    def _setup(self) -> None:
        data = prepare_data(self.config, self.state)
        self.tokenizer = data.tokenizer
        self.eval_examples = data.eval_examples
        self.truncation = data.truncation
        self.train_dataset = data.train_dataset
        self.collator = data.collator
        self._teacher_cache: TeacherCache | None = None
        self._ref_cache: TeacherCache | None = None

    def teacher_cache(self, target) -> TeacherCache | None:
        """The target's outputs on the training set, built on first use when the config asks."""
        if self.config.teacher_cache and self._teacher_cache is None:
            self._teacher_cache = self._build_cache("teacher_cache", target)
        return self._teacher_cache

    def ref_cache(self, reference) -> TeacherCache | None:
        """The reference's hidden states on the training set (``teacher_cache_kind: hidden``).

        Every AdaSPEC draft run (each budget) is filtered by the same frozen reference, so its
        forward is run once too. A logits cache does not cover the reference: its vocabulary-wide
        rows would double the memory that the hidden kind exists to save.
        """
        if not (self.config.teacher_cache and self.config.teacher_cache_kind == "hidden"):
            return None
        if self._ref_cache is None:
            self._ref_cache = self._build_cache("ref_cache", reference)
        return self._ref_cache

    def _build_cache(self, name: str, model) -> TeacherCache:
        start = time.perf_counter()
        cache = TeacherCache.build(
            model,
            self.train_dataset,
            self.collator,
            vocab_size=len(self.tokenizer),
            batch_size=self.config.reference.optim.per_device_batch_size,
            kind=self.config.teacher_cache_kind,
        )
        self.timings[name] = time.perf_counter() - start
        return cache

    def _load(self, name: str):
        folder = self.out / name
        check_same_tokenizer(self.tokenizer, {name: folder})
        return load_model(str(folder)).eval()

    def _save(self, model, folder: Path) -> None:
        """Save an untrained model on the main process; the others wait until it is there."""
        with self.state.main_process_first():
            if self.state.is_main_process:
                save_final(model, folder, self.tokenizer, self.config)

    def _stage(self, name: str, fn) -> Any:
        folder = self.out / name
        if name in self._retrain:
            self._retrain.discard(name)
            with self.state.main_process_first():
                if self.state.is_main_process:
                    for path in (folder, folder.with_name(name + "-checkpoints")):
                        if path.exists():
                            shutil.rmtree(path)
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
        if spec.name_or_path is not None and Path(spec.name_or_path).is_dir():
            check_same_tokenizer(self.tokenizer, {spec.name_or_path: spec.name_or_path})
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

    def draft_init(self, target=None):
        """The initial weights that the reference and every draft start from (saved once).

        With ``draft_init.from_target_layers: n`` they are the target's first n layers, final
        norm and lm_head (``target`` is loaded from its folder when not given).
        """
        cfg = self.config
        n = cfg.draft_init.from_target_layers

        def build(folder: Path):
            if n is not None:
                return self._save_layers(target, n, folder)
            return self._ce_model(cfg.draft_model, cfg.seed + 1, cfg.draft_pretrain, folder)

        return self._stage("draft_init", build)

    def _save_layers(self, target, n: int, folder: Path):
        from adaspec.models.layers import first_layers_draft

        model = first_layers_draft(target if target is not None else self._require("target"), n)
        self._save(model, folder)
        return model

    def _load_init(self, name: str):
        """Initial weights of a distilled run, in training mode, embeddings frozen if asked."""
        model = self._load(name).train()
        if self.config.draft_init.freeze_embeddings:
            for module in (model.get_input_embeddings(), model.get_output_embeddings()):
                for param in module.parameters():
                    param.requires_grad_(False)
        return model

    def reference(self, target):
        """Stage 2: plain forward-KL distillation (the DistillSpec draft at equal steps)."""
        cfg = self.config.reference

        def train(folder: Path):
            self.draft_init(target)
            return run_stage(
                "reference",
                self._load_init("draft_init"),
                self.tokenizer,
                self.train_dataset,
                cfg.optim.replace(seed=self.config.seed),
                folder,
                data_collator=self.collator,
                target_model=target,
                loss=cfg.loss.plain_kd(),
                config=self.config,
                resume=self.resume,
                teacher_cache=self.teacher_cache(target),
            )

        return self._stage("reference", train)

    def drafts(self, target, reference) -> dict[str, Any]:
        """Stage 3: the AdaSPEC draft at each budget, plus compute-matched DistillSpec baselines."""
        trained = {}
        for name, spec in planned_runs(self.config).items():
            if name == "reference":
                continue
            ref = reference if spec.uses_reference else None
            trained[name] = self.train_draft(name, target, ref, spec.optim, spec.loss)
        return trained

    def train_draft(self, name: str, target, ref, optim, loss, init: str = "draft_init") -> Any:
        """Train (or load, when finished) one distilled draft into ``output_dir/name``.

        Args:
            name: The run's folder name under ``output_dir``.
            target: The frozen target.
            ref: The frozen reference that ΔL is taken against, or ``None`` (plain KD, or a
                selection signal that needs no reference).
            optim: The run's optimisation settings.
            loss: The run's loss settings.
            init: The folder of the initial weights: ``draft_init`` (the reference's own start)
                or an earlier stage's output such as ``reference`` (continued training).
        """

        def train(folder: Path):
            if init == "draft_init":
                self.draft_init(target)
            return run_stage(
                "draft",
                self._load_init(init),
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
                ref_cache=self.ref_cache(ref) if ref is not None else None,
            )

        return self._stage(name, train)

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
            write_run_record(
                self.out, stages, self.timings, self.truncation, self.config, self.tokenizer
            )
        return result

    def _require(self, name: str):
        if not is_complete_model_dir(self.out / name):
            raise FileNotFoundError(
                f"{self.out / name} holds no trained {name}: run that stage first "
                f"(adaspec train {'ref' if name == 'reference' else name} CONFIG)"
            )
        return self._load(name)


def run_pipeline(
    config: PipelineConfig,
    stages: tuple[str, ...] = STAGES,
    resume: bool = True,
    retrain_changed: bool = False,
) -> dict:
    """Run ``stages`` of the pipeline described by ``config`` and return the results.

    See :class:`Pipeline` for ``resume`` and ``retrain_changed``.
    """
    with Pipeline(config, resume=resume, retrain_changed=retrain_changed) as pipeline:
        return pipeline.run(stages)
