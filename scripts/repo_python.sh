# Sourced by the scripts here: PY is $PYTHON when set, else the repository's .venv/bin/python
# (what the README's first command installs), else python3; REPO is the repository root.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n ${PYTHON:-} ]]; then
  PY=$PYTHON
elif [[ -x $REPO/.venv/bin/python ]]; then
  PY=$REPO/.venv/bin/python
else
  PY=python3
fi
