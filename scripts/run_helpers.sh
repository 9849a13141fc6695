# Shared by scripts/seeds.sh and scripts/reproduce.sh (sourced, not run).

# Run a command, or print it when DRY_RUN is set.
run() {
  if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

# The run folder fit wrote last under a root (lightning_logs/version_K, or a W&B run folder); the root itself when
# none exists yet (a dry run).
newest_run() {
  local found
  found=$(find "$1" -type d -name checkpoints -printf '%T@ %h\n' 2>/dev/null | sort -n | tail -n 1 | cut -d' ' -f2-)
  echo "${found:-$1}"
}
