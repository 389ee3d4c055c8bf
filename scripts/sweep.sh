#!/usr/bin/env bash
# Seed sweeps: every method x weighting x seed as one run of main_cityscapes.py, then the tables.
#
#   scripts/sweep.sh --sweep NAME --methods "adam adam_with_adatask" [--weightings "ew pcgrad"]
#       [--seeds "0 1 2"] [--single-task] [--gpus "0 1"] [--runs DIR] [--results DIR] [-- FLAGS...]
#
# Run <method>-<weighting>-s<seed> goes to <runs>/NAME/ (default runs/NAME/) with its output in
# <name>.log and its exit status in <name>.exit beside the folder. Finished runs (summary.json)
# are skipped; interrupted ones (config.json, no summary.json) continue with --resume and the
# same flags (refused if they change a setting), so rerunning the command completes a sweep.
# --single-task adds the single-task baselines single-semantic-s<seed> and single-depth-s<seed>
# (first method, weighting ew). FLAGS after -- go to every run. --gpus "0 1": one queue per GPU
# in parallel (CUDA_VISIBLE_DEVICES), runs dealt round-robin; default: one queue. At the end:
# python -m evaluation.aggregate into <results>/NAME.{md,csv,_curves.png} (default results/).
# Exit status 1 if any run failed, after the others. Uses ${PYTHON:-python3}.
set -uo pipefail

die() { echo "sweep.sh: $*" >&2; exit 2; }
need() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }

PYTHON=${PYTHON:-python3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
sweep="" methods="" weightings="ew" seeds="0 1 2" single=0 gpus="" runs="runs" results="results"
while (($#)); do
  case $1 in
    --sweep) need "$@"; sweep=$2; shift 2 ;;
    --methods) need "$@"; methods=$2; shift 2 ;;
    --weightings) need "$@"; weightings=$2; shift 2 ;;
    --seeds) need "$@"; seeds=$2; shift 2 ;;
    --gpus) need "$@"; gpus=$2; shift 2 ;;
    --runs) need "$@"; runs=$2; shift 2 ;;
    --results) need "$@"; results=$2; shift 2 ;;
    --single-task) single=1; shift ;;
    -h | --help) sed -n '2,15p' "$0" | cut -c3-; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (flags for main_cityscapes.py go after --; see --help)" ;;
  esac
done
extra=("$@")

[[ -n $sweep && $sweep != */* ]] || die "--sweep NAME is required (a folder name, no /)"
[[ -n $methods ]] || die "--methods is required, e.g. --methods \"adam adam_with_adatask\""
read -ra methods <<<"$methods"
read -ra weightings <<<"$weightings"
read -ra seeds <<<"$seeds"
read -ra gpus <<<"$gpus"
for seed in "${seeds[@]}"; do [[ $seed =~ ^[0-9]+$ ]] || die "--seeds: $seed is not a non-negative integer"; done
# The sweep owns these flags: a run's folder name must say what the run is.
for flag in "${extra[@]}"; do
  case ${flag%%=*} in
    --method | --weighting | --seed | --out | --name | --resume | --tasks) die "$flag is set by sweep.sh itself" ;;
  esac
done

# The plan: run names and their flags, seed by seed, so a partial sweep compares every method.
names=() flags=()
for seed in "${seeds[@]}"; do
  for method in "${methods[@]}"; do
    for weighting in "${weightings[@]}"; do
      names+=("$method-$weighting-s$seed")
      flags+=("--method $method --weighting $weighting --seed $seed")
    done
  done
  if ((single)); then
    for task in semantic depth; do
      names+=("single-$task-s$seed")
      flags+=("--method ${methods[0]} --weighting ew --seed $seed --tasks $task")
    done
  fi
done

dir="$runs/$sweep"
mkdir -p "$dir" || die "cannot create $dir"

run_one() {  # $1: index into the plan, $2: GPU or empty
  local name=${names[$1]} gpu=$2 verb status
  local -a cmd own
  if [[ -f $dir/$name/summary.json ]]; then
    printf '%-7s %s (finished)\n' skip "$name"
    return
  fi
  read -ra own <<<"${flags[$1]}"
  if [[ -f $dir/$name/config.json ]]; then
    # The flags again: main_cityscapes.py refuses to resume a run made with other settings.
    verb=resume cmd=("$PYTHON" "$REPO/main_cityscapes.py" --resume "$dir/$name" "${own[@]}" "${extra[@]}")
  else
    verb=start cmd=("$PYTHON" "$REPO/main_cityscapes.py" "${own[@]}" --out "$dir" --name "$name" "${extra[@]}")
  fi
  rm -f "$dir/$name.exit"  # no stale status while it runs
  printf '%-7s %s\n' "$verb" "$name${gpu:+ (GPU $gpu)}"
  echo "# $(date '+%Y-%m-%d %H:%M:%S') sweep.sh $verb${gpu:+ CUDA_VISIBLE_DEVICES=$gpu}: ${cmd[*]}" >>"$dir/$name.log"
  if [[ -n $gpu ]]; then
    CUDA_VISIBLE_DEVICES=$gpu "${cmd[@]}" >>"$dir/$name.log" 2>&1
  else
    "${cmd[@]}" >>"$dir/$name.log" 2>&1
  fi
  status=$?
  echo "$status" >"$dir/$name.exit"
  if ((status == 0)); then
    printf '%-7s %s\n' done "$name"
  else
    printf '%-7s %s\n' FAILED "$name (exit $status, see $dir/$name.log)"
  fi
}

# On Ctrl-C or kill, stop the GPU queues with their runs; rerunning the command resumes them.
pgids=()
stop() {
  ((${#pgids[@]})) && kill -TERM -- "${pgids[@]}" 2>/dev/null
  echo "sweep.sh: interrupted; rerun the same command to resume" >&2
  exit 130
}
trap stop INT TERM

echo "sweep $sweep: ${#names[@]} runs in $dir${gpus[*]:+ on GPUs ${gpus[*]}}"
if ((${#gpus[@]} == 0)); then
  for i in "${!names[@]}"; do run_one "$i" ""; done
else
  set -m  # each queue in its own process group, so that stop() can end it with its runs
  for g in "${!gpus[@]}"; do
    (trap - INT TERM; for ((i = g; i < ${#names[@]}; i += ${#gpus[@]})); do run_one "$i" "${gpus[g]}"; done) &
    pgids+=("-$!")
  done
  wait
  set +m
fi

failed=()
for name in "${names[@]}"; do
  if [[ ! -f $dir/$name/summary.json ]] || [[ -f $dir/$name.exit && $(<"$dir/$name.exit") != 0 ]]; then
    failed+=("$name")
  fi
done
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m evaluation.aggregate "$dir" --results "$results" ||
  { echo "sweep.sh: the aggregation failed" >&2; failed+=("(aggregation)"); }
if ((${#failed[@]})); then
  echo "sweep.sh: ${#failed[@]} failed: ${failed[*]}" >&2
  exit 1
fi
echo "sweep $sweep: all ${#names[@]} runs finished; tables in $results/$sweep.md"
