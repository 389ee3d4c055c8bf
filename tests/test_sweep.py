"""scripts/sweep.sh's planning: names, flags, skip, resume, failures, GPU queues.

PYTHON is a fake that records its arguments and makes the files a run would make.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SWEEP = REPO / "scripts" / "sweep.sh"
MAIN = str(REPO / "main_cityscapes.py")

FAKE_PYTHON = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({{"args": args, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}}) + "\\n")
if args[:2] == ["-m", "evaluation.aggregate"]:
    sys.exit(0)
run = Path(args[args.index("--resume") + 1]) if "--resume" in args else \\
    Path(args[args.index("--out") + 1]) / args[args.index("--name") + 1]
run.mkdir(parents=True, exist_ok=True)
(run / "config.json").write_text("{{}}")
if run.name in os.environ.get("FAKE_FAIL", "").split():
    print("error: boom")
    sys.exit(3)
(run / "summary.json").write_text("{{}}")
"""


@pytest.fixture
def sweep(tmp_path):
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "calls.jsonl"

    def run(*args, fail=""):
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        env.update(PYTHON=str(fake), FAKE_LOG=str(log), FAKE_FAIL=fail)
        done = subprocess.run([str(SWEEP), "--sweep", "s", "--runs", "runs", "--results", "res", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return done, calls

    return run


def test_plan_names_flags_and_aggregation(sweep, tmp_path):
    done, calls = sweep("--methods", "adam adam_with_adatask", "--weightings", "ew pcgrad", "--seeds", "0 1",
                        "--single-task", "--", "--epochs", "2", "--width-mult", "0.25")
    assert done.returncode == 0, done.stderr
    runs = [c["args"] for c in calls[:-1]]
    expected = []
    for seed in (0, 1):
        for method in ("adam", "adam_with_adatask"):
            for weighting in ("ew", "pcgrad"):
                expected.append([MAIN, "--method", method, "--weighting", weighting, "--seed", str(seed),
                                 "--out", "runs/s", "--name", f"{method}-{weighting}-s{seed}",
                                 "--epochs", "2", "--width-mult", "0.25"])
        for task in ("semantic", "depth"):
            expected.append([MAIN, "--method", "adam", "--weighting", "ew", "--seed", str(seed), "--tasks", task,
                             "--out", "runs/s", "--name", f"single-{task}-s{seed}",
                             "--epochs", "2", "--width-mult", "0.25"])
    assert runs == expected
    assert calls[-1]["args"] == ["-m", "evaluation.aggregate", "runs/s", "--results", "res"]
    assert all(c["gpu"] is None for c in calls)
    for name in ("adam-ew-s0", "single-depth-s1"):
        assert (tmp_path / "runs" / "s" / f"{name}.exit").read_text() == "0\n"
        assert "sweep.sh start" in (tmp_path / "runs" / "s" / f"{name}.log").read_text()


def test_skips_finished_runs_and_resumes_interrupted_ones(sweep, tmp_path):
    sweep_dir = tmp_path / "runs" / "s"
    (sweep_dir / "adam-ew-s0").mkdir(parents=True)
    (sweep_dir / "adam-ew-s0" / "summary.json").write_text("{}")
    (sweep_dir / "adam-ew-s1").mkdir()
    (sweep_dir / "adam-ew-s1" / "config.json").write_text("{}")
    done, calls = sweep("--methods", "adam", "--seeds", "0 1 2", "--", "--epochs", "2")
    assert done.returncode == 0, done.stderr
    assert [c["args"] for c in calls[:-1]] == [
        [MAIN, "--resume", "runs/s/adam-ew-s1", "--method", "adam", "--weighting", "ew", "--seed", "1",
         "--epochs", "2"],
        [MAIN, "--method", "adam", "--weighting", "ew", "--seed", "2", "--out", "runs/s", "--name", "adam-ew-s2",
         "--epochs", "2"]]
    assert "skip    adam-ew-s0 (finished)" in done.stdout
    # Everything finished: a second call only aggregates.
    done, calls = sweep("--methods", "adam", "--seeds", "0 1 2")
    assert done.returncode == 0 and len(calls) == 1


def test_a_failed_run_does_not_stop_the_others_but_fails_the_sweep(sweep, tmp_path):
    done, calls = sweep("--methods", "adam sgd", "--seeds", "0", fail="adam-ew-s0")
    assert done.returncode == 1
    assert [c["args"][-1] for c in calls[:-1]] == ["adam-ew-s0", "sgd-ew-s0"]
    assert calls[-1]["args"][:2] == ["-m", "evaluation.aggregate"]
    assert (tmp_path / "runs" / "s" / "adam-ew-s0.exit").read_text() == "3\n"
    assert "error: boom" in (tmp_path / "runs" / "s" / "adam-ew-s0.log").read_text()
    assert "1 failed: adam-ew-s0" in done.stderr
    # Rerunning resumes the failed run only.
    done, calls = sweep("--methods", "adam sgd", "--seeds", "0")
    assert done.returncode == 0
    assert calls[0]["args"] == [MAIN, "--resume", "runs/s/adam-ew-s0",
                                "--method", "adam", "--weighting", "ew", "--seed", "0"]
    assert (tmp_path / "runs" / "s" / "adam-ew-s0.exit").read_text() == "0\n"


def test_one_queue_per_gpu(sweep):
    done, calls = sweep("--methods", "adam", "--weightings", "ew pcgrad", "--seeds", "0 1 2", "--gpus", "3 5")
    assert done.returncode == 0, done.stderr
    gpu_of = {c["args"][c["args"].index("--name") + 1]: c["gpu"] for c in calls[:-1]}
    # Round-robin over the plan (seed by seed, then weighting).
    assert gpu_of == {"adam-ew-s0": "3", "adam-pcgrad-s0": "5", "adam-ew-s1": "3", "adam-pcgrad-s1": "5",
                      "adam-ew-s2": "3", "adam-pcgrad-s2": "5"}
    order = [c["args"][-1] for c in calls[:-1] if c["gpu"] == "3"]
    assert order == ["adam-ew-s0", "adam-ew-s1", "adam-ew-s2"]  # each queue in plan order
    assert calls[-1]["args"][:2] == ["-m", "evaluation.aggregate"]


@pytest.mark.parametrize("args, message", [
    (["--methods", "adam", "--", "--seed", "3"], "--seed is set by sweep.sh"),
    (["--methods", "adam", "--", "--name=x"], "--name=x is set by sweep.sh"),
    (["--seeds", "0"], "--methods is required"),
    (["--methods", "adam", "--seeds", "0 x"], "x is not a non-negative integer"),
    (["--methods", "adam", "--epochs", "2"], "unknown option --epochs"),
])
def test_bad_arguments(sweep, args, message):
    done, calls = sweep(*args)
    assert done.returncode == 2 and message in done.stderr and calls == []
