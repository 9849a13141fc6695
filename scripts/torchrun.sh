#!/usr/bin/env bash
# One node, every GPU, launched by torchrun (Lightning picks up torchrun's environment).
#   scripts/torchrun.sh configs/gated_pixelcnn_cifar10.yaml [extra CLI options]
# GPUS defaults to the number of visible GPUs. Batch sizes in configs are per GPU.
set -euo pipefail
presets=$(cd "$(dirname "${BASH_SOURCE[0]}")/../configs/trainer" && pwd)  # works from any folder
config=$1; shift
GPUS=${GPUS:-$(python -c "import torch; print(torch.cuda.device_count())")}
exec torchrun --standalone --nproc_per_node="$GPUS" -m lightning_gen fit --config "$config" \
  --config "$presets/ddp.yaml" --trainer.devices "$GPUS" "$@"
