#!/usr/bin/env bash
# Several nodes with torchrun: run this on every node with the same MASTER_ADDR/MASTER_PORT.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 scripts/torchrun_multinode.sh configs/dcgan_cifar10.yaml
set -euo pipefail
presets=$(cd "$(dirname "${BASH_SOURCE[0]}")/../configs/trainer" && pwd)  # works from any folder
config=$1; shift
: "${NNODES:?set NNODES}" "${NODE_RANK:?set NODE_RANK}" "${MASTER_ADDR:?set MASTER_ADDR}"
MASTER_PORT=${MASTER_PORT:-29500}
GPUS=${GPUS:-$(python -c "import torch; print(torch.cuda.device_count())")}
exec torchrun --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$GPUS" \
  --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" -m lightning_gen fit --config "$config" \
  --config "$presets/multinode.yaml" --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS" "$@"
