#!/usr/bin/env bash
# Run a single stage (target | ref | draft) of a config with `accelerate launch` + DeepSpeed.
# Usage: scripts/train_stage.sh STAGE CONFIG [--set key=value ...]
set -euo pipefail
stage=${1:?usage: scripts/train_stage.sh STAGE CONFIG [--set key=value ...]}
config=${2:?usage: scripts/train_stage.sh STAGE CONFIG [--set key=value ...]}
shift 2
if [ -z "${NUM_PROCESSES:-}" ]; then
  NUM_PROCESSES=$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")
fi
exec accelerate launch --num_processes "$NUM_PROCESSES" --num_machines 1 --mixed_precision no \
  --dynamo_backend no -m adaspec.cli train "$stage" "$config" "$@"
