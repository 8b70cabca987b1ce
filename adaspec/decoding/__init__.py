"""Speculative decoding core: drafters, token trees, verification rules and the decoder loop."""

from adaspec.decoding.decoder import (
    DecodeResult,
    SpeculativeDecoder,
    StepRecord,
    autoregressive_generate,
)
from adaspec.decoding.draft_model import DraftModelDrafter
from adaspec.decoding.drafter import Drafter, TargetFeatures
from adaspec.decoding.sampling import SamplingConfig, logits_to_probs
from adaspec.decoding.stats import acceptance_counts, chain_rounds
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
    "SamplingConfig",
    "SpeculativeDecoder",
    "StaticTree",
    "StepRecord",
    "TargetFeatures",
    "TreeBuffers",
    "VerifyResult",
    "acceptance_counts",
    "autoregressive_generate",
    "build_tree_buffers",
    "chain",
    "chain_rounds",
    "greedy_verify",
    "logits_to_probs",
    "sampling_verify",
    "tree_from_spec",
]
