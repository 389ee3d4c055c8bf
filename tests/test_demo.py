"""scripts/demo.py, the README's first command, on a tiny SynthCity: it writes into its own run
folder (never the committed results/), a Ctrl-C ends it with one line naming the command that
continues, and a rerun continues the runs instead of starting new ones."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

REPO = Path(__file__).resolve().parent.parent
TINY = ["--image-size", "32x64", "--synthcity-train", "16", "--synthcity-val", "8", "--width-mult", "0.125",
        "--batch-size", "4"]


def demo(out, *extra, **kwargs):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return subprocess.Popen([sys.executable, "-m", "scripts.demo", "--out", str(out), *TINY, *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)


def rows(run):
    """metrics.jsonl without the wall-clock field."""
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def test_the_demo_writes_its_table_into_its_own_folder_and_a_rerun_reuses_its_runs(tmp_path):
    committed = (REPO / "results" / "demo.md").read_bytes()
    proc = demo(tmp_path, "--epochs", "1")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    folder = tmp_path / "demo"
    table = (folder / "demo.md").read_text()
    for predictor in ("| adam |", "| adam_with_adatask |", "| trivial"):
        assert predictor in table
    assert (REPO / "results" / "demo.md").read_bytes() == committed
    assert "expected time: about" in out
    # every command it shows runs as shown, from the repository root
    started = [line.split(": starts: ")[1] for line in out.splitlines() if ": starts: " in line]
    assert len(started) == 2 and all(c.split()[1] == "main_cityscapes.py" for c in started)
    assert all(Path(REPO, c.split()[0]).exists() for c in started)
    for method in ("adam", "adam_with_adatask"):
        config = json.loads((folder / method / "config.json").read_text())
        assert config["environment"]["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)
    again = demo(tmp_path, "--epochs", "1")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "adam: finished" in out and "expected time" not in out  # nothing trained again


def test_ctrl_c_prints_one_line_and_a_rerun_continues_the_runs(tmp_path):
    folder = tmp_path / "demo"
    proc = demo(tmp_path, "--epochs", "3")
    try:
        deadline = time.monotonic() + 300
        while not any(rows(folder / m) for m in ("adam", "adam_with_adatask")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.strip()]
    command = line.split("continue with: ")[1]
    assert command.split()[1:4] == ["-m", "scripts.demo", "--out"]
    kept = {m: rows(folder / m) for m in ("adam", "adam_with_adatask")}
    assert 1 <= max(map(len, kept.values())) < 3
    for method in kept:  # the runs stopped cleanly too: one line each, with their own continue command
        log = (folder / f"{method}.log").read_text()
        assert "Traceback" not in log and "stopped by SIGINT" in log
    again = subprocess.run(command.split(), cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
                           env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})
    assert again.returncode == 0, again.stderr
    assert "resumes" in again.stdout
    for method, before in kept.items():  # continued, not started again: the epochs done are kept
        after = rows(folder / method)
        assert [r["epoch"] for r in after] == [0, 1, 2]
        assert after[:len(before)] == before


@pytest.mark.parametrize("cpus, expected", [(1, (1, 1)), (2, (2, 1)), (3, (2, 1)), (16, (2, 8))])
def test_thread_policy_gives_each_run_its_own_cores(cpus, expected):
    from scripts import demo as demo_script

    assert demo_script.thread_policy(cpus) == expected


def test_the_table_keeps_the_methods_order_and_gives_each_rows_difference_to_the_trivial_row():
    from scripts.demo import TRIVIAL_ROW, table

    trivial = {"miou": 0.05, "pix_acc": 0.37, "abs_err": 0.09, "rel_err": 1.2}
    worse_first = [("adam", {"miou": 0.20, "pix_acc": 0.60, "abs_err": 0.06, "rel_err": 0.5}),
                   ("adam_with_adatask", {"miou": 0.30, "pix_acc": 0.70, "abs_err": 0.05, "rel_err": 0.4})]
    lines = table(worse_first, trivial).splitlines()
    assert lines[0].endswith("| vs trivial: mIoU, PixAcc, AbsErr, RelErr |")
    assert lines[2] == "| adam | 0.2000 | 0.6000 | 0.0600 | 0.5000 | +0.1500, +0.2300, -0.0300, -0.7000 |"
    assert lines[3].startswith("| adam_with_adatask | 0.3000 |")  # not sorted by any metric
    assert lines[4] == f"| {TRIVIAL_ROW} | 0.0500 | 0.3700 | 0.0900 | 1.2000 | 0 |"
