"""Peak memory and time of the chunked AdaSPEC loss vs. the official (naive) formulation.

Naive = what the official AdaSPEC ``compute_loss`` does: full ``[N, V]`` logits of draft,
target and reference, ``masked_select`` copies, ``.float()`` copies, softmax / log_softmax on the
whole tensors, ``KLDivLoss(reduction="none")``, ``torch.quantile`` threshold. Chunked =
``adaspec.losses.chunked_adaspec_loss`` from last hidden states and LM-head weights. Both
variants include the LM-head matmuls (hidden -> logits) and the backward pass.

Each (variant, repeat) runs in a fresh subprocess. Peak memory on CPU is the child's
``ru_maxrss`` after the work minus ``ru_maxrss`` measured in the same child right before it
(inputs already allocated); on CUDA it is ``torch.cuda.max_memory_allocated`` minus the memory
allocated before the work (after one warm-up iteration). Reported numbers are medians over
``--repeats``. JSON goes to stdout and to ``--out``.

Example::

    python benchmarks/loss_memory.py --tokens 8192 --vocab 50304 --repeats 3 \\
        --out runs/loss_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

VARIANTS = ("naive", "chunked")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokens", type=int, default=8192, help="valid tokens N (default 8192)")
    p.add_argument("--vocab", type=int, default=50304, help="vocabulary V (Pythia: 50304)")
    p.add_argument("--draft-hidden", type=int, default=256, help="draft H (Pythia-31M: 256)")
    p.add_argument("--target-hidden", type=int, default=2048, help="target H (Pythia-1.4B: 2048)")
    p.add_argument("--ref-hidden", type=int, default=None, help="reference H (default: draft H)")
    p.add_argument("--k", type=float, default=0.4, help="AdaSPEC keep fraction")
    p.add_argument("--chunk-size", type=int, default=None, help="default: the library default")
    p.add_argument("--repeats", type=int, default=3, help="fresh subprocesses per variant")
    p.add_argument("--device", default=default_device(), help="cpu / cuda (default: detected)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="model/hidden dtype (default: bfloat16 on cuda, float32 on cpu)",
    )
    p.add_argument("--warmup", type=int, default=None, help="warm-up iterations (cuda: 1, cpu: 0)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON result here")
    p.add_argument("--worker", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ref_hidden is None:
        args.ref_hidden = args.draft_hidden
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    if args.warmup is None:
        args.warmup = 1 if args.device.startswith("cuda") else 0
    if args.chunk_size is None:
        from adaspec.losses.chunked import DEFAULT_CHUNK_SIZE

        args.chunk_size = DEFAULT_CHUNK_SIZE
    return args


def make_inputs(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(args.seed)

    def rnd(*shape: int, scale: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * scale).to(device=args.device, dtype=dtype)

    n, v = args.tokens, args.vocab
    out = {
        "draft_hidden": rnd(n, args.draft_hidden, scale=1.0).requires_grad_(True),
        "draft_weight": rnd(v, args.draft_hidden, scale=args.draft_hidden**-0.5),
        "target_hidden": rnd(n, args.target_hidden, scale=1.0),
        "target_weight": rnd(v, args.target_hidden, scale=2 * args.target_hidden**-0.5),
        "ref_hidden": rnd(n, args.ref_hidden, scale=1.0),
        "ref_weight": rnd(v, args.ref_hidden, scale=args.ref_hidden**-0.5),
    }
    out["draft_weight"].requires_grad_(True)
    out["valid"] = torch.ones(n, dtype=torch.bool, device=args.device)
    return out


def naive_step(x: dict[str, torch.Tensor], k: float) -> torch.Tensor:
    """The official AdaSPEC compute_loss on aligned tokens (full [N, V] tensors)."""
    logits = F.linear(x["draft_hidden"], x["draft_weight"])
    with torch.no_grad():
        target_logits = F.linear(x["target_hidden"], x["target_weight"])
        ref_logits = F.linear(x["ref_hidden"], x["ref_weight"])
    v = logits.shape[-1]
    mask = x["valid"].unsqueeze(-1)
    shift_logits = torch.masked_select(logits, mask=mask).view(-1, v).float()
    shift_target_logits = torch.masked_select(target_logits, mask=mask).view(-1, v).float()
    shift_ref_logits = torch.masked_select(ref_logits, mask=mask).view(-1, v).float()
    p = F.softmax(shift_target_logits, dim=-1)
    actual = F.kl_div(F.log_softmax(shift_logits, dim=-1), p, reduction="none").sum(-1)
    ref = F.kl_div(F.log_softmax(shift_ref_logits, dim=-1), p, reduction="none").sum(-1)
    delta = actual - ref
    keep = delta >= torch.quantile(delta, 1 - k, dim=0, keepdim=True)
    loss = torch.masked_select(actual, mask=keep).sum() / x["valid"].sum()
    loss.backward()
    return loss.detach()


def chunked_step(x: dict[str, torch.Tensor], k: float, chunk_size: int) -> torch.Tensor:
    from adaspec.losses import SelectiveLossSettings, chunked_adaspec_loss

    out = chunked_adaspec_loss(
        x["draft_hidden"],
        x["draft_weight"],
        x["target_hidden"],
        x["target_weight"],
        x["ref_hidden"],
        x["ref_weight"],
        valid=x["valid"],
        settings=SelectiveLossSettings(k=k, chunk_size=chunk_size),
    )
    out.loss.backward()
    return out.loss.detach()


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_worker(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    x = make_inputs(args)
    cuda = args.device.startswith("cuda")

    def step() -> torch.Tensor:
        for name in ("draft_hidden", "draft_weight"):
            x[name].grad = None
        if args.worker == "naive":
            return naive_step(x, args.k)
        return chunked_step(x, args.k, args.chunk_size)

    for _ in range(args.warmup):
        step()
    _sync(args.device)
    for name in ("draft_hidden", "draft_weight"):
        x[name].grad = None
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _maxrss_bytes()
    t0 = time.perf_counter()
    loss = step()
    _sync(args.device)
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if cuda else _maxrss_bytes()) - base
    return {
        "variant": args.worker,
        "seconds": seconds,
        "peak_bytes": int(peak),
        "loss": float(loss),
        "memory_metric": "cuda_max_memory_allocated" if cuda else "ru_maxrss_delta",
    }


#: The settings a worker process is started with (``--repeats`` stays with the parent).
WORKER_FLAGS = (
    "tokens",
    "vocab",
    "draft_hidden",
    "target_hidden",
    "ref_hidden",
    "k",
    "chunk_size",
    "device",
    "dtype",
    "warmup",
    "seed",
)


def _child_cmd(args: argparse.Namespace, variant: str) -> list[str]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", variant]
    for flag in WORKER_FLAGS:
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return cmd


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_worker(args)))
        return {}
    variants = [v for v in args.variants.split(",") if v]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            proc = subprocess.run(_child_cmd(args, variant), capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{variant} worker failed:\n{proc.stderr[-4000:]}")
            runs[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    summary = {}
    for variant, rs in runs.items():
        summary[variant] = {
            "median_seconds": statistics.median(r["seconds"] for r in rs),
            "median_peak_bytes": int(statistics.median(r["peak_bytes"] for r in rs)),
            "median_peak_gib": statistics.median(r["peak_bytes"] for r in rs) / 2**30,
            "loss": rs[0]["loss"],
            "runs": rs,
        }
    result = {
        "config": {k: getattr(args, k) for k in (*WORKER_FLAGS[:7], "repeats", *WORKER_FLAGS[7:])},
        "one_NxV_float32_gib": args.tokens * args.vocab * 4 / 2**30,
        "env": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "cuda_device": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        },
        "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "results": summary,
    }
    if "naive" in summary and "chunked" in summary:
        n, c = summary["naive"], summary["chunked"]
        result["chunked_over_naive"] = {
            "peak_memory_ratio": c["median_peak_bytes"] / max(n["median_peak_bytes"], 1),
            "time_ratio": c["median_seconds"] / n["median_seconds"],
            "loss_abs_diff": abs(c["loss"] - n["loss"]),
            "meets_target": c["median_peak_bytes"] <= 0.2 * n["median_peak_bytes"]
            and c["median_seconds"] <= n["median_seconds"],
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
