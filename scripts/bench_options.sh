#!/usr/bin/env bash
# Epoch time of --amp, --channels-last and --compile against the default, full-size
# SegNet-MTAN on the default SynthCity with adam_with_adatask (meant for a GPU; extra flags
# go to every run). Prints a table of the steady (last) epoch's seconds and test metrics.
set -euo pipefail
source "$(dirname "$0")/repo_python.sh"
cd "$REPO"
out=${OPTIONS_RUNS:-runs/options-bench}
configs=("default" "--amp" "--channels-last" "--amp --channels-last" "--compile")
for i in "${!configs[@]}"; do
  flags=${configs[$i]}; [[ $flags == default ]] && flags=""
  [[ -f $out/c$i/summary.json ]] || "$PY" main_cityscapes.py --method=adam_with_adatask --dataset synthcity \
      --epochs 3 --batch-size 8 --seed 0 --num-workers 4 --out "$out" --name "c$i" $flags "$@" >/dev/null 2>&1
done
"$PY" - "$out" "${configs[@]}" <<'PY'
import json, sys
out, configs = sys.argv[1], sys.argv[2:]
print("| options | first epoch s | last epoch s | × default | test mIoU | test abs_err |")
print("|---|---|---|---|---|---|")
rows = [[json.loads(l) for l in open(f"{out}/c{i}/metrics.jsonl")] for i in range(len(configs))]
base = rows[0][-1]["seconds"]
for name, r in zip(configs, rows):
    print(f"| {name} | {r[0]['seconds']:.1f} | {r[-1]['seconds']:.1f} | {r[-1]['seconds'] / base:.2f} "
          f"| {r[-1]['test']['miou']:.4f} | {r[-1]['test']['abs_err']:.4f} |")
PY
