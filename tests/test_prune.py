"""Pruning (sweeps/prune.py) and the pruned run state (runfolder/state.py): the median rule
decided from a metrics.jsonl by hand; one run of a sweep stopped alone through each backend
(local SIGTERM, Slurm scancel, Ray cancel) exits cleanly and is marked pruned after it exited;
locally it shows as pruned in --status, is never aggregated, is skipped by a rerun, and once the
mark is removed resumes to an uninterrupted run's metrics; a tiny --prune median study prunes
its worst trial. Real runs of main_cityscapes.py on the tiny SynthCity, one thread each."""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import slurm_cluster
from ray_helpers import ray_env, require_ray

from evaluation.aggregate.collect import scan_sweep
from runfolder import state
from runfolder.files import pruned_file
from sweeps import local, plan, prune, runner, status

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

REPO = Path(__file__).resolve().parent.parent


def write_rows(run_dir, objectives, torn=False):
    run_dir.mkdir(parents=True)
    lines = [json.dumps({"epoch": epoch, "val_objective": value}) for epoch, value in enumerate(objectives)]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines + (['{"epoch": 9, "val_obj'] if torn else [])) + "\n")


def test_the_median_rule_prunes_a_trial_below_the_completed_trials_median_after_the_first_epoch(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=prune.make_pruner("median"))
    for curve in ([1.0, 0.8, 0.9], [1.0, 0.6, 0.7]):  # completed: the median at epoch 1 is (0.8 + 0.6) / 2 = 0.7
        study.add_trial(optuna.trial.create_trial(
            value=curve[-1], intermediate_values=dict(enumerate(curve)), params={},
            distributions={}))
    pruner = prune.Pruner(tmp_path, local, "median")
    write_rows(tmp_path / "worse", [0.1])  # epoch 0 is never judged, however bad
    worse = study.ask()
    assert pruner.decide(worse, tmp_path / "worse") is None
    (tmp_path / "worse" / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"epoch": e, "val_objective": v}) for e, v in [(0, 0.1), (1, 0.65)]) + '\n{"ep')
    assert pruner.decide(worse, tmp_path / "worse") == (1, 0.65)  # 0.65 < 0.7; the torn line is skipped
    write_rows(tmp_path / "better", [1.0, 0.75], torn=True)
    better = study.ask()
    assert pruner.decide(better, tmp_path / "better") is None  # 0.75 > 0.7
    assert study._storage.get_trial(worse._trial_id).intermediate_values == {0: 0.1, 1: 0.65}
    assert pruner.decide(better, tmp_path / "better") is None  # nothing new: nothing reported twice



