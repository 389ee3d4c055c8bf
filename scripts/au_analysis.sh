#!/usr/bin/env bash
# The task-dominance analysis of results/au_synthcity.{png,md} (docs/methods.md, "AU and rAU"; the AdaTask
# paper's AU/rAU figure): full-size SegNet-MTAN on the default SynthCity (128x256), plain
# adam against adam_with_adatask, --track-au, the reference lr and batch; extra flags go
# to both runs (e.g. --device cuda). A few minutes on one GPU; far too slow for a 2-core CPU.
set -euo pipefail
source "$(dirname "$0")/repo_python.sh"
cd "$REPO"
out=${AU_RUNS:-runs/au-analysis}
for method in adam adam_with_adatask; do
  [[ -f $out/$method/summary.json ]] && continue
  "$PY" main_cityscapes.py --method="$method" --name "$method" --out "$out" --dataset synthcity \
      --epochs 12 --batch-size 8 --lr 1e-4 --seed 0 --track-au --num-workers 4 "$@"
done
"$PY" -m scripts.plot_au "$out/adam" "$out/adam_with_adatask" --out results/au_synthcity.png \
    --table results/au_synthcity.md
