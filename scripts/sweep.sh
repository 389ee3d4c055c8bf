#!/usr/bin/env bash
# Seed sweeps on this machine, Slurm or Ray, and their --status: scripts/sweep.sh --help.
# The launcher is sweeps/ (python -m sweeps), on the repository's .venv when there is one, else
# ${PYTHON:-python3}. exec: the pid that started, and that a user may kill, is the launcher's
# own, which every run watches (MTL_PARENT_PID), so nothing outlives it.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
if [[ -x $REPO/.venv/bin/python ]]; then
  PYTHON=$REPO/.venv/bin/python
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m sweeps "$@"
