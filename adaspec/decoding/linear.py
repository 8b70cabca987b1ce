"""Linear layers with their weight stored transposed: faster few-row GEMMs on CPU (opt-in).

``nn.Linear`` computes ``x @ W.T`` with ``W`` stored ``[out, in]``. For the few rows a decode step or
a small verification tree feeds it (1-16), MKL's float32 GEMM on that transposed operand gets
slower in steps as the row count grows (measured on 2 CPU cores, SmolLM2's 1536 x 576 MLP weight:
0.19 ms for 1-3 rows, 0.32 ms for 4-6, 0.44 ms for 8), while the same product with ``W.T`` stored
contiguous, ``x @ Wt``, stays near 0.2 ms up to 8 rows. Verifying a tree costs the target's
forward over its nodes, so that layout makes larger trees nearly as cheap as a decode step.
``benchmarks/verify_profile.py --transposed`` measures it on a real target.

The product is the same up to float rounding (the summation order may differ), so greedy outputs
can in principle differ from the stock model's in a near-tie; ``adaspec-eagle bench`` counts the
outputs equal to stock vanilla's for every row. The layers are for inference: their weights are
frozen copies, and a tied lm_head becomes an untied copy (one more ``[vocab, hidden]`` matrix).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TransposedLinear", "transpose_linears"]


class TransposedLinear(nn.Module):
    """``y = x @ weight_t + bias`` with ``weight_t = W.T`` stored contiguous, ``[in, out]``.

    Args:
        linear: The layer to copy; its weight is copied transposed, its bias as it is.

    Shapes:
        x: ``[..., in_features]`` -> ``[..., out_features]``.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        weight = linear.weight.detach()
        self.weight_t = nn.Parameter(weight.t().contiguous(), requires_grad=False)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)

    @property
    def weight(self) -> torch.Tensor:
        """The ``[out, in]`` view of the weight, for code that reads ``linear.weight``."""
        return self.weight_t.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer (see the class docstring for shapes)."""
        y = torch.matmul(x, self.weight_t)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " + (
            f"bias={self.bias is not None}"
        )


def transpose_linears(module: nn.Module) -> int:
    """Replace every ``nn.Linear`` inside ``module`` by a :class:`TransposedLinear`, in place.

    Args:
        module: A model (a transformers causal LM, a draft, an EAGLE head), usually in eval mode.

    Returns:
        The number of layers replaced (0 when there are none, e.g. on a second call).
    """
    replaced = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            setattr(module, name, TransposedLinear(child))
            replaced += 1
        else:
            replaced += transpose_linears(child)
    return replaced
