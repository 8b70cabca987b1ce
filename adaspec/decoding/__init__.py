"""Speculative decoding core: drafters, token trees, verification rules and the decoder loop."""

from adaspec.decoding.decoder import (
    DecodeResult,
    SpeculativeDecoder,
    StepRecord,
    autoregressive_generate,
)
from adaspec.decoding.draft_model import DraftModelDrafter
from adaspec.decoding.drafter import Drafter, TargetFeatures
from adaspec.decoding.growth import Expansion, grow_dynamic, grow_static, grow_tree
from adaspec.decoding.linear import TransposedLinear, transpose_linears
from adaspec.decoding.sampling import SamplingConfig, logits_to_probs
from adaspec.decoding.stats import acceptance_counts, chain_rounds
from adaspec.decoding.step import StepOutcome, speculative_step
from adaspec.decoding.tree import (
    MC_SIM_7B_63,
    TREE_PRESETS,
    DraftTree,
    DynamicTree,
    StaticTree,
    TreeBuffers,
    build_tree_buffers,
    chain,
    tree_from_spec,
)
from adaspec.decoding.verify import VerifyResult, greedy_verify, sampling_verify

__all__ = [
    "MC_SIM_7B_63",
    "TREE_PRESETS",
    "DecodeResult",
    "DraftModelDrafter",
    "DraftTree",
    "Drafter",
    "DynamicTree",
    "Expansion",
    "SamplingConfig",
    "SpeculativeDecoder",
    "StaticTree",
    "StepOutcome",
    "StepRecord",
    "TargetFeatures",
    "TransposedLinear",
    "TreeBuffers",
    "VerifyResult",
    "acceptance_counts",
    "autoregressive_generate",
    "build_tree_buffers",
    "chain",
    "chain_rounds",
    "greedy_verify",
    "grow_dynamic",
    "grow_static",
    "grow_tree",
    "logits_to_probs",
    "sampling_verify",
    "speculative_step",
    "transpose_linears",
    "tree_from_spec",
]
