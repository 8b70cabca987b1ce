"""The pipeline's config: tokenizer, data, the three stages, budgets, and the final comparison."""

from __future__ import annotations

from dataclasses import dataclass

from adaspec.config import ConfigBase, ConfigError, cfg_field, check_choice, check_range
from adaspec.data import DataConfig
from adaspec.training.config import BudgetConfig, LossConfig, ModelSpec, OptimConfig


@dataclass
class TokenizerConfig(ConfigBase):
    """The tokenizer that target, reference and draft share."""

    name_or_path: str | None = cfg_field(
        None,
        help="hub id, directory or tokenizer.json (for example ../shared/data/tokenizers/pythia/"
        "tokenizer.json); null trains a byte-level BPE on the training texts",
    )
    bpe_vocab_size: int = cfg_field(1024, help="vocabulary of a BPE trained on the training texts")

    def validate(self) -> None:
        super().validate()
        check_range("tokenizer.bpe_vocab_size", self.bpe_vocab_size, 260)


@dataclass
class TargetStageConfig(ConfigBase):
    """Stage 1: the target, fine-tuned with cross-entropy on response tokens."""

    model: ModelSpec = cfg_field(ModelSpec, help="the target's checkpoint or fresh architecture")
    optim: OptimConfig = cfg_field(
        OptimConfig, help="fine-tuning settings (paper: lr 1e-5, 3 epochs)"
    )
    train: bool = cfg_field(True, help="false: use the target as it is (already fine-tuned)")
    prompt_loss: bool = cfg_field(
        False,
        help="also train on prompt tokens (language modelling of the whole sequence): for targets "
        "trained from scratch, which otherwise see too few tokens to learn to read the prompt; "
        "a pretrained target is fine-tuned on responses only (false, the paper)",
    )


@dataclass
class ReferenceStageConfig(ConfigBase):
    """Stage 2: the reference, distilled with plain forward KL; also the DistillSpec baseline."""

    optim: OptimConfig = cfg_field(
        OptimConfig, help="distillation settings (paper: lr 3e-4, 3 epochs)"
    )
    loss: LossConfig = cfg_field(LossConfig, help="loss settings; k is forced to 1 for this stage")


@dataclass
class DraftStageConfig(ConfigBase):
    """Stage 3: the draft, distilled with AdaSPEC's selective loss from the same initial weights."""

    loss: LossConfig = cfg_field(LossConfig, help="selective loss (paper: forward KL, k = 0.4)")
    budget: BudgetConfig = cfg_field(
        BudgetConfig, help="training budgets relative to the reference"
    )
    optim: OptimConfig | None = cfg_field(
        None, help="base settings of the draft stage; null uses the reference stage's (paper)"
    )


@dataclass
class CompareConfig(ConfigBase):
    """The DistillSpec-vs-AdaSPEC comparison on held-out examples after training."""

    enabled: bool = cfg_field(True, help="run the comparison after the stages")
    num_examples: int = cfg_field(50, help="held-out examples to evaluate")
    gamma: int = cfg_field(4, help="draft tokens proposed per round for the acceptance rate α")
    max_new_tokens: int = cfg_field(128, help="generation length per example")
    quality: bool = cfg_field(
        True, help="score the generated text (GSM8K accuracy, pass@1, ROUGE-L)"
    )

    alpha_method: str = cfg_field(
        "decode",
        help="decode: speculative decoding per draft (checks output = target's); teacher_forced: "
        "the same greedy rounds from a teacher-forced draft forward (no decoding; for large targets)",
    )
    target_outputs: str | None = cfg_field(
        None,
        help="jsonl cache of the target's greedy continuations, shared by runs of one target "
        "(seeds, recipes, tasks): keyed by its weights, the prompt and the length; null decodes",
    )

    def validate(self) -> None:
        super().validate()
        check_range("evaluation.num_examples", self.num_examples, 1)
        check_range("evaluation.gamma", self.gamma, 1)
        check_range("evaluation.max_new_tokens", self.max_new_tokens, 1)
        check_choice("evaluation.alpha_method", self.alpha_method, ("decode", "teacher_forced"))


SWEEP_RECIPES = (
    "kd",
    "adaspec",
    "random_k",
    "late_phase",
    "k_linear",
    "student_entropy",
    "draft_loss",
    "ref_adaspec",
    "ref_kd",
)


