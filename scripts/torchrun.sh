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
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import torch, lightning_gen" 2>/dev/null; then
  echo "scripts/torchrun.sh: '$PYTHON' cannot import torch and lightning_gen. Activate the project's environment" \
       "first (source .venv/bin/activate), or name its python: PYTHON=.venv/bin/python scripts/torchrun.sh ..." >&2
  exit 2
fi
GPUS=${GPUS:-$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")}
if ! [ "$GPUS" -ge 1 ] 2>/dev/null; then
  echo "scripts/torchrun.sh: no GPU is visible (GPUS=$GPUS). Set GPUS to the number of processes; on the CPU:" >&2
  echo "  GPUS=2 scripts/torchrun.sh $config --trainer.accelerator cpu --trainer.precision 32-true" \
       "[--trainer.sync_batchnorm false for models with BatchNorm]" >&2
  exit 2
fi
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" -m lightning_gen fit --config "$config" \
  --config "$presets/ddp.yaml" --trainer.devices "$GPUS" "$@"
