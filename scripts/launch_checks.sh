# Sourced by scripts/torchrun.sh and scripts/torchrun_multinode.sh: the checks both launchers make before torchrun,
# so a missing environment or GPU count gets one line naming the fix (exit 2), never a torch traceback.
#   launch_checks SCRIPT_NAME CONFIG   sets PYTHON (default: the python on PATH) and GPUS (default: visible GPUs)

launch_checks() {
  local script=$1 config=$2
  PYTHON=${PYTHON:-python}
  if ! "$PYTHON" -c "import torch, lightning_gen" 2>/dev/null; then
    echo "$script: '$PYTHON' cannot import torch and lightning_gen. Activate the project's environment first" \
         "(source .venv/bin/activate), or name its python: PYTHON=.venv/bin/python $script ..." >&2
    exit 2
  fi
  GPUS=${GPUS:-$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")}
  if ! [ "$GPUS" -ge 1 ] 2>/dev/null; then
    echo "$script: no GPU is visible (GPUS=$GPUS). Set GPUS to the number of processes per node; on the CPU:" >&2
    echo "  GPUS=2 $script $config --trainer.accelerator cpu --trainer.precision 32-true" \
         "[--trainer.sync_batchnorm false for models with BatchNorm]" >&2
    exit 2
  fi
}
