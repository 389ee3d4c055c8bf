"""scripts/sweep.sh (python -m sweeps) on the local backend: the plan and its names, plan.json,
skip and resume, failures, slots on GPUs and CPUs, runs of several processes (torchrun), runs
owned elsewhere, interrupts, a killed sweep's runs, and --status.

Most tests give the runs a fake interpreter (--python) that records its arguments and makes the
files a run would make; the launcher itself runs on the real one. A few run main_cityscapes.py
for real: tiny, on the CPU, one thread.
"""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from evaluation.summary import summarize
from runfolder import exit_codes, lease
from runfolder.files import LEASE
from sweeps import cli, plan, runner

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

REPO = Path(__file__).resolve().parent.parent
SWEEP = REPO / "scripts" / "sweep.sh"
MAIN = str(REPO / "main_cityscapes.py")
# The launcher's interpreter where the repository has no .venv (sweep.sh prefers it).
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "MTL_PARENT_PID")}
BASE_ENV.update(PYTHON=sys.executable, OMP_NUM_THREADS="1")

FAKE_PYTHON = f"""#!{sys.executable}
import json, os, sys, time
from pathlib import Path
args, start = sys.argv[1:], time.time()
def log(**fields):
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({{"args": args, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                            "parent_env": os.environ.get("MTL_PARENT_PID"), "ppid": os.getppid(),
                            "start": start, **fields}}) + "\\n")
if args[:2] == ["-m", "evaluation.aggregate"]:
    log()
    sys.exit(0)
run = Path(args[args.index("--resume") + 1]) if "--resume" in args else \\
    Path(args[args.index("--out") + 1]) / args[args.index("--name") + 1]
log(plan=(run.parent / "plan.json").exists())
if run.name in os.environ.get("FAKE_BUSY", "").split():
    print(f"error: {{run}} is owned by another process (node-b pid 4242, lease renewed 3 s ago)")
    sys.exit(1 if args[:2] == ["-m", "torch.distributed.run"] else 75)  # torchrun: any failure is 1
run.mkdir(parents=True, exist_ok=True)
(run / "config.json").write_text("{{}}")
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
if run.name in os.environ.get("FAKE_FAIL", "").split():
    print("error: boom")
    sys.exit(3)
(run / "summary.json").write_text("{{}}")
log(end=time.time())
"""


@pytest.fixture
def fake_env(tmp_path):
    """The environment of a sweep whose runs' interpreter is the fake; it logs its calls to FAKE_LOG."""
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return {**BASE_ENV, "FAKE_LOG": str(tmp_path / "calls.jsonl"), "FAKE": str(fake)}


def read_calls(log):
    """The fake's calls, one per start (its end time merged in once it ended)."""
    calls = []
    for line in log.read_text().splitlines() if log.exists() else []:
        call = json.loads(line)
        if "end" in call:
            next(c for c in calls if c["args"] == call["args"] and c["start"] == call["start"])["end"] = call["end"]
        else:
            calls.append(call)
    return calls


def sweep_command(fake_env, *args):
    return [str(SWEEP), "--sweep", "s", "--runs", "runs", "--results", "res", "--python", fake_env["FAKE"], *args]


