"""scripts/bench_distributed.py at a tiny width: one process and a real 2-process torchrun.
No timing is asserted (the machine is shared); the bytes are: AdaTask sends the shared
parameters' gradients once more than a plain optimizer (K = 2), and nothing else differs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models import build_model
from tasks import TaskSettings, build_tasks

# the test builds a model, which draws from the global RNG
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("seeded_and_restored")]

REPO = Path(__file__).resolve().parent.parent
WIDTH = 0.0625


def test_bench_distributed_tiny():
    done = subprocess.run([sys.executable, "-m", "scripts.bench_distributed", "--width-mult", str(WIDTH),
                           "--steps", "1"],
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")][2:]
    rows = {cells[0]: [float(c) for c in cells[1:-1]] + [cells[-1]]
            for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}
    assert list(rows) == ["adam + ew", "adam_with_adatask + ew", "adam_with_adatask + pcgrad"]
    for one, two, calls, megabytes, seconds, share in rows.values():
        assert one > 0 and two > 0 and calls > 0 and megabytes > 0 and seconds > 0 and share.endswith("%")
    shared = build_model("mtan", build_tasks(["semantic", "depth"], TaskSettings()), WIDTH).parameter_counts()["shared"]
    extra = rows["adam_with_adatask + ew"][3] - rows["adam + ew"][3]
    assert abs(extra - 4 * shared / 1e6) < 0.011
    assert rows["adam_with_adatask + pcgrad"][2:4] == rows["adam_with_adatask + ew"][2:4]
