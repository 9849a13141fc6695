#!/usr/bin/env bash
# One node, every GPU, launched by torchrun (Lightning picks up torchrun's environment).
#   scripts/torchrun.sh configs/gated_pixelcnn_cifar10.yaml [extra CLI options]
# GPUS defaults to the number of visible GPUs. Batch sizes in configs are per GPU. Without a GPU, 2 CPU processes:
#   GPUS=2 scripts/torchrun.sh configs/fvsbn_digits.yaml --trainer.accelerator cpu --trainer.precision 32-true
# PYTHON (default: the python on PATH, i.e. the activated environment) runs torch's launcher.
set -euo pipefail
presets=$(cd "$(dirname "${BASH_SOURCE[0]}")/../configs/trainer" && pwd)  # works from any folder
if [ $# -lt 1 ]; then
  echo "usage: [GPUS=N] scripts/torchrun.sh CONFIG [extra lightning-gen fit options]" >&2; exit 2
fi
config=$1; shift
source "$(dirname "${BASH_SOURCE[0]}")/launch_checks.sh"
launch_checks scripts/torchrun.sh "$config"
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" -m lightning_gen fit --config "$config" \
  --config "$presets/ddp.yaml" --trainer.devices "$GPUS" "$@"
