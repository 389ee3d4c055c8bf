#!/usr/bin/env bash
# Seed sweeps on this machine, Slurm or Ray, and their --status: scripts/sweep.sh --help.
# The launcher is sweeps/ (python -m sweeps) on the interpreter of scripts/repo_python.sh. exec:
# the pid that started, and that a user may kill, is the launcher's own, which every run
# watches (MTL_PARENT_PID), so nothing outlives it.
set -euo pipefail
source "$(dirname "$0")/repo_python.sh"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m sweeps "$@"
