#!/usr/bin/env bash
# Reproduce one run of configs/: the three AdaSPEC stages with `accelerate launch` + DeepSpeed,
# then the DistillSpec-vs-AdaSPEC comparison on the main process.
#
# Usage: scripts/pipeline.sh CONFIG [--set key=value ...]
#   NUM_PROCESSES   processes (GPUs) to launch; default: every visible GPU, else 1 (CPU).
#   The DeepSpeed config is the one each stage names in CONFIG (optim.deepspeed).
#   The paper's batch of 16 is per_device_batch_size x NUM_PROCESSES x gradient_accumulation_steps.
set -euo pipefail
config=${1:?usage: scripts/pipeline.sh CONFIG [--set key=value ...]}
shift
if [ -z "${NUM_PROCESSES:-}" ]; then
  NUM_PROCESSES=$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")
fi
for stage in target ref draft; do
  echo "== stage $stage ($NUM_PROCESSES processes)"
  accelerate launch --num_processes "$NUM_PROCESSES" --num_machines 1 --mixed_precision no \
    --dynamo_backend no -m adaspec.cli train "$stage" "$config" "$@"
done
