"""Read-only places give one line and exit 74 (a write failed), never a traceback: a run folder
resumed, a sweep aggregated, and the sweeps' --runs folder. A read-only bind mount needs root
(CI runs as root: there the test must run)."""
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def can_mount():
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextmanager
def read_only(folder, where):
    """`folder` seen read-only at `where` (a read-only bind mount), unmounted even when the test fails."""
    where.mkdir()
    subprocess.run(["mount", "--bind", str(folder), str(where)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def python(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=ENV, capture_output=True, text=True,
                          check=False, timeout=300)


@pytest.mark.skipif(not can_mount() and os.environ.get("CI") != "true",
                    reason="a read-only bind mount needs root (and mount)")
def test_read_only_places_give_one_line_and_exit_74(tiny_synthcity, tmp_path):
    made = tmp_path / "made"
    done = python("main_cityscapes.py", "--data-path", tiny_synthcity, "--epochs", "1", "--batch-size", "4",
                  "--width-mult", "0.0625", "--num-workers", "0", "--device", "cpu", "--out", made / "sweep",
                  "--name", "adam-ew-s0")
    assert done.returncode == 0, done.stderr
    shutil.copytree(made / "sweep" / "adam-ew-s0", made / "run")
    (made / "run" / "summary.json").unlink()
    with read_only(made, tmp_path / "ro") as ro:
        resumed = python("main_cityscapes.py", "--resume", ro / "run", "--epochs", "2")
        tables = python("-m", "evaluation.aggregate", ro / "sweep")
        sweep = python("-m", "sweeps", "--sweep", "s", "--runs", ro / "runs", "--methods", "adam", "--", "--epochs", "1")
    assert resumed.returncode == 74 and "Traceback" not in resumed.stderr
    assert f"--resume {ro / 'run'}: cannot own the run folder, {ro / 'run' / '.lock'}: Read-only file system" \
        in resumed.stderr and "continue with: " in resumed.stderr
    assert tables.returncode == 74 and "Traceback" not in tables.stderr
    assert f"cannot write the tables to {ro / 'sweep' / 'results'}: Read-only file system" in tables.stderr
    assert sweep.returncode == 74 and "Traceback" not in sweep.stderr
    assert f"cannot make or own the sweep folder {ro / 'runs' / 's'}" in sweep.stderr
