"""Run folders written by older versions (config.json schemas 1 to 5, tests/fixtures/run_folders/)
resume, aggregate with a run of today's and show in --status, each through its command line.

Per schema folder: adam_with_adatask + pcgrad seed 0, finished after 2 epochs, and adam + nash_mtl
seed 0, stopped in its second epoch (old_run_folders.FINISHED, UNFINISHED).
"""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from old_run_folders import FINISHED, FIXTURES, SCHEMAS, UNFINISHED, usable_copy

from sweeps import plan

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PLACE = ("--num-workers", "0", "--device", "cpu")  # where a run runs: free on resume
# The fixtures' flags besides data, seed and place (README.md there); a new run with them and
# seed 1 is the finished fixture's second seed.
# Settings whose default changed since the fixtures were made are given at their legacy values.
FLAGS = ("--epochs", "2", "--batch-size", "2", "--arch", "split", "--width-mult", "0.015625",
         "--method", "adam_with_adatask", "--weighting", "pcgrad", "--image-resampling", "opencv",
         "--pcgrad-shuffle", "torch", "--pcgrad-eps", "0")
NEW = "adam_with_adatask-pcgrad-s1"


def python(*args):
    """A command of this checkout in a process of its own, as a user runs it."""
    return subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
                          check=False)


def metrics_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The fixtures' data, copied once: SynthCity v1 (schemas 1-2) and v2 (the others)."""
    return tmp_path_factory.mktemp("old-run-data")


def resume(run_dir, *flags):
    done = python("main_cityscapes.py", "--resume", str(run_dir), *flags, *PLACE)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_finished_old_run_extends_by_an_epoch(schema, data_dir, tmp_path):
    run_dir = usable_copy(schema, FINISHED, tmp_path, data_dir)
    old_rows = metrics_rows(run_dir)
    resume(run_dir, "--epochs", "3")
    rows = metrics_rows(run_dir)
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert rows[:2] == old_rows  # the old epochs kept as the old version wrote them
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"] == rows[-1]["test"]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_unfinished_old_run_resumes_to_its_end(schema, data_dir, tmp_path):
    run_dir = usable_copy(schema, UNFINISHED, tmp_path, data_dir)
    old_rows = metrics_rows(run_dir)
    assert not (run_dir / "summary.json").exists() and len(old_rows) == 1
    resume(run_dir)
    rows = metrics_rows(run_dir)
    assert [row["epoch"] for row in rows] == [0, 1] and rows[0] == old_rows[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"] == rows[-1]["test"]


@pytest.fixture(scope="module")
def new_run(tmp_path_factory):
    """new_run(data root): today's run with the finished fixtures' flags and seed 1 on that data,
    made once per data root."""
    made, out = {}, tmp_path_factory.mktemp("new-runs")

    def run_on(data_root):
        if data_root not in made:
            run_dir = out / str(len(made)) / NEW
            done = python("main_cityscapes.py", "--data-path", data_root, *FLAGS, "--seed", "1", *PLACE,
                          "--out", str(run_dir.parent), "--name", NEW)
            assert done.returncode == 0, done.stderr[-2000:]
            made[data_root] = run_dir
        return made[data_root]
    return run_on


@pytest.mark.parametrize("schema", SCHEMAS)
def test_old_and_new_runs_of_one_setup_aggregate_into_one_row(schema, data_dir, new_run, tmp_path):
    """The finished fixture and today's run of its settings with seed 1 on the same data are one
    row; the unfinished fixture is listed as not averaged."""
    sweep_dir = tmp_path / schema
    finished = usable_copy(schema, FINISHED, sweep_dir, data_dir)
    usable_copy(schema, UNFINISHED, sweep_dir, data_dir)
    shutil.copytree(new_run(json.loads((finished / "config.json").read_text())["data"]["root"]), sweep_dir / NEW)
    done = python("-m", "evaluation.aggregate", str(sweep_dir))
    if schema == "schema1":  # it records no data identity: that both runs had the same data cannot be told
        assert done.returncode == 2 and "differ in settings that change results" in done.stderr
        assert "data_identity" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    with open(sweep_dir / "results" / f"{schema}.csv") as f:
        rows = list(csv.DictReader(f))
    # the fixtures' pcgrad is the one before issue 24: the row names its settings that differ from today's defaults
    legacy_pcgrad = "pcgrad (pcgrad_eps=0.0, pcgrad_shuffle=torch)"
    assert [(r["method"], r["weighting"], r["seeds"]) for r in rows] == [("adam_with_adatask", legacy_pcgrad, "0 1")]
    last10 = [json.loads((sweep_dir / name / "summary.json").read_text())["last10"]["miou"] for name in (FINISHED, NEW)]
    assert float(rows[0]["miou"]) == pytest.approx(sum(last10) / 2, rel=1e-12)
    table = (sweep_dir / "results" / f"{schema}.md").read_text()
    assert f"| {UNFINISHED} | unfinished (running or interrupted) | 1 |" in table


def test_status_lists_every_old_run(tmp_path):
    """One sweep folder holding the fixtures of every schema, as they were written (a sweep that
    was continued by newer versions), with the plan.json of scripts/sweep.sh: each run's state,
    epochs and last test metrics."""
    sweep_dir = tmp_path / "old-runs"
    runs = {f"{schema}-{run}": (schema, run) for schema in SCHEMAS for run in (FINISHED, UNFINISHED)}
    for name, (schema, run) in runs.items():
        shutil.copytree(FIXTURES / schema / run, sweep_dir / name)
    plan.write_plan(sweep_dir, [plan.PlannedRun(name, ()) for name in runs], "local")
    done = python("-m", "sweeps", "--status", "--runs", str(tmp_path), "--sweep", sweep_dir.name)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"sweep old-runs ({sweep_dir}): 12 runs: 6 finished, 0 running, 0 failed, 6 pending"
    metrics = lines[1].split()[3:]  # after run, state, epoch
    assert {"miou", "pix_acc", "abs_err", "rel_err"} <= set(metrics)
    for line, (name, (schema, run)) in zip(lines[2:], runs.items(), strict=True):
        last = metrics_rows(FIXTURES / schema / run)[-1]["test"]
        shown = dict(zip(metrics, line.split()[3:]))
        if run == FINISHED:
            assert line.split()[:3] == [name, "finished", "2/2"]
        else:
            assert line.split()[:3] == [name, "pending", "1/2"] and line.endswith("stopped; resumes")
        assert {key: shown[key] for key in ("miou", "pix_acc", "abs_err", "rel_err")} == {
            key: f"{last[key]:.4f}" for key in ("miou", "pix_acc", "abs_err", "rel_err")}