@pytest.fixture
def sweep(tmp_path, fake_env):
    """sweep(*args) runs the sweep to its end: (the finished process, the fake's calls)."""
    log = Path(fake_env["FAKE_LOG"])

    def run(*args, fail="", busy="", sleep="0"):
        env = {**fake_env, "FAKE_FAIL": fail, "FAKE_BUSY": busy, "FAKE_SLEEP": sleep}
        done = subprocess.run(sweep_command(fake_env, *args), check=False, cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        calls = read_calls(log)
        log.unlink(missing_ok=True)
        return done, calls

    return run


def name_of(call):
    args = call["args"]
    return Path(args[args.index("--resume") + 1]).name if "--resume" in args else args[args.index("--name") + 1]


def most_at_once(calls, key=lambda call: None):
    """The most runs that overlapped in time, per value of key (all runs: one key)."""
    most = {}
    for call in calls:
        k = key(call)
        at_once = sum(1 for c in calls if key(c) == k and c["start"] <= call["start"] < c["end"])
        most[k] = max(most.get(k, 0), at_once)
    return most


def test_plan_names_flags_plan_json_and_aggregation(sweep, tmp_path):
    done, calls = sweep("--methods", "adam adam_with_adatask", "--weightings", "ew pcgrad", "--seeds", "0 1",
                        "--single-task", "--", "--epochs", "2", "--width-mult", "0.25")
    assert done.returncode == 0, done.stderr
    sweep_dir = str(tmp_path / "runs" / "s")
    expected = []
    for seed in (0, 1):
        for method in ("adam", "adam_with_adatask"):
            for weighting in ("ew", "pcgrad"):
                expected.append((f"{method}-{weighting}-s{seed}",
                                 ["--method", method, "--weighting", weighting, "--seed", str(seed)]))
        for task in ("semantic", "depth"):
            expected.append((f"single-{task}-s{seed}",
                             ["--method", "adam", "--weighting", "ew", "--seed", str(seed), "--tasks", task]))
    extra = ["--epochs", "2", "--width-mult", "0.25"]
    assert [c["args"] for c in calls[:-1]] == [[MAIN, *own, *extra, "--out", sweep_dir, "--name", name]
                                               for name, own in expected]
    assert all(c["plan"] for c in calls[:-1])  # written before the first run started
    written = json.loads((tmp_path / "runs" / "s" / "plan.json").read_text())
    assert [(r["name"], r["flags"]) for r in written["runs"]] == [(name, own + extra) for name, own in expected]
    assert written["backend"] == "local" and written["options"]["jobs"] == 1
    assert plan.read_plan(sweep_dir)[0] == plan.PlannedRun("adam-ew-s0", tuple(expected[0][1] + extra))
    assert calls[-1]["args"] == ["-m", "evaluation.aggregate", sweep_dir, "--results", "res"]
    assert all(c["gpu"] is None for c in calls)
    for name in ("adam-ew-s0", "single-depth-s1"):
        assert (tmp_path / "runs" / "s" / f"{name}.exit").read_text() == "0\n"
        assert "start: " in (tmp_path / "runs" / "s" / f"{name}.log").read_text()
    assert "sweep s: all 12 runs finished; tables in res/s.md" in done.stdout


def test_without_results_the_tables_go_into_the_sweeps_own_folder(fake_env, tmp_path):
    """The checkout's results/ holds only what the committed demonstrations write (--results results)."""
    command = [a for a in sweep_command(fake_env, "--methods", "adam", "--seeds", "0") if a not in ("--results", "res")]
    done = subprocess.run(command, check=False, cwd=tmp_path, env=fake_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sweep_dir = tmp_path / "runs" / "s"
    aggregation = read_calls(Path(fake_env["FAKE_LOG"]))[-1]["args"]
    assert aggregation == ["-m", "evaluation.aggregate", str(sweep_dir), "--results", str(sweep_dir / "results")]
    assert f"tables in {sweep_dir / 'results' / 's.md'}" in done.stdout


@pytest.mark.parametrize("given, results", [((), "{sweep}/results"), (("--results", "res"), "res")])
def test_a_submitted_sweep_names_the_command_of_its_tables(tmp_path, capsys, given, results):
    args, run_flags = cli.parse(cli.build_parser(), ["--sweep", "s", "--methods", "adam", *given])
    sweep_dir = tmp_path / "runs" / "s"
    submitted = SimpleNamespace(run=lambda sweep_dir, runs, opts: None)  # a cluster backend without --wait
    assert cli.sweep(sweep_dir, plan.build_plan(["adam"]), cli.backend_options(args, run_flags), submitted,
                     plan.defined_by(run_flags, None)) == 0
    expected = f"python -m evaluation.aggregate {sweep_dir} --results {results.format(sweep=sweep_dir)}"
    assert f"tables once every run has ended:\n{expected}\n" in capsys.readouterr().out


@pytest.mark.parametrize("tasks, singles", [("semantic depth", ["semantic", "depth"]), ("depth", ["depth"]),
                                           ("depth instance semantic", ["semantic", "instance", "depth"])])
def test_a_task_list_goes_to_every_run_and_single_task_baselines_follow_it(sweep, tasks, singles):
    done, calls = sweep("--methods", "adam", "--seeds", "0", "--tasks", tasks, "--single-task")
    assert done.returncode == 0, done.stderr
    assert {name_of(c): c["args"][1:c["args"].index("--out")] for c in calls[:-1]} == {
        "adam-ew-s0": ["--method", "adam", "--weighting", "ew", "--seed", "0", "--tasks", *tasks.split()],
        **{f"single-{task}-s0": ["--method", "adam", "--weighting", "ew", "--seed", "0", "--tasks", task]
           for task in singles}}


def test_skips_finished_runs_and_resumes_interrupted_ones(sweep, tmp_path):
    sweep_dir = tmp_path / "runs" / "s"
    (sweep_dir / "adam-ew-s0").mkdir(parents=True)
    (sweep_dir / "adam-ew-s0" / "summary.json").write_text("{}")
    (sweep_dir / "adam-ew-s1").mkdir()
    (sweep_dir / "adam-ew-s1" / "config.json").write_text("{}")
    done, calls = sweep("--methods", "adam", "--seeds", "0 1 2", "--", "--epochs", "2")
    assert done.returncode == 0, done.stderr
    assert [c["args"] for c in calls[:-1]] == [
        [MAIN, "--resume", str(sweep_dir / "adam-ew-s1"), "--method", "adam", "--weighting", "ew", "--seed", "1",
         "--epochs", "2"],
        [MAIN, "--method", "adam", "--weighting", "ew", "--seed", "2", "--epochs", "2", "--out", str(sweep_dir),
         "--name", "adam-ew-s2"]]
    assert "skip    adam-ew-s0 (finished)" in done.stdout
    # Everything finished: a second call only aggregates.
    done, calls = sweep("--methods", "adam", "--seeds", "0 1 2", "--", "--epochs", "2")
    assert done.returncode == 0 and len(calls) == 1


@pytest.mark.parametrize("finished", [True, False])
def test_a_rerun_with_other_flags_is_refused_before_anything_starts(sweep, tmp_path, finished):
    """It reported success with the old results (finished), or started every run to fail (not)."""
    done, _ = sweep("--methods", "adam", "--seeds", "0 1", "--", "--epochs", "2", "--lr", "1e-4",
                    fail="" if finished else "adam-ew-s0 adam-ew-s1")
    plan_json = (tmp_path / "runs" / "s" / "plan.json").read_text()
    done, calls = sweep("--methods", "adam", "--seeds", "0 1", "--", "--epochs", "2", "--lr", "3e-3")
    assert done.returncode == 2 and calls == []
    assert "  --lr: '1e-4' in plan.json, '3e-3' now (all 2 runs)" in done.stderr
    assert (tmp_path / "runs" / "s" / "plan.json").read_text() == plan_json
    done, calls = sweep("--methods", "adam", "--seeds", "0 1", "--tasks", "semantic depth", "--", "--epochs", "2",
                        "--lr", "1e-4")
    assert done.returncode == 2 and "--tasks: absent in plan.json, 'semantic depth' now" in done.stderr


def test_a_rerun_that_plans_other_runs_needs_extend_which_adds_them_only(sweep, tmp_path):
    flags = ("--", "--epochs", "2")
    assert sweep("--methods", "adam", "--seeds", "0 1", *flags)[0].returncode == 0
    done, calls = sweep("--methods", "adam", "--seeds", "0 1 2", *flags)
    assert done.returncode == 2 and calls == [] and "new: adam-ew-s2" in done.stderr and "--extend" in done.stderr
    done, calls = sweep("--methods", "adam", "--seeds", "0", *flags)
    assert done.returncode == 2 and "not in this command: adam-ew-s1" in done.stderr
    done, calls = sweep("--extend", "--methods", "adam_with_adatask", "--seeds", "0", "--", "--epochs", "3")
    assert done.returncode == 2 and "--epochs: '2' in plan.json, '3' now" in done.stderr
    done, calls = sweep("--extend", "--methods", "adam_with_adatask", "--seeds", "0", *flags)
    assert done.returncode == 0, done.stderr
    assert [name_of(c) for c in calls[:-1]] == ["adam_with_adatask-ew-s0"]  # adam's runs finished: skipped
    written = json.loads((tmp_path / "runs" / "s" / "plan.json").read_text())
    assert [r["name"] for r in written["runs"]] == ["adam-ew-s0", "adam-ew-s1", "adam_with_adatask-ew-s0"]
    assert sweep("--methods", "adam adam_with_adatask", "--seeds", "0", "--extend", *flags)[0].returncode == 0


def test_a_failed_run_does_not_stop_the_others_but_fails_the_sweep(sweep, tmp_path):
    done, calls = sweep("--methods", "adam sgd", "--seeds", "0", fail="adam-ew-s0")
    assert done.returncode == 1
    assert [name_of(c) for c in calls[:-1]] == ["adam-ew-s0", "sgd-ew-s0"]
    assert calls[-1]["args"][:2] == ["-m", "evaluation.aggregate"]
    assert (tmp_path / "runs" / "s" / "adam-ew-s0.exit").read_text() == "3\n"
    assert "error: boom" in (tmp_path / "runs" / "s" / "adam-ew-s0.log").read_text()
    assert "FAILED  adam-ew-s0 (exit 3" in done.stdout
    assert "1 failed: adam-ew-s0" in done.stderr
    # Rerunning resumes the failed run only.
    done, calls = sweep("--methods", "adam sgd", "--seeds", "0")
    assert done.returncode == 0
    assert calls[0]["args"] == [MAIN, "--resume", str(tmp_path / "runs" / "s" / "adam-ew-s0"),
                                "--method", "adam", "--weighting", "ew", "--seed", "0"]
    assert (tmp_path / "runs" / "s" / "adam-ew-s0.exit").read_text() == "0\n"


@pytest.mark.parametrize("per_gpu", [1, 2])
def test_runs_per_gpu_share_each_gpu_k_at_a_time(sweep, per_gpu):
    done, calls = sweep("--methods", "adam", "--weightings", "ew pcgrad", "--seeds", "0 1 2", "--gpus", "3 5",
                        "--runs-per-gpu", str(per_gpu), sleep="1")
    assert done.returncode == 0, done.stderr
    runs = calls[:-1]
    assert len(runs) == 6 and {c["gpu"] for c in runs} == {"3", "5"}  # the next run takes the slot freed first
    assert most_at_once(runs, key=lambda c: c["gpu"]) == {"3": per_gpu, "5": per_gpu}
    slots = 2 * per_gpu
    first = ["adam-ew-s0", "adam-pcgrad-s0", "adam-ew-s1", "adam-pcgrad-s1"][:slots]
    started = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("start ")]
    assert sorted(started[:slots]) == sorted(first)  # dealt in plan order
    threads = ["--threads", "1"] if slots > 1 else []  # runs that share the CPU get one thread each
    assert all(c["args"][c["args"].index("--out") - len(threads):c["args"].index("--out")] == threads for c in runs)
    assert f"local: {slots} runs at a time, {per_gpu} per GPU on GPUs 3 5" in done.stdout


def test_jobs_run_side_by_side_on_the_cpu_with_no_gpu_asked_for(sweep, tmp_path):
    done, calls = sweep("--methods", "adam sgd", "--seeds", "0 1", "--jobs", "2", "--", "--device", "cpu", sleep="1")
    assert done.returncode == 0, done.stderr
    assert most_at_once(calls[:-1]) == {None: 2}
    assert all(c["gpu"] is None for c in calls)
    assert all("--threads" in c["args"] for c in calls[:-1])
    options = json.loads((tmp_path / "runs" / "s" / "plan.json").read_text())["options"]
    assert options["cpu_only"] is True and options["threads"] == 1 and options["gpus"] == []
    # One at a time by default, with torch's own thread count.
    done, calls = sweep("--sweep", "s2", "--methods", "adam sgd", "--seeds", "2", sleep="0.2")
    assert most_at_once(calls[:-1]) == {None: 1} and not any("--threads" in c["args"] for c in calls)


TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]


