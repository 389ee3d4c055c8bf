#!/usr/bin/env bash
# The committed CityScapes-3 demonstration (results/synthcity3-demo.*): semantic + instance +
# depth, {adam, adam_with_adatask} with equal weights x 3 seeds, plus one single-task baseline
# per task and seed, on the small SynthCity and eighth-width SegNet-MTAN of
# scripts/demo_sweep.sh. Rerunning resumes/skips. --results results: the committed tables.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/sweep.sh --sweep synthcity3-demo --methods "adam adam_with_adatask" --weightings ew \
    --seeds "0 1 2" --tasks "semantic instance depth" --single-task --results results -- \
    --dataset synthcity --image-size 64x128 --synthcity-train 256 --synthcity-val 128 \
    --width-mult 0.125 --epochs 5 --batch-size 8 --lr 1e-3 --num-workers 0 "$@"
