"""Where a verification forward's time goes: the project's tree forward against stock calls.

On one target and one prompt prefix (its KV cache built once), each variant runs one forward of
``q`` new tokens on top of the cache and the cache is cropped back after it, so every variant sees
the same cache length. Variants, interleaved within each repeat (so drift and load hit all alike),
timed with ``time.perf_counter`` and reported as medians in milliseconds:

* ``stock_decode``: ``model(input_ids=[1, 1], cache)``, what ``generate`` runs per token;
* ``stock_chunk_q``: the same with ``q`` tokens and no explicit mask (causal), the floor a tree
  forward of ``q`` tokens can reach;
* ``tree_q``: :func:`adaspec.decoding.cache.forward` with a 4D tree mask and tree position ids,
  as :class:`~adaspec.decoding.decoder.SpeculativeDecoder` verifies (a random tree of ``q - 1``
  nodes under the root);
* ``tree_q_hidden``: the same with ``output_hidden_states=True`` (EAGLE drafters need the
  target's features);
* ``body_q``: the decoder body alone (``model.model``), so the lm_head's share shows;
* with ``--transposed``, ``stock_decode_transposed`` and ``tree_q_transposed``: the same calls on a
  second copy of the target whose linear layers store their weights transposed
  (:func:`adaspec.decoding.linear.transpose_linears`), with its own cache of the same prefix.

Ratios to ``stock_decode`` are computed within the run. JSON goes to stdout and to ``--out``.

Example (the SmolLM2 target, prepared with ``adaspec models prepare``)::

    python benchmarks/verify_profile.py runs/models/smollm2-135m-instruct --prefix 200 \\
        --sizes 1 4 6 8 16 --repeats 15 --threads 2 --out runs/verify_profile.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from adaspec.decoding.cache import (
    cache_keyword,
    causal_allowed,
    crop_cache,
    forward,
    new_cache,
)
from adaspec.decoding.linear import transpose_linears


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", help="folder or hub id of the target (from_pretrained)")
    p.add_argument("--prefix", type=int, default=200, help="cached prompt tokens (default 200)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 6, 8, 16], help="new tokens q")
    p.add_argument("--repeats", type=int, default=15, help="timed repeats per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed repeats first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--attn", default=None, help="attn_implementation (default: transformers')")
    p.add_argument(
        "--transposed", action="store_true", help="also time a copy with transposed linears"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def random_tree_allowed(q: int, gen: torch.Generator) -> torch.Tensor:
    """Bool ``[q, q]``: slot 0 the root, each later slot a child of a random earlier slot."""
    allowed = torch.eye(q, dtype=torch.bool)
    for i in range(1, q):
        parent = int(torch.randint(0, i, (1,), generator=gen))
        allowed[i] |= allowed[parent]
    return allowed


def tree_positions(allowed: torch.Tensor, past: int) -> torch.Tensor:
    """Position ids ``[1, q]``: ``past`` plus each slot's depth (ancestors seen, minus one)."""
    return (past + allowed.sum(1) - 1)[None]


def variants(model, ids: torch.Tensor, cache, past: int, gen: torch.Generator) -> dict:
    """The timed calls of one size, each a no-argument callable."""
    q = ids.shape[1]
    key = cache_keyword(type(model).forward)
    body_key = cache_keyword(type(model.model).forward)
    causal_pos = torch.arange(past, past + q)[None]
    allowed = causal_allowed(1) if q == 1 else random_tree_allowed(q, gen)
    tree_pos = tree_positions(allowed, past)
    calls = {
        f"stock_chunk_{q}": lambda: model(
            input_ids=ids, position_ids=causal_pos, use_cache=True, **{key: cache}
        ),
        f"tree_{q}": lambda: forward(model, ids, cache, allowed, tree_pos),
        f"tree_{q}_hidden": lambda: forward(model, ids, cache, allowed, tree_pos, True),
        f"body_{q}": lambda: model.model(
            input_ids=ids, position_ids=causal_pos, use_cache=True, **{body_key: cache}
        ),
    }
    if q == 1:
        calls["stock_decode"] = calls.pop("stock_chunk_1")
    return calls


@torch.no_grad()
def run(args: argparse.Namespace) -> dict:
    """Time every variant and size; return the report."""
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    kwargs = {"dtype": getattr(torch, args.dtype)}
    if args.attn:
        kwargs["attn_implementation"] = args.attn
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs).eval()
    vocab = model.config.vocab_size
    prefix = torch.randint(0, vocab, (1, args.prefix), generator=gen)
    models = {"": model}
    if args.transposed:
        fast = AutoModelForCausalLM.from_pretrained(args.model, **kwargs).eval()
        transpose_linears(fast)
        models["_transposed"] = fast
    calls, caches = {}, {}
    for suffix, m in models.items():
        cache = new_cache()
        forward(m, prefix, cache, causal_allowed(args.prefix), torch.arange(args.prefix)[None])
        g = torch.Generator().manual_seed(args.seed + 1)  # the same tokens and trees per copy
        for q in sorted(set(args.sizes)):
            ids = torch.randint(0, vocab, (1, q), generator=g)
            for name, call in variants(m, ids, cache, args.prefix, g).items():
                if suffix and not name.startswith(("stock_decode", "tree_")):
                    continue
                if suffix and name.endswith("_hidden"):
                    continue
                calls[name + suffix], caches[name + suffix] = call, cache
    times: dict[str, list[float]] = {name: [] for name in calls}
    for rep in range(args.warmup + args.repeats):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            dt = time.perf_counter() - t
            crop_cache(caches[name], args.prefix)
            if rep >= args.warmup:
                times[name].append(dt * 1000)
    med = {name: statistics.median(v) for name, v in times.items()}
    base = med.get("stock_decode")
    return {
        "model": args.model,
        "dtype": args.dtype,
        "attn_implementation": model.config._attn_implementation,
        "prefix": args.prefix,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "machine": platform.machine(),
        "median_ms": {k: round(v, 2) for k, v in med.items()},
        "min_ms": {k: round(min(v), 2) for k, v in times.items()},
        "ratio_to_stock_decode": {k: round(v / base, 3) for k, v in med.items()} if base else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
