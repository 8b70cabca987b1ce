"""Sampling settings and the small pure functions that turn logits into draws.

All randomness goes through an optional ``torch.Generator``; draws are made on the generator's
device and moved to the data's device, so a CPU generator also drives a GPU model.
"""

from __future__ import annotations

import dataclasses

import torch

from adaspec._base.config import ConfigBase, cfg_field, check_range


@dataclasses.dataclass
class SamplingConfig(ConfigBase):
    """How the target's next token is chosen. ``temperature == 0`` means greedy decoding."""

    temperature: float = cfg_field(0.0, help="softmax temperature; 0 = greedy (argmax)")
    top_p: float = cfg_field(1.0, help="nucleus sampling mass in (0, 1]; 1 disables it")
    top_k: int = cfg_field(0, help="keep only the k most probable tokens; 0 disables it")

    def validate(self) -> None:
        """Check ranges."""
        super().validate()
        check_range("temperature", self.temperature, low=0.0, hint="use 0 for greedy decoding")
        check_range("top_p", self.top_p, low=0.0, high=1.0, low_open=True)
        check_range("top_k", self.top_k, low=0)

    @property
    def greedy(self) -> bool:
        """True when decoding is argmax."""
        return self.temperature == 0.0


GREEDY = SamplingConfig()


def logits_to_probs(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """The sampling distribution defined by ``sampling`` (temperature, then top-k, then top-p).

    Args:
        logits: ``[..., V]``.
        sampling: Settings; with ``temperature == 0`` the plain softmax is returned.

    Returns:
        Float32 probabilities ``[..., V]``, zero outside the top-k / top-p sets.
    """
    x = logits.float()
    if not sampling.greedy:
        x = x / sampling.temperature
    if sampling.top_k > 0 and sampling.top_k < x.shape[-1]:
        kth = x.topk(sampling.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass strictly before each token
        drop_sorted = before >= sampling.top_p  # the first token is always kept
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Uniform ``[0, 1)`` draws of ``shape`` on ``device`` from ``generator``'s stream."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def sample(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row by inverse CDF (never picks a zero-probability token).

    Args:
        probs: ``[..., V]`` non-negative (need not be normalized).
        generator: Random stream.

    Returns:
        LongTensor ``[...]``.
    """
    cdf = probs.float().cumsum(-1)
    u = uniform(cdf.shape[:-1] + (1,), generator, cdf.device) * cdf[..., -1:]
    idx = torch.searchsorted(cdf, u, right=True).squeeze(-1)
    return idx.clamp_(max=probs.shape[-1] - 1)


def sample_without_replacement(
    probs: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` draws per row without replacement, in draw order (Gumbel-top-k).

    Ordering ``log p + Gumbel`` descending gives exactly the law of drawing from ``p``, removing
    the drawn token, renormalizing, and drawing again.

    Args:
        probs: ``[r, V]``.
        k: Draws per row.
        generator: Random stream.

    Returns:
        ``(tokens [r, k], valid [r, k])``; ``valid`` is False past the support of a row (fewer
        than ``k`` tokens with non-zero probability).
    """
    k = min(k, probs.shape[-1])
    u = uniform(tuple(probs.shape), generator, probs.device).clamp_(min=1e-20)
    keys = torch.log(probs.float()) - torch.log(-torch.log(u))
    tokens = keys.topk(k, dim=-1).indices
    valid = probs.gather(-1, tokens) > 0
    return tokens, valid
