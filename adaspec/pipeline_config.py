"""The pipeline's config: tokenizer, data, the three stages, budgets, and the final comparison."""

from __future__ import annotations

from dataclasses import dataclass

from adaspec.config import ConfigBase, ConfigError, cfg_field, check_range
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

    def validate(self) -> None:
        super().validate()
        check_range("evaluation.num_examples", self.num_examples, 1)
        check_range("evaluation.gamma", self.gamma, 1)
        check_range("evaluation.max_new_tokens", self.max_new_tokens, 1)


@dataclass
class PipelineConfig(ConfigBase):
    """Everything one AdaSPEC run needs: target, reference, draft(s) and their comparison."""

    output_dir: str = cfg_field(
        "runs/adaspec", help="folder for every stage's model and the results"
    )
    seed: int = cfg_field(0, help="seed of the fresh models' weights and the data order")
    teacher_cache: bool = cfg_field(
        False,
        help="run the target once over the training set and reuse its logits in every distillation "
        "stage (exact; holds response tokens x vocabulary x 4 bytes of host memory)",
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
    reference: ReferenceStageConfig = cfg_field(ReferenceStageConfig, help="stage 2")
    draft: DraftStageConfig = cfg_field(DraftStageConfig, help="stage 3")
    evaluation: CompareConfig = cfg_field(CompareConfig, help="the final comparison")

    def validate(self) -> None:
        """Check the sections, and data.max_length against the fresh models' positions."""
        super().validate()
        for name, spec in (("target.model", self.target.model), ("draft_model", self.draft_model)):
            positions = spec.max_position_embeddings
            if spec.name_or_path is None and self.data.max_length > positions:
                raise ConfigError(
                    f"data.max_length={self.data.max_length} is longer than the {name} model's "
                    f"{positions} positions ({name}.max_position_embeddings): lower "
                    f"data.max_length or raise {name}.max_position_embeddings"
                )
