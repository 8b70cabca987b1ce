#!/usr/bin/env bash
# The SmolLM2-135M-Instruct speed benchmark of docs/speed.md: four prompt sets (20 prompts each,
# 128 new tokens), greedy and at temperature 1, every row of configs/bench/smollm2-mtbench.yaml.
# Usage: scripts/bench_smollm2.sh [SET...]   (sets: mtbench gsm8k xsum mbpp; default all four)
# Run from the repository root with nothing else on the machine (2 threads); ~30 min a set and
# temperature on 2 cores. Output: runs/bench/smollm2-<set>-t<temperature>/bench.{json,md,png}.
set -euo pipefail
config=configs/bench/smollm2-mtbench.yaml
data=../shared/data
sets=${*:-mtbench gsm8k xsum mbpp}
for set in $sets; do
  case $set in
    mtbench) args=() ;;
    gsm8k) args=(--set prompts=$data/gsm8k/test.jsonl --set task=gsm8k --set every=1) ;;
    xsum) args=(--set prompts=$data/xsum/xsum_1000.jsonl --set task=xsum --set every=1) ;;
    mbpp) args=(--set prompts=$data/mbpp/mbpp.jsonl --set task=mbpp --set every=1
                --set first_record=10) ;;  # task ids 11-30: the start of MBPP's test split
    *) echo "unknown prompt set $set (mtbench gsm8k xsum mbpp)" >&2; exit 2 ;;
  esac
  for temperature in 0 1; do
    adaspec-eagle bench "$config" "${args[@]}" --set temperature=$temperature \
      --set output_dir=runs/bench/smollm2-$set-t$temperature
  done
done
