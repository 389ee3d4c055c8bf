#!/usr/bin/env bash
# Wheels of what the repository needs beyond torch, for a machine that has its own Python and
# torch but no package registry (the lent GPU machine; docs/gpu_report.md):
#
#   scripts/gpu_wheels.sh [PYTHON_VERSION]     e.g. 3.12: the device's `python -c 'import sys; print(sys.version[:4])'`
#
# wheels/        tqdm, cityscapesscripts, torchjd (pure Python) and opencv-python-headless (cv2:
#                SynthCity and the augmentation), about 59 MiB
# wheels-numpy/  numpy, about 16 MiB: only for a device without numpy
# Both folders are ignored by git. The device tool carries 64 MiB in all per call, so numpy,
# when needed, goes in a call of its own before (a warm machine keeps what was installed).
# Versions are requirements.txt's; binary wheels are for PYTHON_VERSION on manylinux x86_64
# (default: this Python's version). torchjd comes without its optional solvers (cvxpy,
# quadprog), which only some --weighting methods need; the GPU report needs none of them.
set -euo pipefail
source "$(dirname "$0")/repo_python.sh"
cd "$REPO"
pyver=${1:-$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
pin() {  # NAME==VERSION as requirements.txt pins it, extras dropped
  grep -E "^$1(\[[^]]*\])?==" requirements.txt | sed -E 's/\[[^]]*\]//'
}
binary() {  # folder, packages: wheels for the device's Python on manylinux x86_64
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$1" --python-version "$pyver" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "${@:2}"
}
mkdir -p wheels wheels-numpy
binary wheels "$(pin opencv-python-headless)"
"$PY" -m pip download --quiet --no-deps --dest wheels "$(pin tqdm)" "$(pin cityscapesscripts)" "$(pin torchjd)"
binary wheels-numpy "$(pin numpy)"
for folder in wheels wheels-numpy; do
  echo "$folder/ ($(du -sm "$folder" | cut -f1) MiB, Python $pyver):"
  ls -1 "$folder" | sed 's/^/  /'
done
cat <<EOF
on the device (carry wheels, and wheels-numpy in an earlier call if its Python has no numpy):
  python -c 'import numpy' 2>/dev/null || python -m pip install --no-index --find-links wheels-numpy numpy
  python -m pip install --no-index --no-deps --find-links wheels tqdm opencv-python-headless cityscapesscripts torchjd
EOF