@dataclass
class SweepConfig(ConfigBase):
    """``adaspec sweep``: controls and recipes against plain KD, all at one schedule, over seeds."""

    seeds: list = cfg_field([0, 1, 2], help="seeds; each gets its own target, reference, drafts")
    recipes: list = cfg_field(
        [name for name in SWEEP_RECIPES if name != "draft_loss"],
        help="what to train, all with the draft stage's equal-steps schedule: kd (plain KD, the "
        "DistillSpec draft), adaspec (draft.loss), random_k (k kept at random), late_phase (KD for "
        "late_phase_fraction of the steps, then AdaSPEC), k_linear (k from 1 down to draft.loss.k "
        "over k_linear_fraction of the steps), student_entropy and draft_loss (other selection "
        "signals), ref_adaspec / ref_kd (AdaSPEC / KD continued from the trained reference for the "
        "same steps)",
    )
    late_phase_fraction: float = cfg_field(
        0.5, help="late_phase: fraction of the optimizer steps trained with plain KD first"
    )
    k_linear_fraction: float = cfg_field(
        1.0, help="k_linear: fraction of the optimizer steps over which k falls from 1 to k"
    )
    baseline: str = cfg_field("kd", help="the recipe the paired differences are taken against")

    def validate(self) -> None:
        super().validate()
        if not self.seeds:
            raise ConfigError("sweep.seeds is empty: list at least one seed, e.g. [0, 1, 2]")
        if not self.recipes:
            raise ConfigError(
                "sweep.recipes is empty: list recipes from " + ", ".join(SWEEP_RECIPES)
            )
        for name in self.recipes:
            check_choice("sweep.recipes entry", name, SWEEP_RECIPES)
        if len(set(self.recipes)) != len(self.recipes):
            raise ConfigError(f"sweep.recipes lists a recipe twice: {self.recipes}")
        check_choice("sweep.baseline", self.baseline, self.recipes)
        check_range("sweep.late_phase_fraction", self.late_phase_fraction, 0.0, 1.0, low_open=True)
        check_range("sweep.k_linear_fraction", self.k_linear_fraction, 0.0, 1.0, low_open=True)


@dataclass
class DraftInitConfig(ConfigBase):
    """Where the draft's initial weights come from when not from ``draft_model``."""

    from_target_layers: int | None = cfg_field(
        None,
        help="start reference and draft from the target's first N decoder layers with its final "
        "norm and (tied) lm_head, a pretrained initialisation sharing its tokenizer; null: "
        "draft_model (and draft_pretrain)",
    )
    freeze_embeddings: bool = cfg_field(
        False,
        help="keep the input embedding and output head of the reference and every draft frozen "
        "while they are distilled (as EAGLE heads keep the target's): a large vocabulary's head "
        "then costs no gradient or optimizer state; the same for every run, so comparisons stay fair",
    )

    def validate(self) -> None:
        super().validate()
        if self.from_target_layers is not None:
            check_range("draft_init.from_target_layers", self.from_target_layers, 1)


@dataclass
class PipelineConfig(ConfigBase):
    """Everything one AdaSPEC run needs: target, reference, draft(s) and their comparison."""

    output_dir: str = cfg_field(
        "runs/adaspec", help="folder for every stage's model and the results"
    )
    seed: int = cfg_field(0, help="seed of the fresh models' weights and the data order")
    teacher_cache: bool = cfg_field(
        False,
        help="run the target once over the training set and reuse its outputs in every "
        "distillation stage (exact; memory per response token: see teacher_cache_kind)",
    )
    teacher_cache_kind: str = cfg_field(
        "logits",
        help="what the teacher cache holds: 'logits' (vocabulary x 4 bytes a token in float32; "
        "small vocabularies) or 'hidden' (the final hidden states, hidden_size x 4 bytes a token; "
        "logits are recomputed with the lm_head inside the chunked loss, so a 49k vocabulary "
        "fits). 'hidden' also caches the reference's hidden states for the draft stage",
    )
    tokenizer: TokenizerConfig = cfg_field(TokenizerConfig, help="the shared tokenizer")
    data: DataConfig = cfg_field(DataConfig, help="training and held-out data")
    target: TargetStageConfig = cfg_field(TargetStageConfig, help="stage 1")
    draft_model: ModelSpec = cfg_field(
        ModelSpec,
        help="initial weights shared by reference and draft (checkpoint or fresh architecture)",
    )
    draft_pretrain: OptimConfig | None = cfg_field(
        None,
        help="train the fresh draft_model with cross-entropy on the training data before any "
        "distillation, standing in for a pretrained draft checkpoint (the paper starts reference "
        "and draft from pretrained Pythia-31M / CodeGen-350M); null: use draft_model as it is",
    )
    draft_init: DraftInitConfig = cfg_field(
        DraftInitConfig,
        help="initial weights from the target's first layers (instead of draft_model)",
    )
    reference: ReferenceStageConfig = cfg_field(ReferenceStageConfig, help="stage 2")
    draft: DraftStageConfig = cfg_field(DraftStageConfig, help="stage 3")
    evaluation: CompareConfig = cfg_field(CompareConfig, help="the final comparison")
    sweep: SweepConfig = cfg_field(SweepConfig, help="adaspec sweep: recipes and controls")

    def validate(self) -> None:
        super().validate()
        check_choice("teacher_cache_kind", self.teacher_cache_kind, ("logits", "hidden"))
        fresh = [("target.model", self.target.model)]
        if self.draft_init.from_target_layers is None:  # else draft_model is not used
            fresh.append(("draft_model", self.draft_model))
        for name, spec in fresh:
            positions = spec.max_position_embeddings
            if spec.name_or_path is None and self.data.max_length > positions:
                raise ConfigError(
                    f"data.max_length={self.data.max_length} is longer than the {name} model's "
                    f"{positions} positions ({name}.max_position_embeddings): lower "
                    f"data.max_length or raise {name}.max_position_embeddings"
                )
