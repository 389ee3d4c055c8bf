#!/usr/bin/env bash
# The committed demonstration (results/synthcity-demo.*): {adam, adam_with_adatask} x
# {ew, pcgrad, gdod, hydalearn} x 3 seeds plus single-task baselines, on a small SynthCity
# with an eighth-width SegNet-MTAN; two runs at a time, one torch thread each (the last digits of the
# metrics depend on the thread count). Rerunning resumes/skips.
# --results results: the committed tables (a sweep's default is its own runs/<sweep>/results/).
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/sweep.sh --sweep synthcity-demo --methods "adam adam_with_adatask" \
    --weightings "ew pcgrad gdod hydalearn" --seeds "0 1 2" --single-task --results results --jobs 2 -- \
    --dataset synthcity --image-size 64x128 --synthcity-train 256 --synthcity-val 128 \
    --width-mult 0.125 --epochs 5 --batch-size 8 --lr 1e-3 --num-workers 0 "$@"
