#!/usr/bin/env bash
# One reproduction recipe, end to end: train it, then benchmark the best checkpoint into the results store, where the
# dashboard shows the row beside the published numbers of the same data set identity.
#
#   scripts/reproduce.sh CONFIG [extra fit arguments ...]
#   LIGHTNING_GEN_DATA=../shared/data scripts/reproduce.sh configs/repro/nade_binarized_mnist_static.yaml
#   .venv/bin/lightning-gen leaderboard --db results/repro.sqlite
#
# The run trains into runs/repro/<config name> (the config's default_root_dir) on one thread (OMP_NUM_THREADS, default
# 1, as the README's budgets were measured) and is benchmarked as run <config name>: the test NLL on the full test
# split, exact or the VAE's k-sample estimate (the config's iw_samples; BENCHMARK_ARGS="--iw-samples 1000" to cut
# its time), with no sample metrics unless BENCHMARK_ARGS asks for them. DB (default results/repro.sqlite) is the
# store; LIGHTNING_GEN names the command (default .venv/bin/lightning-gen); DRY_RUN=1 prints the commands.
set -euo pipefail

if [[ $# -lt 1 || ! -f "$1" ]]; then
  echo "usage: $0 CONFIG [extra fit arguments ...]   (a recipe in configs/repro/)" >&2
  exit 2
fi
if [[ -z "${LIGHTNING_GEN_DATA:-}" ]]; then
  echo "$0: set LIGHTNING_GEN_DATA to the data root (the folder holding BinarizedMNIST/ and MNIST/)" >&2
  exit 2
fi
config=$1
shift
name=$(basename "$config" .yaml)
root=$(sed -n 's/^  default_root_dir: *//p' "$config")
root=${root:-runs/repro/$name}
read -r -a lightning_gen <<< "${LIGHTNING_GEN:-.venv/bin/lightning-gen}"
read -r -a benchmark_args <<< "${BENCHMARK_ARGS:-}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# run (DRY_RUN prints instead) and newest_run ROOT
source "$(dirname "${BASH_SOURCE[0]}")/run_helpers.sh"

run "${lightning_gen[@]}" fit --config "$config" --data.init_args.root "$LIGHTNING_GEN_DATA" "$@"
run "${lightning_gen[@]}" benchmark "$(newest_run "$root")" --run-name "$name" --data-root "$LIGHTNING_GEN_DATA" \
  --num-samples 0 --no-probe --db "${DB:-results/repro.sqlite}" --no-progress ${benchmark_args[@]+"${benchmark_args[@]}"}
