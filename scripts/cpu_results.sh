#!/usr/bin/env bash
# The CPU-sized real-data runs of docs/results.md: for TASK (gsm8k, mbpp, xsum), the target is
# trained once (seed 0); the reference and the drafts are trained for seeds 0, 1 and 2 on that target.
# Usage: scripts/cpu_results.sh TASK [SEEDS...]   (run from the repository root; data in ../shared/data)
set -euo pipefail
task=${1:?usage: scripts/cpu_results.sh TASK [SEEDS...]}
shift
seeds=${*:-0 1 2}
config=configs/cpu/$task.yaml
base=runs/cpu/$task-s0
for seed in $seeds; do
  out=runs/cpu/$task-s$seed
  if [ "$seed" = 0 ]; then
    adaspec pipeline "$config" --set seed=0 --set output_dir="$out"
  else
    adaspec pipeline "$config" --set seed="$seed" --set output_dir="$out" \
      --set target.model.name_or_path="$base/target" --set target.train=false \
      --set tokenizer.name_or_path="$base/tokenizer"
  fi
done
python scripts/summarize_cpu_results.py runs/cpu/$task-s* --out runs/cpu/$task-summary