def test_a_run_of_several_processes_is_one_torchrun_when_started_and_when_resumed(tmp_path):
    run = plan.PlannedRun("adam-ew-s0", ("--method", "adam", "--weighting", "ew", "--seed", "0", "--epochs", "2"))
    assert runner.command(tmp_path, run, "py", 1, processes=2) == ("start", [
        "py", *TORCHRUN, "2", MAIN, "--method", "adam", "--weighting", "ew", "--seed", "0", "--epochs", "2",
        "--threads", "1", "--out", str(tmp_path), "--name", "adam-ew-s0"])
    (tmp_path / "adam-ew-s0").mkdir()
    (tmp_path / "adam-ew-s0" / "config.json").write_text("{}")
    assert runner.command(tmp_path, run, "py", None, processes=2) == ("resume", [
        "py", *TORCHRUN, "2", MAIN, "--resume", str(tmp_path / "adam-ew-s0"), "--method", "adam", "--weighting",
        "ew", "--seed", "0", "--epochs", "2"])
    assert runner.command(tmp_path, run, "py")[1][:3] == ["py", MAIN, "--resume"]  # one process: no torchrun


def test_each_process_of_a_run_gets_its_share_of_the_runs_threads():
    """Ray sets OMP_NUM_THREADS to a task's CPUs; without it torchrun gives each process one."""
    assert runner.thread_share({"OMP_NUM_THREADS": "4"}, 2) == {"OMP_NUM_THREADS": "2"}
    assert runner.thread_share({"OMP_NUM_THREADS": "1"}, 2) == {"OMP_NUM_THREADS": "1"}
    assert runner.thread_share({"OMP_NUM_THREADS": "4"}, 1) == {}
    assert runner.thread_share({}, 2) == {}


@pytest.mark.parametrize("slots, gpus, line", [
    (["--gpus", "0 1 2 3"], ["0,1", "2,3"], "local: 2 runs at a time, each a torchrun on 2 GPUs: 0,1 2,3"),
    (["--jobs", "2"], [None], "local: 2 runs at a time, each a torchrun of 2 processes on the CPU")])