def test_an_ended_batch_reports_its_last_epochs_and_stops_nothing(tmp_path):
    """A run that finished between two polls: its last epochs still reach the study, which the
    medians of later trials at those epochs need; judging it would stop a run that exited."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=prune.make_pruner("median"))
    for curve in ([1.0, 0.8, 0.9], [1.0, 0.6, 0.7]):
        study.add_trial(optuna.trial.create_trial(
            value=curve[-1], intermediate_values=dict(enumerate(curve)), params={}, distributions={}))
    write_rows(tmp_path / "trial-0002", [0.1, 0.2, 0.3])  # below the medians: would be pruned if judged
    trial = study.ask()
    active = [SimpleNamespace(trial=trial, run=plan.PlannedRun("trial-0002", ()), run_dir=tmp_path / "trial-0002")]
    prune.Pruner(tmp_path, local, "median")(active, ended=True)
    assert study._storage.get_trial(trial._trial_id).intermediate_values == {0: 0.1, 1: 0.2, 2: 0.3}
    assert not pruned_file(tmp_path, "trial-0002").exists()

def test_after_a_tuner_restart_the_epochs_the_study_holds_are_not_reported_again(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=prune.make_pruner("median"))
    trial = study.ask()
    trial.report(0.5, 0)  # by the tuner before the restart; the run went on to epoch 1
    write_rows(tmp_path / "trial-0000", [0.5, 0.6])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # optuna warns on a step reported twice
        assert prune.Pruner(tmp_path, local, "median").decide(trial, tmp_path / "trial-0000") is None
    assert study._storage.get_trial(trial._trial_id).intermediate_values == {0: 0.5, 1: 0.6}


def test_an_unknown_rule_is_refused_naming_the_flag():
    with pytest.raises(ValueError, match=r"--prune fast: unknown rule; expected one of median, hyperband"):
        prune.make_pruner("fast")
    assert prune.make_pruner(None) is None
    assert isinstance(prune.make_pruner("hyperband"), optuna.pruners.HyperbandPruner)


def flags(data, epochs):
    return ("--method", "adam", "--weighting", "ew", "--seed", "0", "--data-path", str(data), "--epochs", str(epochs),
            "--batch-size", "4", "--width-mult", "0.125", "--num-workers", "0", "--device", "cpu")


def rows_without_wall_clock(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def prune_after_first_checkpoint(sweep_dir, name, backend, record):
    """In a thread: once the run has its first checkpoint, prune it through the backend (the
    pruner's own stop, wait for exit and mark)."""
    run_dir = sweep_dir / name
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoint.pt").exists():
        if time.monotonic() > deadline:
            record["error"] = f"{run_dir} made no checkpoint"
            return
        time.sleep(0.02)
    try:
        prune.Pruner(sweep_dir, backend, "median").prune(name, 0, 0.5)
        record["marked"] = pruned_file(sweep_dir, name).exists()
    except (runner.BackendError, state.StillRunning, OSError) as e:  # reported by the test's assertion
        record["error"] = repr(e)


def local_options(jobs):
    return argparse.Namespace(python=sys.executable, threads=1, gpus=[], jobs=jobs, runs_per_gpu=1, gpus_per_run=1,
                              dry_run=False)


def test_a_local_run_stopped_alone_is_marked_pruned_after_it_exits_never_aggregated_and_resumes(
        tiny_synthcity, tmp_path, capsys):
    """"cut" repeats "kept" exactly; it is stopped by SIGTERM after its first epoch while "kept" goes
    on, and once resumed it ends with kept's metrics, as an uninterrupted run would."""
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    runs = [plan.PlannedRun("kept", flags(tiny_synthcity, 2)), plan.PlannedRun("cut", flags(tiny_synthcity, 2))]
    record = {}
    pruner = threading.Thread(target=prune_after_first_checkpoint, args=(sweep_dir, "cut", local, record))
    pruner.start()
    statuses = local.run(sweep_dir, runs, local_options(jobs=2))
    pruner.join(timeout=60)
    assert record == {"marked": True}, record
    out = capsys.readouterr().out
    assert statuses == {"kept": 0, "cut": 143}, out  # SIGTERM's clean stop
    assert "stopped cut (exit 143; stopped on its own)" in " ".join(out.split()) and "FAILED" not in out
    assert not (sweep_dir / "cut.exit").exists() and not (sweep_dir / "cut" / "summary.json").exists()
    assert (sweep_dir / "cut" / "checkpoint.pt").exists()
    assert state.run_state(sweep_dir, "cut").state == state.PRUNED
    assert "epoch 0, val_objective 0.5" in pruned_file(sweep_dir, "cut").read_text()

    plan.write_plan(sweep_dir, runs, "local", {}, {})
    report = status.report(sweep_dir)
    assert ": 2 runs: 1 finished, 0 running, 0 failed, 1 pruned, 0 pending" in report[0]
    cut_row = next(line for line in report if line.startswith("cut "))
    assert cut_row.split()[1] == "pruned" and "remove cut.pruned to resume" in cut_row
    finished, not_averaged = scan_sweep(sweep_dir)
    assert [run.path.name for run in finished] == ["kept"]
    assert [(row["run"], row["state"]) for row in not_averaged] == [
        ("cut", "pruned (stopped early by the tuner; unfinished)")]

    assert local.run(sweep_dir, runs, local_options(jobs=1)) == {"kept": 0, "cut": 0}  # a rerun leaves it alone
    assert "skip    cut (pruned; remove" in capsys.readouterr().out
    assert not (sweep_dir / "cut" / "summary.json").exists()
    pruned_file(sweep_dir, "cut").unlink()  # the documented way to resume a pruned run
    assert local.run(sweep_dir, runs, local_options(jobs=1)) == {"kept": 0, "cut": 0}
    assert " resume: " in (sweep_dir / "cut.log").read_text()
    assert rows_without_wall_clock(sweep_dir / "cut") == rows_without_wall_clock(sweep_dir / "kept")
    assert state.run_state(sweep_dir, "cut").state == state.FINISHED


def test_a_finished_or_running_run_is_never_marked_pruned(tmp_path):
    run_dir = tmp_path / "done"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text("{}")
    with pytest.raises(state.StillRunning, match="finished before it was stopped"):
        state.write_pruned(tmp_path, "done", "late")
    (tmp_path / "going").mkdir()
    (tmp_path / "going" / "lease.json").write_text(json.dumps({
        "host": os.uname().nodename, "pid": os.getpid(), "renewed": time.time(), "started": time.time()}))
    with pytest.raises(state.StillRunning, match="still owned by pid"):
        state.write_pruned(tmp_path, "going", "early")
    assert not any(tmp_path.glob("*.pruned"))


# ------------------------------------------------------------------ Slurm


@pytest.fixture(scope="module")
def cluster(request):
    if importlib.util.find_spec("submitit") is None:
        slurm_cluster.skip_unless_available("submitit is not installed (pip install -r requirements-cluster.txt)")
    return request.getfixturevalue("one_node_slurm")


def slurm_options(sweep, **changes):
    return argparse.Namespace(**{
        "sweep": sweep, "runs": "runs", "results": "results", "backend": "slurm", "python": sys.executable,
        "runs_per_gpu": 1, "gpus_per_run": 1, "threads": 1, "cpu_only": True, "slurm_partition": None,
        "slurm_time": 10, "slurm_mem": "500M", "slurm_cpus_per_run": 1, "slurm_array_parallelism": None,
        "slurm_packing": "shards", "dry_run": False, "wait": False, **changes})


def test_a_slurm_run_is_stopped_alone_by_scancel_and_marked_pruned(cluster, tiny_synthcity, tmp_path):
    from sweeps import slurm

    sweep_dir = tmp_path / "runs" / "tune"
    sweep_dir.mkdir(parents=True)
    runs = [plan.PlannedRun("cut", flags(tiny_synthcity, 2))]
    assert slurm.run(sweep_dir, runs, slurm_options("tune")) is None
    record = {}
    prune_after_first_checkpoint(sweep_dir, "cut", slurm, record)
    assert record == {"marked": True}, record
    assert state.run_state(sweep_dir, "cut").state == state.PRUNED
    assert not (sweep_dir / "cut" / "summary.json").exists() and (sweep_dir / "cut" / "checkpoint.pt").exists()
    deadline = time.monotonic() + 60
    while cluster.client("squeue", "--noheader", "--format=%i", "--name=sweep-tune").split():
        assert time.monotonic() < deadline, "the cancelled element leaves the queue within 60 s"
        time.sleep(0.2)
    assert slurm.stop(sweep_dir, "cut") is False  # nothing of it is queued any more
    # (resuming it to an uninterrupted run's metrics: the local test above; the backend does not matter)


# ------------------------------------------------------------------ Ray

# The sweep's driver: runs "cut" on a Ray of its own, and prunes it in a thread of the same
# process, which holds the task's reference.
RAY_DRIVER = """
import argparse, json, sys, threading, time
from pathlib import Path
from sweeps import prune, ray_backend
from sweeps.plan import PlannedRun
sweep_dir, flags = Path(sys.argv[1]), json.loads(sys.argv[2])
marked = []

def prune_after_first_checkpoint():
    while not (sweep_dir / "cut" / "checkpoint.pt").exists():
        time.sleep(0.02)
    prune.Pruner(sweep_dir, ray_backend, "median").prune("cut", 0, 0.5)
    marked.append((sweep_dir / "cut.pruned").exists())

thread = threading.Thread(target=prune_after_first_checkpoint, daemon=True)
thread.start()
opts = argparse.Namespace(python=sys.executable, threads=1, runs_per_gpu=1, gpus_per_run=1, cpus_per_run=1,
                          cpu_only=True, ray_address=None, dry_run=False)
statuses = ray_backend.run(sweep_dir, [PlannedRun("cut", tuple(flags))], opts)
thread.join(timeout=60)
print("RESULT", json.dumps({"statuses": statuses, "marked": marked}))
"""


def test_a_ray_run_is_stopped_alone_by_cancel_and_marked_pruned(tiny_synthcity, tmp_path):
    require_ray()
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    done = subprocess.run([sys.executable, "-c", RAY_DRIVER, str(sweep_dir), json.dumps(flags(tiny_synthcity, 2))],
                          env=ray_env(), cwd="/", capture_output=True, text=True, timeout=300,
                          start_new_session=True, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "RESULT " in done.stdout, out
    result = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result == {"statuses": {"cut": 143}, "marked": [True]}, out  # SIGTERM from its worker
    assert "stopped cut (its task was cancelled" in " ".join(out.split()) and "LOST" not in out
    assert state.run_state(sweep_dir, "cut").state == state.PRUNED and not (sweep_dir / "cut.exit").exists()
    assert (sweep_dir / "cut" / "checkpoint.pt").exists()  # resumable, as the local test shows


# ------------------------------------------------------------------ the tuner

TUNER = """
import sys
from sweeps import tune
tune.POLL_S = 0.5  # the trials' epochs last seconds here, not minutes
raise SystemExit(tune.main(sys.argv[1:]))
"""


def test_a_median_pruned_study_stops_the_trial_below_the_median_and_tells_it_pruned(tiny_synthcity, tmp_path):
    """Three trials of adam + ew, their lr set beforehand through Optuna's own enqueue_trial: two
    that learn (1e-2, 3e-3) run first, side by side, then one that barely moves (1e-6), which
    falls below their median at epoch 1 and is pruned, through the local backend, before its
    last epoch."""
    runs = tmp_path / "runs"
    sweep_dir = runs / "study"
    sweep_dir.mkdir(parents=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / 'study.db'}")
    study = optuna.create_study(storage=storage, study_name="tune", direction="maximize")
    for lr in (1e-2, 3e-3, 1e-6):
        study.enqueue_trial({"lr": lr})
    storage.engine.dispose()
    space = tmp_path / "space.toml"
    space.write_text('[all]\nlr = { type = "log", low = 1e-7, high = 1e-1 }\n')
    flags = ["--data-path", str(tiny_synthcity), "--epochs", "3", "--batch-size", "4", "--width-mult", "0.0625",
             "--num-workers", "0", "--device", "cpu", "--threads", "1", "--method", "adam", "--weighting", "ew",
             "--val-fraction", "0.25"]
    done = subprocess.run([sys.executable, "-c", TUNER, str(space), "--sweep", "study", "--runs", str(runs),
                           "--trials", "3", "--parallel", "2", "--prune", "median", "--", *flags],
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 trials finished (0 failed, 1 pruned)" in done.stdout, done.stdout

    storage = optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / 'study.db'}")
    try:
        trials = optuna.load_study(study_name="tune", storage=storage).trials
    finally:
        storage.engine.dispose()
    assert [(t.params["lr"], t.state.name) for t in trials] == [(1e-2, "COMPLETE"), (3e-3, "COMPLETE"),
                                                               (1e-6, "PRUNED")]
    pruned = trials[2]
    epoch = max(pruned.intermediate_values)
    assert epoch == 1  # judged after the first epoch, stopped before the last
    median = sum(t.intermediate_values[epoch] for t in trials[:2]) / 2  # the median of two
    assert pruned.intermediate_values[epoch] < median
    assert state.run_state(sweep_dir, "trial-0002").state == state.PRUNED
    assert not (sweep_dir / "trial-0002" / "summary.json").exists()
    assert (sweep_dir / "trial-0002" / "checkpoint.pt").exists()  # resumable
    assert f"--prune median: epoch {epoch}," in pruned_file(sweep_dir, "trial-0002").read_text()
    snapshot = json.loads((sweep_dir / "study.json").read_text())
    assert [t["state"] for t in snapshot["trials"]] == ["complete", "complete", "pruned"]


def test_the_mark_makes_a_stopped_run_pruned_not_failed_and_a_finished_run_stays_finished(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    state.write_exit(tmp_path, "run", 143)  # as a Slurm element writes it for a run that scancel stopped
    assert state.run_state(tmp_path, "run").state == state.FAILED
    state.write_pruned(tmp_path, "run", "--prune median: epoch 1, val_objective -0.1")
    assert state.run_state(tmp_path, "run").state == state.PRUNED
    assert state.read_pruned(tmp_path, "run") == "--prune median: epoch 1, val_objective -0.1"
    (tmp_path / "run" / "summary.json").write_text("{}")  # resumed to its end, with the mark left beside it
    assert state.run_state(tmp_path, "run").state == state.FINISHED
