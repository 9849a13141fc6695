#!/usr/bin/env bash
# Several nodes with torchrun: run this on every node with the same MASTER_ADDR/MASTER_PORT.
# GPUS (processes per node) defaults to the visible GPUs; PYTHON (default: the python on PATH) runs torch's launcher.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 scripts/torchrun_multinode.sh configs/dcgan_cifar10.yaml
set -euo pipefail
presets=$(cd "$(dirname "${BASH_SOURCE[0]}")/../configs/trainer" && pwd)  # works from any folder
if [ $# -lt 1 ]; then
  echo "usage: NNODES=N NODE_RANK=R MASTER_ADDR=HOST [GPUS=N] scripts/torchrun_multinode.sh CONFIG [options]" >&2; exit 2
fi
config=$1; shift
for var in NNODES NODE_RANK MASTER_ADDR; do
  if [ -z "${!var:-}" ]; then
    echo "scripts/torchrun_multinode.sh: set $var (every node: NNODES and MASTER_ADDR the same, NODE_RANK 0..NNODES-1)" >&2
    exit 2
  fi
done
MASTER_PORT=${MASTER_PORT:-29500}
source "$(dirname "${BASH_SOURCE[0]}")/launch_checks.sh"
launch_checks scripts/torchrun_multinode.sh "$config"
exec "$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$GPUS" \
  --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" -m lightning_gen fit --config "$config" \
  --config "$presets/multinode.yaml" --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS" "$@"