def test_gpus_per_run_makes_each_run_one_torchrun_on_a_group_of_gpus(sweep, tmp_path, slots, gpus, line):
    """--gpus "0 1 2 3" --gpus-per-run 2: each run holds CUDA_VISIBLE_DEVICES=0,1 or 2,3, one run per
    group at a time; without --gpus, the runs are torchruns of CPU processes."""
    done, calls = sweep("--methods", "adam", "--weightings", "ew pcgrad", "--seeds", "0 1", *slots,
                        "--gpus-per-run", "2", sleep="1")
    assert done.returncode == 0, done.stderr
    runs = calls[:-1]
    assert len(runs) == 4 and sorted({c["gpu"] for c in runs}, key=str) == gpus
    assert most_at_once(runs, key=lambda c: c["gpu"]) == {gpu: 1 if gpu else 2 for gpu in gpus}
    assert all(c["args"][:6] == [*TORCHRUN, "2", MAIN] for c in runs)
    assert all(c["args"][c["args"].index("--out") - 2:c["args"].index("--out")] == ["--threads", "1"] for c in runs)
    assert line in done.stdout
    if gpus[0]:
        assert "(GPUs 0,1)" in done.stdout
    sweep_dir = tmp_path / "runs" / "s"
    header = (sweep_dir / "adam-ew-s0.log").read_text().splitlines()[0]
    assert f" start{' CUDA_VISIBLE_DEVICES=0,1' if gpus[0] else ''}: " in header, header
    assert f" -m torch.distributed.run --standalone --nproc-per-node 2 {MAIN} --method adam " in header, header
    options = json.loads((sweep_dir / "plan.json").read_text())["options"]
    assert options["gpus_per_run"] == 2


def test_a_dry_run_shows_the_torchrun_of_each_run(sweep):
    done, calls = sweep("--methods", "adam", "--seeds", "0", "--gpus", "0 1", "--gpus-per-run", "2", "--dry-run")
    assert done.returncode == 0 and calls == [], done.stderr
    assert f" -m torch.distributed.run --standalone --nproc-per-node 2 {MAIN} --method adam" in done.stdout


def test_a_torchrun_that_fails_on_a_folder_another_process_owns_is_reported_running(sweep, tmp_path):
    """torchrun turns main_cityscapes.py's exit 75 into 1: the folder's live lease tells."""
    run_dir = tmp_path / "runs" / "s" / "adam-ew-s0"
    run_dir.mkdir(parents=True)
    (run_dir / LEASE).write_text(json.dumps({"host": "node-b", "node": "x", "pid": 4242,
                                             "renewed": time.time()}))
    done, _ = sweep("--methods", "adam sgd", "--seeds", "0", "--gpus-per-run", "2", busy="adam-ew-s0 sgd-ew-s0")
    assert done.returncode == 1, done.stderr
    assert "running adam-ew-s0 (owned by another process" in done.stdout
    assert "FAILED  sgd-ew-s0 (exit 1" in done.stdout  # no live owner: a failure
    assert "1 failed: sgd-ew-s0" in done.stderr and "still running in other processes: adam-ew-s0" in done.stderr
    assert not (run_dir.parent / "adam-ew-s0.exit").exists()
    assert (run_dir.parent / "sgd-ew-s0.exit").read_text() == "1\n"


def test_owned_elsewhere_needs_exit_75_or_through_torchrun_a_live_lease(tmp_path):
    assert runner.owned_elsewhere(75, tmp_path, 1) and not runner.owned_elsewhere(1, tmp_path, 2)  # no lease
    (tmp_path / LEASE).write_text(json.dumps({"host": "node-b", "node": "x", "pid": 4242,
                                              "renewed": time.time()}))
    assert runner.owned_elsewhere(1, tmp_path, 2)
    assert not runner.owned_elsewhere(1, tmp_path, 1)  # one process: its own exit status says
    assert not runner.owned_elsewhere(0, tmp_path, 2)


@pytest.mark.parametrize("args, message", [
    (["--methods", "adam", "--", "--seed", "3"], "--seed is set by the sweep itself"),
    (["--methods", "adam", "--", "--name=x"], "--name=x: --name is set by the sweep itself"),
    (["--methods", "adam", "--", "--see", "5"], "--see: --seed is set by the sweep itself"),
    (["--seeds", "0"], "--methods is required"),
    (["--methods", "adam", "--seeds", "0 x"], "x is not a non-negative integer"),
    (["--methods", "adam", "--epochs", "2"], "unknown option --epochs (flags for main_cityscapes.py go after --"),
    (["--methods", "adam", "--sweep", "a/b"], "--sweep NAME is required (a folder name, no /)"),
    (["--methods", "adam", "--slurm-time", "60"], "--slurm-time is an option of --backend slurm"),
    (["--methods", "adam", "--backend", "ray", "--gpus", "0"], "--gpus is an option of --backend local"),
    (["--methods", "adam", "--runs-per-gpu", "2"], "--runs-per-gpu needs --gpus on the local backend"),
    (["--methods", "adam", "--gpus", "0", "--jobs", "2"], "--jobs is for machines without --gpus"),
    (["--methods", "adam", "--gpus", "0 0"], "an id given twice"),
    (["--methods", "adam", "--jobs", "0"], "0 is not a positive integer"),
    (["--methods", "adam", "--gpus-per-run", "0"], "0 is not a positive integer"),
    (["--methods", "adam", "--gpus", "0 1 2", "--gpus-per-run", "2"],
     "--gpus 0 1 2: 3 ids, not a multiple of --gpus-per-run 2"),
    (["--methods", "adam", "--gpus", "0 1", "--gpus-per-run", "2", "--runs-per-gpu", "2"],
     "--gpus-per-run 2 and --runs-per-gpu 2 cannot be combined"),
    (["--methods", "adam", "--backend", "slurm", "--gpus-per-run", "2", "--runs-per-gpu", "2"],
     "--gpus-per-run 2 and --runs-per-gpu 2 cannot be combined"),
    (["--methods", "adam", "--backend", "ray", "--gpus-per-run", "2", "--runs-per-gpu", "2"],
     "--gpus-per-run 2 and --runs-per-gpu 2 cannot be combined"),
    (["--methods", "adam", "--tasks", "semantic panoptic"],
     "--tasks semantic panoptic: tasks must be distinct names from semantic, instance, depth"),
    (["--methods", "nosuch", "--dry-run"], "--methods nosuch: unknown; valid names: adam, adam_with_adatask"),
    (["--methods", "adam", "--weightings", "ew nosuch"], "--weightings nosuch: unknown; valid names: ew, rlw"),
    (["--methods", "adam adam"], "--methods: adam given twice"),
    (["--methods", "adam", "--seeds", "0 1 0"], "--seeds: 0 given twice"),
])
def test_bad_arguments(sweep, tmp_path, args, message):
    done, calls = sweep(*args)
    assert done.returncode == 2 and message in done.stderr and calls == []
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("timeout", ["1e-300", "nan", "700000"])
def test_a_bad_lease_timeout_is_refused_before_anything_is_planned(sweep, tmp_path, fake_env, timeout):
    fake_env["MTL_LEASE_TIMEOUT"] = timeout
    done, calls = sweep("--methods", "adam")
    assert done.returncode == 2 and f"MTL_LEASE_TIMEOUT='{timeout}'" in done.stderr and calls == []
    assert not (tmp_path / "runs").exists()


