"""AdaSPEC selective knowledge-distillation losses (pure torch).

One frozen settings object (:mod:`.settings`), per-token divergences (:mod:`.divergences`),
token selection (:mod:`.selection`), reduction (:mod:`.reduction`), the full-logits loss
(:mod:`.selective`) and the memory-lean chunked loss from hidden states (:mod:`.chunked`).
"""

from adaspec.losses.chunked import ChunkedAdaSPECLoss, chunked_adaspec_loss
from adaspec.losses.divergences import DIVERGENCES, token_divergence
from adaspec.losses.output import SelectiveLossOutput
from adaspec.losses.reduction import REDUCTIONS, reduce_token_loss
from adaspec.losses.selection import SCOPES, check_k, select_tokens
from adaspec.losses.selective import AdaSPECLoss, adaspec_token_loss, shift_for_causal_lm
from adaspec.losses.settings import SelectiveLossSettings

__all__ = [
    "DIVERGENCES",
    "REDUCTIONS",
    "SCOPES",
    "AdaSPECLoss",
    "ChunkedAdaSPECLoss",
    "SelectiveLossOutput",
    "SelectiveLossSettings",
    "adaspec_token_loss",
    "check_k",
    "chunked_adaspec_loss",
    "reduce_token_loss",
    "select_tokens",
    "shift_for_causal_lm",
    "token_divergence",
]
