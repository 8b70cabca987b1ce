"""Print the loss curves of one stage in two output folders side by side (markdown).

Usage: python scripts/resume_curve.py STAGE UNINTERRUPTED_DIR RESUMED_DIR [--resumed-from STEP]

Used for docs/resume.md: a stage killed with ``kill -9`` and rerun with the same command should
give the uninterrupted run's losses, step for step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def losses(folder: Path) -> dict[int, float]:
    """``step -> loss`` from a stage folder's ``trainer_state.json``."""
    history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage")
    parser.add_argument("straight", type=Path)
    parser.add_argument("resumed", type=Path)
    parser.add_argument("--resumed-from", type=int, default=None, help="step of the checkpoint")
    args = parser.parse_args()
    a, b = losses(args.straight / args.stage), losses(args.resumed / args.stage)
    print("| step | uninterrupted | killed + rerun | difference |")
    print("|---:|---:|---:|---:|")
    for step in sorted(set(a) | set(b)):
        mark = " (resumed after this)" if step == args.resumed_from else ""
        x, y = a.get(step), b.get(step)
        diff = f"{abs(x - y):.1e}" if x is not None and y is not None else "-"
        print(f"| {step}{mark} | {x:.5f} | {y:.5f} | {diff} |")


if __name__ == "__main__":
    main()