def test_help_explains_every_flag_in_groups():
    done = subprocess.run([str(SWEEP), "--help"], check=True, env=BASE_ENV, capture_output=True, text=True)
    for group in ("plan", "every backend", "local backend", "slurm backend", "ray backend", "status"):
        assert f"\n{group}" in done.stdout
    for flag in ("--sweep", "--methods", "--weightings", "--seeds", "--tasks", "--single-task", "--runs", "--results",
                 "--backend", "--python", "--runs-per-gpu", "--gpus-per-run", "--dry-run", "--wait", "--gpus", "--jobs",
                 "--slurm-partition", "--slurm-time", "--slurm-mem", "--slurm-cpus-per-run",
                 "--slurm-array-parallelism", "--slurm-packing", "--ray-address", "--cpus-per-run", "--status"):
        assert f"  {flag} " in done.stdout or f"  {flag}\n" in done.stdout, flag


def test_a_dry_run_writes_the_plan_and_starts_nothing(sweep, tmp_path):
    done, calls = sweep("--methods", "adam", "--seeds", "0", "--dry-run", "--", "--epochs", "2")
    assert done.returncode == 0, done.stderr
    assert calls == []
    assert f"start   adam-ew-s0: {done.stdout.split('adam-ew-s0: ')[1].split()[0]} {MAIN} --method adam" in done.stdout
    assert [r.name for r in plan.read_plan(tmp_path / "runs" / "s")] == ["adam-ew-s0"]
    assert not (tmp_path / "runs" / "s" / "adam-ew-s0").exists()


