"""Worker for the 2-process gloo test of ``select_tokens(scope="global")`` (spawned, not a test)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from adaspec.losses import select_tokens


def rank_data(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Different data and different valid-token counts per rank (deterministic)."""
    gen = torch.Generator().manual_seed(100 + rank)
    n = 23 if rank == 0 else 41
    delta = torch.randn(n, generator=gen).round(decimals=1)  # rounding creates ties
    valid = torch.rand(n, generator=gen) > (0.2 if rank == 0 else 0.5)
    return delta, valid


def run(rank: int, world_size: int, init_method: str, out_dir: str, k: float) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        delta, valid = rank_data(rank)
        kept = select_tokens(delta, valid, k, scope="global")
        torch.save(kept, f"{out_dir}/kept_{rank}.pt")
    finally:
        dist.destroy_process_group()
