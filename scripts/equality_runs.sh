#!/usr/bin/env bash
# The run matrix of the behaviour-equality check: a refactor keeps every behaviour when the same
# runs, trained before and after it, have bitwise equal metrics.jsonl (python -m scripts.compare_runs
# BEFORE AFTER). Tiny SynthCity runs, seed 0, one thread each, one after another:
#   adam and adam_with_adatask × ew, pcgrad, famo, nash_mtl, with K=2 (semantic depth) and K=3
#   (semantic instance depth), and adam_with_adatask + pcgrad as one 2-process torchrun (float64).
#
#   scripts/equality_runs.sh OUT_DIR [DATA_DIR]
#
# Runs go to OUT_DIR/<name>; a finished one is skipped, so an interrupted matrix can be resumed.
# DATA_DIR (default: OUT_DIR's parent /synthcity) is generated when it holds no data set and used
# as it is otherwise, so the trees before and after read the same files even if the generator
# changed: give both the same DATA_DIR, or OUT_DIRs with one parent. The script uses only flags
# that old commits have too: it is copied into an old worktree to train the "before" set there.
set -euo pipefail
if (( $# < 1 || $# > 2 )); then
  echo "usage: $0 OUT_DIR [DATA_DIR]" >&2
  exit 2
fi
out=$(realpath -m "$1")
data=$(realpath -m "${2:-$(dirname "$out")/synthcity}")
source "$(dirname "$0")/repo_python.sh"
cd "$REPO"
export OMP_NUM_THREADS=1  # the machine's cores are shared; one thread also fixes the reduction order

if [[ ! -f $data/synthcity.json ]]; then
  "$PY" -m data.synthcity --out "$data" --n-train 8 --n-val 4 --height 32 --width 64
fi
tiny=(--data-path "$data" --width-mult 0.125 --batch-size 4 --epochs 2 --seed 0 --threads 1 --out "$out")

train() {  # train NAME LAUNCHER... -- FLAGS...: one run unless it finished before
  local name=$1
  shift
  [[ -f $out/$name/summary.json ]] && { echo "$name: finished before, skipped"; return; }
  local launcher=()
  while [[ $1 != -- ]]; do launcher+=("$1"); shift; done
  shift
  echo "== $name"
  "${launcher[@]}" main_cityscapes.py "${tiny[@]}" --name "$name" "$@"
}

for k in 2 3; do
  tasks=(semantic depth)
  (( k == 3 )) && tasks=(semantic instance depth)
  for method in adam adam_with_adatask; do
    for weighting in ew pcgrad famo nash_mtl; do
      train "k$k-$method-$weighting" "$PY" -- --tasks "${tasks[@]}" --method "$method" --weighting "$weighting"
    done
  done
done
# torchrun is torch.distributed.run of the same interpreter
train torchrun2-adam_with_adatask-pcgrad "$PY" -m torch.distributed.run --nproc-per-node 2 -- \
    --method adam_with_adatask --weighting pcgrad --dtype float64
echo "all runs in $out"
