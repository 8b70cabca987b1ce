from __future__ import annotations

import math
import socket
import sys
from pathlib import Path

import pytest
import torch

from adaspec.losses import check_k, select_tokens
from adaspec.losses.selection import quantile_threshold


@pytest.mark.parametrize("k", [0.4, 0.1, 0.5, 0.77, 1.0, 1e-6])
@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_quantile_threshold_matches_torch_quantile(k: float, n: int) -> None:
    values = torch.randn(n)
    assert quantile_threshold(values, 1 - k).item() == torch.quantile(values, 1 - k).item()


def test_quantile_threshold_matches_torch_quantile_with_ties() -> None:
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        values = torch.randint(
            0, 5, (int(torch.randint(1, 60, (1,), generator=gen)),), generator=gen
        ).float()
        for k in (0.4, 0.25, 0.9):
            assert quantile_threshold(values, 1 - k).item() == torch.quantile(values, 1 - k).item()


@pytest.mark.parametrize("k", [0.4, 0.2, 1.0])
def test_select_tokens_batch_matches_reference(k: float) -> None:
    delta = torch.randn(4, 9).round(decimals=1)
    valid = torch.rand(4, 9) > 0.3
    kept = select_tokens(delta, valid, k)
    thr = torch.quantile(delta[valid], 1 - k)
    assert torch.equal(kept, valid & (delta >= thr))
    assert not kept[~valid].any()
    if k == 1.0:
        assert torch.equal(kept, valid)


def test_select_tokens_keeps_about_k_of_valid() -> None:
    delta = torch.randn(5000)
    valid = torch.ones(5000, dtype=torch.bool)
    assert select_tokens(delta, valid, 0.4).float().mean().item() == pytest.approx(0.4, abs=1e-3)


def test_select_tokens_sequence_thresholds_per_row() -> None:
    delta = torch.randn(5, 12).round(decimals=1)
    valid = torch.rand(5, 12) > 0.4
    valid[3] = False  # a row without valid tokens keeps nothing
    kept = select_tokens(delta, valid, 0.4, scope="sequence")
    for b in range(5):
        if not valid[b].any():
            assert not kept[b].any()
            continue
        thr = torch.quantile(delta[b][valid[b]], 0.6)
        assert torch.equal(kept[b], valid[b] & (delta[b] >= thr))


def test_select_tokens_no_valid_tokens_keeps_nothing() -> None:
    delta = torch.randn(3, 4)
    valid = torch.zeros(3, 4, dtype=torch.bool)
    for scope in ("batch", "sequence", "global"):
        assert not select_tokens(delta, valid, 0.4, scope=scope).any()


def test_select_tokens_global_without_process_group_is_batch() -> None:
    delta, valid = torch.randn(50), torch.rand(50) > 0.2
    assert torch.equal(
        select_tokens(delta, valid, 0.4, scope="global"), select_tokens(delta, valid, 0.4)
    )


def test_select_tokens_carries_no_gradient() -> None:
    delta = torch.randn(10, requires_grad=True)
    kept = select_tokens(delta, torch.ones(10, dtype=torch.bool), 0.4)
    assert kept.dtype == torch.bool and not kept.requires_grad


def test_select_tokens_rejects_bad_inputs() -> None:
    delta, valid = torch.randn(6), torch.ones(6, dtype=torch.bool)
    with pytest.raises(ValueError, match="scope must be one of"):
        select_tokens(delta, valid, 0.4, scope="row")
    with pytest.raises(ValueError, match="same shape"):
        select_tokens(delta, valid[:5], 0.4)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        select_tokens(delta, valid, 0.4, scope="sequence")


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, math.nan, math.inf, True, "0.4", None])
def test_check_k_rejects_out_of_range(bad) -> None:
    with pytest.raises(ValueError, match=r"k must be in \(0, 1\], got .*the paper uses k=0.4"):
        check_k(bad)


def test_check_k_accepts_valid() -> None:
    assert check_k(0.4) == 0.4 and check_k(1) == 1.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_select_tokens_global_same_threshold_on_two_gloo_ranks(tmp_path, monkeypatch) -> None:
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    here = str(Path(__file__).parent)
    monkeypatch.syspath_prepend(here)  # spawned children inherit sys.path
    if "losses_gloo_worker" in sys.modules:
        del sys.modules["losses_gloo_worker"]
    import losses_gloo_worker as worker

    k = 0.4
    init = f"tcp://127.0.0.1:{_free_port()}"
    mp.spawn(worker.run, args=(2, init, str(tmp_path), k), nprocs=2, join=True)

    data = [worker.rank_data(r) for r in range(2)]
    all_delta = torch.cat([d for d, _ in data])
    all_valid = torch.cat([v for _, v in data])
    want = select_tokens(all_delta, all_valid, k)
    thr = torch.quantile(all_delta[all_valid], 1 - k)
    assert torch.equal(want, all_valid & (all_delta >= thr))
    got = torch.cat([torch.load(tmp_path / f"kept_{r}.pt") for r in range(2)])
    assert torch.equal(got, want)
    # A per-rank ("batch") threshold would differ on this data.
    local = torch.cat([select_tokens(d, v, k) for d, v in data])
    assert not torch.equal(local, want)