@pytest.mark.skipif(not (REPO / "sweeps" / "ray_backend.py").exists(), reason="no sweeps/ray_backend.py")
def test_a_cluster_backend_without_its_package_names_requirements_cluster(tmp_path):
    code = ("import sys; sys.modules['ray'] = None  # as if it were not installed\n"
            "from sweeps.cli import main\n"
            "sys.exit(main(['--sweep', 's', '--methods', 'adam', '--backend', 'ray']))")
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True,
                          env={**BASE_ENV, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    assert "needs the Python package ray" in done.stderr and "requirements-cluster.txt" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()


def test_a_second_launcher_of_a_sweep_is_refused_naming_the_first(fake_env, tmp_path):
    """It marked a finished run FAILED and overwrote its .exit; now it starts nothing."""
    first = subprocess.Popen(sweep_command(fake_env, "--methods", "adam", "--seeds", "0 1"), cwd=tmp_path,
                             env={**fake_env, "FAKE_SLEEP": "3"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    sweep_dir = tmp_path / "runs" / "s"
    assert wait_until(lambda: (sweep_dir / "adam-ew-s0" / "config.json").exists(), 30)
    second = subprocess.run(sweep_command(fake_env, "--methods", "adam", "--seeds", "0 1"), check=False,
                            cwd=tmp_path, env=fake_env, capture_output=True, text=True, timeout=60)
    assert second.returncode == exit_codes.EXIT_BUSY
    assert f"sweep: another launcher runs this sweep; {sweep_dir} is owned by another process" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert first.wait(timeout=60) == 0
    assert [(sweep_dir / f"adam-ew-s{seed}.exit").read_text() for seed in (0, 1)] == ["0\n", "0\n"]
    assert subprocess.run(sweep_command(fake_env, "--methods", "adam", "--seeds", "0 1"), check=False,
                          cwd=tmp_path, env=fake_env, capture_output=True, timeout=60).returncode == 0


def test_every_run_gets_the_sweeps_pid_in_mtl_parent_pid(fake_env, tmp_path):
    """sweep.sh execs the launcher: the pid that started is the one every run watches."""
    for slots in ([], ["--gpus", "0 1"]):
        proc = subprocess.Popen(sweep_command(fake_env, "--methods", "adam sgd", "--seeds", "0", *slots),
                                cwd=tmp_path, env=fake_env, stdout=subprocess.DEVNULL)
        assert proc.wait(timeout=60) == 0
        calls = read_calls(Path(fake_env["FAKE_LOG"]))
        Path(fake_env["FAKE_LOG"]).unlink()
        assert len(calls) == 3 and all(str(c["ppid"]) == str(proc.pid) for c in calls)
        assert all(c["parent_env"] == str(proc.pid) for c in calls[:-1])  # the runs; then the aggregation
        for name in ("adam-ew-s0", "sgd-ew-s0"):
            (tmp_path / "runs" / "s" / name / "summary.json").unlink()


@pytest.mark.parametrize("slots", [[], ["--jobs", "2"]])
def test_a_run_owned_by_another_process_is_reported_running_not_failed(sweep, tmp_path, slots):
    """main_cityscapes.py exits 75 when a live process owns the run folder: no .exit, not failed."""
    sweep_dir = tmp_path / "runs" / "s"
    done, calls = sweep("--methods", "adam sgd", "--seeds", "0", *slots, busy="adam-ew-s0")
    assert done.returncode == 75, done.stderr
    assert "running adam-ew-s0 (owned by another process" in done.stdout
    assert "FAILED" not in done.stdout and "failed" not in done.stderr
    assert "1 still running in other processes: adam-ew-s0" in done.stderr
    assert not (sweep_dir / "adam-ew-s0.exit").exists()
    assert (sweep_dir / "sgd-ew-s0.exit").read_text() == "0\n"
    assert "is owned by another process" in (sweep_dir / "adam-ew-s0.log").read_text()
    assert calls[-1]["args"][:2] == ["-m", "evaluation.aggregate"]
    # A failure still fails the sweep; the running run is not counted among the failed.
    done, _ = sweep("--sweep", "s2", "--methods", "adam sgd", "--seeds", "1", *slots, busy="adam-ew-s1",
                    fail="sgd-ew-s1")
    assert done.returncode == 1
    assert "1 failed: sgd-ew-s1" in done.stderr and "still running in other processes: adam-ew-s1" in done.stderr


def wait_until(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def our_processes(folder):
    """{pid: command line} of the live processes working in folder or naming it (zombies excluded)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone, or a zombie
            continue
        if (cwd == str(folder) or str(folder) in cmdline) and lease.pid_alive(int(proc.name)):
            found[int(proc.name)] = cmdline
    return found


def kill_all(folder):
    for pid in our_processes(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_sweep_stops_its_runs_and_starts_no_other(fake_env, tmp_path, sig, status):
    """Ctrl-C or SIGTERM of the launcher: the signal goes to each run once; no .exit (a rerun
    resumes them), exit 130."""
    log = Path(fake_env["FAKE_LOG"])
    proc = subprocess.Popen(sweep_command(fake_env, "--methods", "adam", "--seeds", "0 1 2", "--jobs", "2"),
                            cwd=tmp_path, env={**fake_env, "FAKE_SLEEP": "30"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: len(list(tmp_path.glob("runs/s/*/config.json"))) == 2, 30)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "sweep: interrupted; rerun the same command to resume" in err
        assert sorted(name_of(c) for c in read_calls(log)) == ["adam-ew-s0", "adam-ew-s1"]
        for name in ("adam-ew-s0", "adam-ew-s1"):
            assert f"stopped {name} (exit {status}; rerunning the sweep resumes it)" in out
            assert not (tmp_path / "runs" / "s" / f"{name}.exit").exists()
        assert not our_processes(tmp_path)
    finally:
        proc.kill()
        proc.communicate()
        kill_all(tmp_path)


def test_a_killed_sweep_starts_no_new_run(fake_env, tmp_path):
    """kill -9 of the launcher, left unreaped (a zombie): the runs it held end (this fake ignores
    MTL_PARENT_PID) and no other starts."""
    log = Path(fake_env["FAKE_LOG"])
    proc = subprocess.Popen(sweep_command(fake_env, "--methods", "adam", "--weightings", "ew pcgrad", "--seeds",
                                          "0 1 2", "--gpus", "0 1"),
                            cwd=tmp_path, env={**fake_env, "FAKE_SLEEP": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: len(read_calls(log)) == 2, 30), read_calls(log)
        os.kill(proc.pid, signal.SIGKILL)
        assert wait_until(lambda: not our_processes(tmp_path), 10), our_processes(tmp_path)
        calls = read_calls(log)
        assert sorted(name_of(c) for c in calls) == ["adam-ew-s0", "adam-pcgrad-s0"]
        assert all(c["parent_env"] == str(proc.pid) for c in calls)
    finally:
        proc.kill()
        proc.wait()
        kill_all(tmp_path)


# --status, on run folders made by hand (the lease of a live run: a real one, held by this test).

def write_run(sweep_dir, name, epochs=None, rows=0, finished=False, exit_status=None):
    run_dir = sweep_dir / name
    run_dir.mkdir(parents=True)
    if epochs is not None:
        (run_dir / "config.json").write_text(json.dumps({"settings": {"epochs": epochs}}))
    metrics = [{"epoch": e, "test": {"miou": 0.1 * (e + 1), "pix_acc": 0.5, "abs_err": 0.25, "rel_err": None}}
               for e in range(rows)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics))
    if finished:  # --status checks it against metrics.jsonl (evaluation/summary.py)
        (run_dir / "summary.json").write_text(json.dumps(summarize(metrics, None, None)))
    if exit_status is not None:
        (sweep_dir / f"{name}.exit").write_text(f"{exit_status}\n")
    return run_dir


def status(tmp_path, sweep="s"):
    done = subprocess.run([str(SWEEP), "--status", "--sweep", sweep, "--runs", "runs"], check=False, cwd=tmp_path,
                          env=BASE_ENV, capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    return done, {line.split()[0]: line.split()[1:] for line in lines[2:]}


def test_status_tells_each_state_from_the_run_folders(tmp_path):
    sweep_dir = tmp_path / "runs" / "s"
    names = ["done", "live", "remote", "crashed", "stale", "stopped", "new"]
    plan.write_plan(sweep_dir, [plan.PlannedRun(n, ()) for n in names], "slurm")
    write_run(sweep_dir, "done", epochs=2, rows=2, finished=True, exit_status=0)
    live = lease.acquire(write_run(sweep_dir, "live", epochs=3, rows=1))
    remote = write_run(sweep_dir, "remote", epochs=3, rows=2)
    (remote / "lease.json").write_text(json.dumps({"host": "node-b", "node": "x", "pid": 4242,
                                                   "renewed": time.time() - 5}))
    write_run(sweep_dir, "crashed", epochs=3, rows=1, exit_status=3)
    stale = write_run(sweep_dir, "stale", epochs=3, rows=1)  # node-b died: its lease timed out
    (stale / "lease.json").write_text(json.dumps({"host": "node-b", "node": "x", "pid": 4242,
                                                  "renewed": time.time() - 2 * lease.DEFAULT_TIMEOUT}))
    write_run(sweep_dir, "stopped", epochs=3, rows=1)
    try:
        before = sorted(p.relative_to(sweep_dir) for p in sweep_dir.rglob("*"))
        done, rows = status(tmp_path)
        assert done.returncode == 0, done.stderr
        assert sorted(p.relative_to(sweep_dir) for p in sweep_dir.rglob("*")) == before  # read-only
    finally:
        live.release()
    assert done.stdout.splitlines()[0] == \
        f"sweep s ({sweep_dir}): 7 runs: 1 finished, 2 running, 1 failed, 3 pending"
    assert done.stdout.splitlines()[1].split() == ["run", "state", "epoch", "miou", "pix_acc", "abs_err", "rel_err"]
    assert rows == {
        "done": ["finished", "2/2", "0.2000", "0.5000", "0.2500", "-"],
        "live": ["running", "1/3", "0.1000", "0.5000", "0.2500", "-", socket.gethostname(), "pid", str(os.getpid())],
        "remote": ["running", "2/3", "0.2000", "0.5000", "0.2500", "-", "node-b", "pid", "4242"],
        "crashed": ["failed", "1/3", "0.1000", "0.5000", "0.2500", "-", "exit", "3,", "see", "crashed.log"],
        "stale": ["pending", "1/3", "0.1000", "0.5000", "0.2500", "-", "stopped;", "resumes"],
        "stopped": ["pending", "1/3", "0.1000", "0.5000", "0.2500", "-", "stopped;", "resumes"],
        "new": ["pending", "-", "-", "-", "-", "-"]}


def test_status_shows_the_instance_metric_when_a_run_reports_it(tmp_path):
    sweep_dir = tmp_path / "runs" / "s"
    plan.write_plan(sweep_dir, [plan.PlannedRun(n, ()) for n in ("two", "three")], "local")
    write_run(sweep_dir, "two", epochs=1, rows=1, finished=True)
    three = write_run(sweep_dir, "three", epochs=1, rows=0)
    (three / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "test": {"miou": 0.3, "inst_err": 4.5}}) + "\n")
    done, rows = status(tmp_path)
    assert done.stdout.splitlines()[1].split() == ["run", "state", "epoch", "miou", "pix_acc", "inst_err",
                                                   "abs_err", "rel_err"]
    assert rows == {"two": ["finished", "1/1", "0.1000", "0.5000", "-", "0.2500", "-"],
                    "three": ["pending", "1/1", "0.3000", "-", "4.5000", "-", "-", "stopped;", "resumes"]}


def test_status_without_a_plan_says_so(tmp_path):
    done, _ = status(tmp_path)
    assert done.returncode == 2 and "no plan; was the sweep started with scripts/sweep.sh --sweep s?" in done.stderr


def test_status_names_a_bad_plan_entry_and_a_sweep_that_is_a_file(tmp_path):
    sweep_dir = tmp_path / "runs" / "s"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "plan.json").write_text(json.dumps({"runs": [{"name": 5, "flags": []}]}))
    done, _ = status(tmp_path)
    assert done.returncode == 2 and f"{sweep_dir / 'plan.json'}: not a plan written by scripts/sweep.sh (run 1:" \
        in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "runs" / "f").write_text("")
    done, _ = status(tmp_path, sweep="f")
    assert done.returncode == 2 and f"{tmp_path / 'runs' / 'f'}: not a folder" in done.stderr
    (sweep_dir / "plan.json").unlink()
    (sweep_dir / "plan.json").mkdir()
    done, _ = status(tmp_path)
    assert done.returncode == 2 and f"{sweep_dir / 'plan.json'}: cannot be read (Is a directory)" in done.stderr


def test_status_reports_every_run_when_one_has_bad_metrics_lines(tmp_path):
    """One malformed row gave an AttributeError and no report; a torn last line hid every row."""
    sweep_dir = tmp_path / "runs" / "s"
    plan.write_plan(sweep_dir, [plan.PlannedRun(n, ()) for n in ("torn", "odd", "fine")], "local")
    torn = write_run(sweep_dir, "torn", epochs=3, rows=2)
    with open(torn / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "test": {"mi')
    odd = write_run(sweep_dir, "odd", epochs=3, rows=1)
    with open(odd / "metrics.jsonl", "a") as f:
        f.write('[1, 2]\n{"epoch": 2, "test": [0.5]}\n')
    write_run(sweep_dir, "fine", epochs=3, rows=1)
    done, rows = status(tmp_path)
    assert done.returncode == 0, done.stderr
    assert rows["torn"][:3] == ["pending", "2/3", "0.2000"] and "metrics.jsonl line 3: no metrics row" in done.stdout
    assert rows["odd"][:2] == ["pending", "1/3"] and "metrics.jsonl lines 2, 3: no metrics row" in done.stdout
    assert rows["fine"][:3] == ["pending", "1/3", "0.1000"]


# Real runs of main_cityscapes.py: tiny, on the CPU, one thread.

def real_flags(data, epochs):
    return ["--data-path", str(data), "--epochs", str(epochs), "--batch-size", "4", "--width-mult", "0.125",
            "--num-workers", "0", "--device", "cpu"]


def real_sweep(*args):
    return [str(SWEEP), "--sweep", "k", "--runs", "runs", "--results", "res", "--python", sys.executable,
            "--methods", "adam", *args]


def training(folder):
    return {pid: c for pid, c in our_processes(folder).items() if "main_cityscapes.py" in c}


def test_a_rerun_skips_a_run_that_a_live_process_owns(tiny_synthcity, tmp_path):
    runs = tmp_path / "runs" / "k"
    owner = subprocess.Popen([sys.executable, MAIN, "--method", "adam", "--weighting", "ew", "--seed", "0",
                              "--out", str(runs), "--name", "adam-ew-s0", *real_flags(tiny_synthcity, 1000)],
                             cwd=tmp_path, env=BASE_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until((runs / "adam-ew-s0" / "config.json").exists, 180)
        os.kill(owner.pid, signal.SIGSTOP)  # still the owner (flock, fresh lease), but the CPU is free
        done = subprocess.run(real_sweep("--seeds", "0", "--", *real_flags(tiny_synthcity, 1000)), check=False,
                              cwd=tmp_path, env=BASE_ENV, capture_output=True, text=True, timeout=300)
        assert done.returncode == 75, done.stderr
        assert "resume  adam-ew-s0" in done.stdout
        assert "running adam-ew-s0 (owned by another process" in done.stdout
        assert "still running in other processes: adam-ew-s0" in done.stderr and "failed" not in done.stderr
        assert not (runs / "adam-ew-s0.exit").exists()
        log = (runs / "adam-ew-s0.log").read_text()
        assert f"is owned by another process ({socket.gethostname()} pid {owner.pid}" in log
        assert owner.poll() is None  # untouched
        assert (runs / "adam-ew-s0" / "lease.json").exists()
    finally:
        owner.kill()
        owner.wait()


def test_kill_9_of_a_sweep_leaves_no_training_process(tiny_synthcity, tmp_path):
    """2 s after kill -9 of sweep.sh's pid (only that pid), no run is left and none starts."""
    runs = tmp_path / "runs" / "k"
    proc = subprocess.Popen(real_sweep("--seeds", "0 1", "--", *real_flags(tiny_synthcity, 1000)), cwd=tmp_path,
                            env=BASE_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: len(list(runs.glob("*/config.json"))) == 1, 180), list(runs.iterdir())
        assert len(training(tmp_path)) == 1
        os.kill(proc.pid, signal.SIGKILL)
        assert wait_until(lambda: not training(tmp_path), 2), training(tmp_path)
        assert wait_until(lambda: not our_processes(tmp_path), 10), our_processes(tmp_path)
        assert len(list(runs.glob("*/config.json"))) == 1
    finally:
        proc.kill()
        proc.wait()
        kill_all(tmp_path)


class GpuWatch:
    """Samples, while it runs, the CUDA_VISIBLE_DEVICES of the training runs under a folder: the
    most that shared each id at once. Runs are told apart by command line, since a run's own
    short-lived forks (git, between fork and exec) show the same one."""

    def __init__(self, folder):
        self.folder, self.most, self._stop = folder, {}, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.wait(0.05):
            now = {}
            for pid, cmdline in training(self.folder).items():
                with contextlib.suppress(OSError):
                    environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes()
                                   .split(b"\0") if b"=" in item)
                    gpu = environ.get(b"CUDA_VISIBLE_DEVICES", b"").decode()
                    now.setdefault(gpu, set()).add(cmdline)
            for gpu, runs in now.items():
                self.most[gpu] = max(self.most.get(gpu, 0), len(runs))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_a_rerun_after_kill_9_completes_every_run_two_per_gpu(tiny_synthcity, tmp_path):
    """--gpus "0 1" --runs-per-gpu 2 on a CPU machine (--device cpu), three runs: two share GPU
    id 0. kill -9 of the sweep mid-run leaves no run; --status shows them pending; the same
    command again resumes them to the end, with one metrics row per epoch."""
    runs, epochs = tmp_path / "runs" / "k", 3
    command = real_sweep("--seeds", "0 1 2", "--gpus", "0 1", "--runs-per-gpu", "2", "--",
                         *real_flags(tiny_synthcity, epochs))
    proc = subprocess.Popen(command, cwd=tmp_path, env=BASE_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        with GpuWatch(tmp_path) as first:
            assert wait_until(lambda: len(list(runs.glob("*/config.json"))) == 3, 300), list(runs.iterdir())
            assert len(training(tmp_path)) == 3
            os.kill(proc.pid, signal.SIGKILL)
            assert wait_until(lambda: not training(tmp_path), 2), training(tmp_path)
        assert wait_until(lambda: not our_processes(tmp_path), 10), our_processes(tmp_path)
        assert first.most == {"0": 2, "1": 1}
        done, states = status(tmp_path, "k")
        assert [s[0] for s in states.values()] == ["pending"] * 3, done.stdout
        with GpuWatch(tmp_path) as rerun:
            done = subprocess.run(command, check=False, cwd=tmp_path, env=BASE_ENV, capture_output=True, text=True,
                                  timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count("resume  ") == 3
        assert rerun.most == {"0": 2, "1": 1}
        gpus = []
        for seed in range(3):
            run_dir = runs / f"adam-ew-s{seed}"
            assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == \
                list(range(epochs))
            environment = json.loads((run_dir / "config.json").read_text())["environment"]
            gpus.append(environment["cuda_visible_devices"])
            assert environment["torch_threads"] == 1
        assert sorted(gpus) == ["0", "0", "1"]
        _, states = status(tmp_path, "k")
        assert [s[:2] for s in states.values()] == [["finished", f"{epochs}/{epochs}"]] * 3
    finally:
        proc.kill()
        proc.wait()
        kill_all(tmp_path)


def test_a_run_of_two_cpu_processes_is_one_torchrun_that_finishes(tiny_synthcity, tmp_path):
    """--gpus-per-run 2 without --gpus: one run of two gloo processes on the CPU, through torchrun;
    one run folder (rank 0 writes it) with one metrics row per epoch."""
    done = subprocess.run(real_sweep("--seeds", "0", "--gpus-per-run", "2", "--", *real_flags(tiny_synthcity, 1)),
                          check=False, cwd=tmp_path, env=BASE_ENV, capture_output=True, text=True, timeout=300)
    runs = tmp_path / "runs" / "k"
    log = (runs / "adam-ew-s0.log").read_text() if (runs / "adam-ew-s0.log").exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + log
    assert (runs / "adam-ew-s0.exit").read_text() == "0\n"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["adam-ew-s0"]
    rows = (runs / "adam-ew-s0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in rows] == [0]
    assert f" start: {sys.executable} -m torch.distributed.run --standalone --nproc-per-node 2 {MAIN} " in log, log


def test_the_launchers_signal_handlers_last_only_as_long_as_the_sweep():
    # sweeps.cli.main, tune and compare called from Python (a notebook, a test) give the caller's
    # handlers back: a SIGINT after them must reach the caller as before.
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(runner.Interrupted), cli.interrupt_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises in the main thread at once
    assert {sig: signal.getsignal(sig) for sig in before} == before
