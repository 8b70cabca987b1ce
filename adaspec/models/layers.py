"""A standalone draft made of a target's first layers: the pretrained initialisation of a draft.

``first_layers_draft(target, n)`` keeps the target's embedding, its first ``n`` decoder layers, its
final norm and its lm_head (tied to the embedding when the target ties them), in a model of the
target's own class whose config says ``num_hidden_layers = n``. It shares the target's tokenizer
and vocabulary, so it can be distilled by the pipeline (``draft_init: {from_target_layers: n}``)
and used as transformers' ``assistant_model`` for assisted generation.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch

_LAYER_KEY = re.compile(r"(^|\.)(layers|h)\.(\d+)\.")


def first_layers_draft(target: Any, num_layers: int) -> Any:
    """A new model holding copies of ``target``'s embedding, first layers, final norm and head.

    Args:
        target: A transformers causal LM whose decoder layers are a ``layers`` (Llama, Qwen2,
            GPT-NeoX) or ``h`` (GPT-2) module list.
        num_layers: Decoder layers kept, ``1 <= num_layers <= target's``.

    Returns:
        The draft, in eval mode, with the target's dtype and device; its weights are copies (training
        it does not change the target).

    Raises:
        ValueError: If ``num_layers`` is out of range or the target's layers cannot be found.

    """
    total = int(target.config.num_hidden_layers)
    if not 1 <= num_layers <= total:
        raise ValueError(
            f"draft_init.from_target_layers={num_layers} is out of range: the target has {total} "
            f"decoder layers; choose 1..{total}"
        )
    config = copy.deepcopy(target.config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types)[:num_layers]
    state = {}
    found = set()
    for key, value in target.state_dict().items():
        match = _LAYER_KEY.search(key)
        if match is not None:
            index = int(match.group(3))
            found.add(index)
            if index >= num_layers:
                continue
        state[key] = value.detach().clone()
    if len(found) != total:
        raise ValueError(
            f"cannot find the {total} decoder layers of {type(target).__name__} in its state dict "
            "(expected keys like 'model.layers.0.'); build the draft another way"
        )
    param = next(target.parameters())
    draft = type(target)(config).to(dtype=param.dtype, device=param.device)
    draft.load_state_dict(state, strict=True)
    if getattr(target, "generation_config", None) is not None:
        draft.generation_config = copy.deepcopy(target.generation_config)
    return draft.eval()


@torch.no_grad()
def same_prefix_weights(target: Any, draft: Any) -> bool:
    """Whether every tensor of ``draft`` equals the target's tensor of the same name."""
    reference = target.state_dict()
    return all(torch.equal(value, reference[key]) for key, value in draft.state_dict().items())
