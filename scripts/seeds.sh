#!/usr/bin/env bash
# Train one config under N seeds, then benchmark each run: the dashboard shows them as one row, mean ± std over the
# seeds, with the single runs one click away (runs whose configs differ only in the seed and the output folder).
#
#   scripts/seeds.sh CONFIG N [extra fit arguments ...]
#   scripts/seeds.sh configs/fvsbn_digits.yaml 3 --trainer.max_epochs 5
#   BENCHMARK_ARGS="--num-samples 2000" scripts/seeds.sh configs/vae_mnist.yaml 3 --data.init_args.root ../shared/data
#
# Seed S (0..N-1) trains into runs/<config name>_seed<S> and is benchmarked as run <config name>_seed<S> (its newest
# run folder there). LIGHTNING_GEN names the command (default .venv/bin/lightning-gen); DRY_RUN=1 prints the
# commands instead of running them.
set -euo pipefail

if [[ $# -lt 2 || ! "$2" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 CONFIG N [extra fit arguments ...]   (N seeds, 0..N-1)" >&2
  exit 2
fi
config=$1
seeds=$2
shift 2
name=$(basename "$config" .yaml)
read -r -a lightning_gen <<< "${LIGHTNING_GEN:-.venv/bin/lightning-gen}"
read -r -a benchmark_args <<< "${BENCHMARK_ARGS:-}"

# run (DRY_RUN prints instead) and newest_run ROOT
source "$(dirname "${BASH_SOURCE[0]}")/run_helpers.sh"

for ((s = 0; s < seeds; s++)); do
  run "${lightning_gen[@]}" fit --config "$config" --seed_everything "$s" \
    --trainer.default_root_dir "runs/${name}_seed$s" "$@"
done
for ((s = 0; s < seeds; s++)); do
  run "${lightning_gen[@]}" benchmark "$(newest_run "runs/${name}_seed$s")" --run-name "${name}_seed$s" \
    ${benchmark_args[@]+"${benchmark_args[@]}"}
done
