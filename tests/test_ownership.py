"""One process owns a run folder: two starts together never mix, and kill -9 at any moment
leaves a run that resumes to exactly the uninterrupted result."""
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data import synthcity

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

REPO = Path(__file__).resolve().parent.parent
EPOCHS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthcity.generate(tmp_path_factory.mktemp("own") / "d", n_train=24, n_val=8, height=32, width=64,
                              seed=6, progress=False)


def argv(data, out, name, *extra):
    return ["--data-path", str(data), "--epochs", str(EPOCHS), "--batch-size", "4", "--width-mult", "0.125",
            "--num-workers", "0", "--device", "cpu", "--seed", "1", "--out", str(out), "--name", name, *extra]


def popen(args):
    """A run in its own process, with one thread: the references run the same way, since the
    thread count changes the order of float sums."""
    return subprocess.Popen([sys.executable, str(REPO / "main_cityscapes.py"), *args], cwd=REPO,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def uninterrupted(args):
    proc = popen(args)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()


def rows(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """Uninterrupted runs at both learning rates."""
    out = tmp_path_factory.mktemp("reference")
    for lr in ("1e-4", "1e-3"):
        uninterrupted(argv(data, out, lr, "--lr", lr))
    return {lr: rows(out / lr) for lr in ("1e-4", "1e-3")}


@pytest.mark.parametrize("attempt", range(3))
def test_two_starts_of_one_run_folder_at_once_never_mix(data, tmp_path, reference, attempt):
    procs = {lr: popen(argv(data, tmp_path, "run", "--lr", lr)) for lr in ("1e-4", "1e-3")}
    results = {lr: (p.wait(timeout=300), p.stderr.read()) for lr, p in procs.items()}
    codes = sorted(code for code, _ in results.values())
    assert codes[0] == 0 and codes[1] in (2, 75), results
    [(winner, _)] = [(lr, err) for lr, (code, err) in results.items() if code == 0]
    [(code, err)] = [result for lr, result in results.items() if lr != winner]
    assert "Traceback" not in err
    if code == 75:
        assert "is owned by another process" in err and "pid" in err
    else:
        assert "holds a" in err  # it came after the winner had made the folder its own run
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["lr"] == float(winner)
    assert rows(run) == reference[winner]  # one row per epoch, all of the winner's


def test_kill_9_at_random_moments_then_rerun_equals_the_uninterrupted_run(data, tmp_path):
    """Six kills at random moments (start-up, training, checkpointing), each followed by what a
    sweep does: --resume once config.json exists, else the first command again."""
    many = ["--epochs", "8", "--lr", "1e-3"]
    uninterrupted(argv(data, tmp_path, "reference", *many))
    rng = random.Random(0)
    run = tmp_path / "run"
    kills = 0
    while not (run / "summary.json").exists():
        proc = popen(["--resume", str(run)] if (run / "config.json").exists() else argv(data, tmp_path, "run", *many))
        if kills < 6:
            time.sleep(rng.uniform(0.3, 4.0))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                kills += 1
                continue
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert kills == 6, "the run finished before it was killed six times"
    assert rows(run) == rows(tmp_path / "reference")
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))
