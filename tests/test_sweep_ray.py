"""sweeps/ray_backend.py on a real Ray on this machine (token authentication on): four runs share
one declared GPU at once; a SIGKILLed worker's run is retried and resumes to an uninterrupted
run's metrics; scripts/sweep.sh --backend ray stopped by Ctrl-C on a cluster, then resumed on a
Ray of its own that asks for no GPU (--device cpu) and ends with it; tasks no node can hold; a
dry run; a run folder whose owner died is taken over; a run of two CPU processes through
torchrun. Tiny runs on the CPU, one thread each; Ray is stopped by process group, never by
`ray stop`.
"""
import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from ray_helpers import ray_env, require_ray

from runfolder import lease
from runfolder.files import LEASE
from sweeps import runner
from sweeps.plan import PlanError, PlannedRun

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

require_ray(module_level=True)
from sweeps import ray_backend  # after require_ray: it imports ray

REPO = Path(__file__).resolve().parent.parent
SWEEP_SH = REPO / "scripts" / "sweep.sh"
RAY = Path(sys.executable).parent / "ray"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(pgid, grace=5):
    """SIGTERM to the process group, SIGKILL to what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        if not group_alive(pgid):
            return
        os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture(scope="module", name="ray_env")
def ray_env_fixture():
    """The environment of Ray's processes, the sweeps and their runs (ray_helpers.ray_env)."""
    return ray_env()


@pytest.fixture(scope="module")
def ray_head(ray_env):
    """A Ray head with 4 CPUs and one declared GPU (bookkeeping: this machine may have none), in its
    own process group and temporary folder, on free ports; its address."""
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    ports = [f"--{flag}={free_port()}" for flag in (
        "ray-client-server-port", "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "metrics-export-port", "runtime-env-agent-port", "node-manager-port", "object-manager-port")]
    start = subprocess.Popen([str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                              "--num-cpus=4", "--num-gpus=1", "--include-dashboard=false", "--disable-usage-stats",
                              f"--temp-dir={temp}", *ports],
                             env=ray_env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        out, _ = start.communicate(timeout=120)
        assert start.returncode == 0, out
        yield f"127.0.0.1:{port}"
    finally:
        stop_group(start.pid, grace=0)  # nothing of a test's Ray needs a clean stop
        shutil.rmtree(temp, ignore_errors=True)


# A sweep's driver, as the CLI runs it: its own process (and process group), Ray's driver.
SWEEP = """
import argparse, json, sys
from sweeps import ray_backend
from sweeps.plan import PlannedRun
spec = json.loads(sys.argv[1])
runs = [PlannedRun(name, tuple(flags)) for name, flags in spec["runs"]]
print("STATUSES", json.dumps(ray_backend.run(spec["sweep_dir"], runs, argparse.Namespace(**spec["opts"]))))
"""


def drive(argv, env, timeout=240):
    """Run a sweep (argv) in its own process group; (exit status, output, whether anything of its
    group outlived it by 10 s). Whatever is left in its group is stopped."""
    proc = subprocess.Popen(argv, cwd="/", env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        deadline = time.monotonic() + 10
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return proc.returncode, out, group_alive(proc.pid)
    finally:
        proc.kill()
        stop_group(proc.pid)


def sweep_spec(sweep_dir, runs, **opts):
    sweep_dir.mkdir(parents=True, exist_ok=True)  # as the CLI makes it, with plan.json
    opts = {"python": sys.executable, "threads": 1, "runs_per_gpu": 1, "gpus_per_run": 1, "cpus_per_run": 1,
            "cpu_only": False,
            "ray_address": None, "dry_run": False} | opts
    return json.dumps({"sweep_dir": str(sweep_dir), "runs": [[r.name, list(r.flags)] for r in runs], "opts": opts})


def statuses(out):
    return json.loads(out.split("STATUSES ", 1)[1].splitlines()[0]) if "STATUSES " in out else out


def run_flags(data, epochs=2):
    return ("--data-path", str(data), "--epochs", str(epochs), "--batch-size", "4", "--width-mult", "0.125",
            "--num-workers", "0", "--device", "cpu")


def flags(data, seed):
    return ("--method", "adam", "--weighting", "ew", "--seed", str(seed), *run_flags(data))


def rows_without_wall_clock(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def first_start(log):
    """When run_one first started the run: the time in the log's first header (whole seconds)."""
    header = log.read_text().splitlines()[0]  # "# 2026-12-01 04:41:28 start: ..."
    return datetime.strptime(header[2:21], "%Y-%m-%d %H:%M:%S").timestamp()


def parent_pid(pid):
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def kill_worker_after_checkpoint(run_dir, record):
    """SIGKILL the Ray worker running run_dir's run (the parent of the run's process) once the run
    has a checkpoint; records when, and the worker's title."""
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoint.pt").exists():
        if time.monotonic() > deadline:
            record["error"] = f"{run_dir} made no checkpoint"
            return
        time.sleep(0.02)
    worker = parent_pid(json.loads((run_dir / LEASE).read_text())["pid"])
    record["title"] = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")[0].decode()
    record["finished_before"] = (run_dir / "summary.json").exists()
    os.kill(worker, signal.SIGKILL)
    record["killed"] = time.time()


def test_four_runs_share_a_gpu_at_once_and_a_killed_worker_s_run_resumes(ray_head, ray_env, tiny_synthcity,
                                                                          tmp_path):
    """--runs-per-gpu 4 on one GPU and 4 CPUs: all four at once, each with CUDA_VISIBLE_DEVICES=0.
    "victim" repeats "twin" exactly; its worker is killed after its first epoch's checkpoint, and
    the retried task resumes it to twin's metrics."""
    sweep_dir = tmp_path / "sweep"
    runs = [PlannedRun("twin", flags(tiny_synthcity, 0)), PlannedRun("victim", flags(tiny_synthcity, 0)),
            PlannedRun("seed1", flags(tiny_synthcity, 1)), PlannedRun("seed2", flags(tiny_synthcity, 2))]
    kill = {}
    killer = threading.Thread(target=kill_worker_after_checkpoint, args=(sweep_dir / "victim", kill), daemon=True)
    killer.start()
    spec = sweep_spec(sweep_dir, runs, runs_per_gpu=4, ray_address=ray_head)
    status, out, _ = drive([sys.executable, "-c", SWEEP, spec], ray_env)
    killer.join(timeout=5)
    assert "error" not in kill, kill
    assert status == 0 and statuses(out) == {"twin": 0, "victim": 0, "seed1": 0, "seed2": 0}, out
    assert all(f"\ndone    {r.name}\n" in out for r in runs), out  # printed by the sweep, not lost with Ray

    assert kill["title"] == "ray::sweep:victim" and not kill["finished_before"], kill
    log = (sweep_dir / "victim.log").read_text()
    assert log.count(" start CUDA_VISIBLE_DEVICES=0: ") == 1, log
    assert log.count(" resume CUDA_VISIBLE_DEVICES=0: ") == 1, log
    assert rows_without_wall_clock(sweep_dir / "victim") == rows_without_wall_clock(sweep_dir / "twin")
    assert len(rows_without_wall_clock(sweep_dir / "twin")) == 2

    # All four at once: each started before any ended (the victim's first attempt ended when killed).
    ends = [(sweep_dir / f"{r.name}.exit").stat().st_mtime for r in runs if r.name != "victim"] + [kill["killed"]]
    starts = [first_start(sweep_dir / f"{r.name}.log") for r in runs]
    assert max(starts) + 1 < min(ends), (starts, ends)  # + 1: the headers' times are whole seconds
    for r in runs:
        environment = json.loads((sweep_dir / r.name / "config.json").read_text())["environment"]
        assert environment["cuda_visible_devices"] == "0", r.name


FITS = """
import sys
from sweeps import ray_backend
from sweeps.plan import PlanError
with ray_backend.connected(sys.argv[1]):
    try:
        ray_backend.check_fits({"num_cpus": 5, "num_gpus": 0}, started_here=True)
    except PlanError as e:
        print("REFUSED", e)
    ray_backend.check_fits({"num_cpus": 5, "num_gpus": 0}, started_here=False)
    ray_backend.check_fits({"num_cpus": 4, "num_gpus": 0.25}, started_here=True)
    print("FITS")
"""


def test_a_run_no_node_can_hold_is_refused_on_a_local_ray_and_warned_about_on_a_cluster(ray_head, ray_env):
    status, out, _ = drive([sys.executable, "-c", FITS, ray_head], ray_env)
    assert status == 0, out
    assert "REFUSED no Ray node has the 5 CPUs and 0 GPU one run asks for" in out and "4 CPUs, 1 GPUs" in out, out
    assert "the runs wait until such a node joins" in out and "FITS" in out, out


def test_resources_of_a_run():
    opts = argparse.Namespace(runs_per_gpu=4, gpus_per_run=1, cpus_per_run=2, cpu_only=False)
    assert ray_backend.task_resources(opts) == {"num_cpus": 2, "num_gpus": 0.25}
    opts.cpu_only = True
    assert ray_backend.task_resources(opts) == {"num_cpus": 2, "num_gpus": 0}
    opts.runs_per_gpu = 0
    with pytest.raises(PlanError, match="--runs-per-gpu 0"):
        ray_backend.task_resources(opts)


def test_resources_of_a_run_of_several_gpus():
    """--gpus-per-run G: G whole GPUs and G times the CPUs; with cpu_only the CPUs alone."""
    opts = argparse.Namespace(runs_per_gpu=1, gpus_per_run=2, cpus_per_run=3, cpu_only=False)
    assert ray_backend.task_resources(opts) == {"num_cpus": 6, "num_gpus": 2}
    opts.cpu_only = True
    assert ray_backend.task_resources(opts) == {"num_cpus": 6, "num_gpus": 0}
    opts.cpu_only, opts.runs_per_gpu = False, 2
    with pytest.raises(PlanError, match="--gpus-per-run 2 and --runs-per-gpu 2 cannot be combined"):
        ray_backend.task_resources(opts)
    opts.gpus_per_run, opts.runs_per_gpu = 0, 1
    with pytest.raises(PlanError, match="--gpus-per-run 0"):
        ray_backend.task_resources(opts)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def test_sweep_sh_ctrl_c_on_a_cluster_then_a_local_ray_for_the_sweep_resumes(ray_head, ray_env, tiny_synthcity,
                                                                             tmp_path):
    """scripts/sweep.sh --backend ray --ray-address: Ctrl-C after the run's first checkpoint
    cancels its task, which ends the run. The same command without --ray-address starts a Ray
    for the sweep, resumes the run (no GPU asked: --device cpu) and stops that Ray when it ends."""
    sweep = [str(SWEEP_SH), "--sweep", "s", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
             "--backend", "ray", "--methods", "adam", "--seeds", "0"]
    after_dashes = ["--", *run_flags(tiny_synthcity, epochs=3)]
    run_dir = tmp_path / "runs" / "s" / "adam-ew-s0"
    on_cluster = subprocess.Popen([*sweep, "--ray-address", ray_head, *after_dashes], env=ray_env,
                                  start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (run_dir / "checkpoint.pt").exists() or on_cluster.poll() is not None, 240, "checkpoint")
        assert on_cluster.poll() is None, on_cluster.communicate()[0]
        run_pid = json.loads((run_dir / LEASE).read_text())["pid"]
        on_cluster.send_signal(signal.SIGINT)
        out, _ = on_cluster.communicate(timeout=60)
        assert on_cluster.returncode == 130 and "interrupted; rerun the same command to resume" in out, out
        wait_for(lambda: not lease.pid_alive(run_pid), 10, "end of the cancelled task's run")
    finally:
        on_cluster.kill()
        stop_group(on_cluster.pid)
    assert not (run_dir / "summary.json").exists() and not (run_dir.parent / "adam-ew-s0.exit").exists()

    status, out, left_over = drive([*sweep, *after_dashes], ray_env)
    assert status == 0 and "resume  adam-ew-s0" in out and "\ndone    adam-ew-s0\n" in out, out
    assert "all 1 runs finished" in out, out
    assert "a Ray started on this machine for the sweep" in out and "1 CPU and 0 GPU" in out, out
    assert not left_over, "the sweep's Ray outlived it"
    log = (run_dir.parent / "adam-ew-s0.log").read_text()
    assert log.count(" start: ") == 1 and log.count(" resume: ") == 1, log  # no CUDA_VISIBLE_DEVICES
    assert len(rows_without_wall_clock(run_dir)) == 3
    assert json.loads((run_dir / "config.json").read_text())["environment"]["cuda_visible_devices"] is None
    assert (tmp_path / "results" / "s.md").exists()


def test_a_dry_run_shows_the_runs_and_starts_no_ray(ray_env, tmp_path):
    done = subprocess.run([str(SWEEP_SH), "--sweep", "s", "--runs", str(tmp_path / "runs"), "--backend", "ray",
                           "--runs-per-gpu", "2", "--dry-run", "--methods", "adam", "--seeds", "0 1", "--",
                           "--epochs", "1"], check=False, cwd="/", env=ray_env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ray: each run asks for 1 CPU and 0.5 GPU, on a Ray started on this machine for the sweep" in done.stdout
    assert "start   adam-ew-s1: " in done.stdout and "--threads 1" in done.stdout, done.stdout
    assert "Ray instance" not in done.stdout + done.stderr and not (tmp_path / "runs" / "s" / "adam-ew-s0").exists()


def test_a_dry_run_of_two_gpus_per_run_shows_the_torchruns(ray_env, tmp_path):
    done = subprocess.run([str(SWEEP_SH), "--sweep", "s", "--runs", str(tmp_path / "runs"), "--backend", "ray",
                           "--gpus-per-run", "2", "--cpus-per-run", "2", "--dry-run", "--methods", "adam", "--seeds",
                           "0", "--", "--epochs", "1"], check=False, cwd="/", env=ray_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ray: each run asks for 4 CPU and 2 GPU, on a Ray started on this machine for the sweep" in done.stdout
    assert f" -m torch.distributed.run --standalone --nproc-per-node 2 {runner.MAIN} --method adam " in done.stdout


def test_a_run_of_two_cpu_processes_is_one_task_running_torchrun(ray_head, ray_env, tiny_synthcity, tmp_path):
    """--gpus-per-run 2 on --device cpu: a task asking for 2 CPUs and no GPU, whose run is one
    torchrun of two gloo processes; one run folder with one metrics row per epoch."""
    sweep_dir = tmp_path / "sweep"
    run = PlannedRun("pair", ("--method", "adam", "--weighting", "ew", "--seed", "0",
                              *run_flags(tiny_synthcity, epochs=1)))
    spec = sweep_spec(sweep_dir, [run], gpus_per_run=2, cpu_only=True, ray_address=ray_head)
    status, out, _ = drive([sys.executable, "-c", SWEEP, spec], ray_env)
    log = (sweep_dir / "pair.log").read_text() if (sweep_dir / "pair.log").exists() else ""
    assert status == 0 and statuses(out) == {"pair": 0}, out + log
    assert "each run asks for 2 CPU and 0 GPU" in out, out
    assert (sweep_dir / "pair.exit").read_text() == "0\n"
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["pair"]
    assert [row["epoch"] for row in rows_without_wall_clock(sweep_dir / "pair")] == [0]
    assert f" start: {sys.executable} -m torch.distributed.run --standalone --nproc-per-node 2 {runner.MAIN} " in log


def write_lease(run_dir, **fields):
    """Atomically, as runfolder.lease writes it."""
    run_dir.mkdir(exist_ok=True)
    (run_dir / "lease.tmp").write_text(json.dumps({"started": 1.0, "renewed": time.time()} | fields))
    (run_dir / "lease.tmp").replace(run_dir / LEASE)


def test_a_busy_run_is_taken_over_only_when_its_owner_looks_dead(tmp_path, monkeypatch):
    here, run_dir = socket.gethostname(), tmp_path / "run"
    assert ray_backend.owner_is_gone(run_dir)  # no lease
    gone = subprocess.Popen(["true"])  # a pid that has exited
    gone.wait()
    write_lease(run_dir, host=here, pid=gone.pid)
    assert ray_backend.owner_is_gone(run_dir, poll=0.05)
    write_lease(run_dir, host=here, pid=os.getpid())  # alive on this host
    assert not ray_backend.owner_is_gone(run_dir, poll=0.05, grace=0.3)
    # Another host (a lost node?): taken over once the lease is MTL_LEASE_TIMEOUT old ...
    monkeypatch.setenv(lease.TIMEOUT_ENV, "0.5")
    write_lease(run_dir, host="node-b", pid=4242)
    began = time.monotonic()
    assert ray_backend.owner_is_gone(run_dir, poll=0.05)
    assert time.monotonic() - began >= 0.4
    # ... unless its owner renews it meanwhile: alive.
    monkeypatch.setenv(lease.TIMEOUT_ENV, "600")
    write_lease(run_dir, host="node-b", pid=4242)
    threading.Timer(0.2, write_lease, (run_dir,), {"host": "node-b", "pid": 4242}).start()
    assert not ray_backend.owner_is_gone(run_dir, poll=0.05)


# A run that only sleeps, once it has said where it runs.
SLEEPING_RUN = f"""#!{sys.executable}
import os, time
open(os.environ["STARTED"], "w").close()
time.sleep(120)
"""


def processes():
    """{pid: (parent pid, start time, command line)} of every process alive (zombies are not):
    (pid, start time) names a process for good, whatever reuses its pid."""
    found = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
            command = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        state, parent, *rest = stat[stat.rindex(b")") + 2:].split()  # the fields after the name
        if state != b"Z":
            found[int(name)] = (int(parent), int(rest[17]), command)
    return found


def descendants(pid):
    """{(pid, start time): command line} of process pid's descendants."""
    alive, found, parents = processes(), {}, [pid]
    while parents:
        parent = parents.pop()
        for child, (ppid, start, command) in alive.items():
            if ppid == parent and (child, start) not in found:
                found[child, start] = command
                parents.append(child)
    return found


def test_a_sweep_killed_with_sigkill_leaves_nothing_of_its_own_ray(ray_env, tmp_path):
    """scripts/sweep.sh --backend ray without --ray-address, kill -9 once its run is going: 15 s
    later none of the sweep's descendants is left (Ray's servers, the raylet's agents and workers,
    the run, the reaper), nor any process whose command line names the sweep's Ray session."""
    fake, started = tmp_path / "python", tmp_path / "started"
    fake.write_text(SLEEPING_RUN)
    fake.chmod(0o755)
    sweep = subprocess.Popen([str(SWEEP_SH), "--sweep", "s", "--runs", str(tmp_path / "runs"), "--results",
                              str(tmp_path / "results"), "--backend", "ray", "--python", str(fake), "--methods", "adam",
                              "--seeds", "0", "--", "--device", "cpu"],
                             env=ray_env | {"STARTED": str(started)}, start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    family = {}
    try:
        wait_for(lambda: started.exists() or sweep.poll() is not None, 120, "start of the run")
        assert sweep.poll() is None, sweep.communicate()[0]
        family = descendants(sweep.pid)
        commands = " | ".join(family.values())
        # What is to be stopped: the Ray agents that outlived a killed sweep by a minute, the run.
        for part in ("ray::DashboardAgent", "ray::RuntimeEnvAgent", "raylet", "gcs_server", "sweeps.ray_reaper",
                     str(fake)):
            assert part in commands, (part, commands)
        session = re.compile(rf"session_[-_0-9]+_{sweep.pid}\b")  # Ray's, named after the pid that started it
        sweep.kill()
        sweep.wait()
        time.sleep(15)
        left = {(pid, start): command for pid, (_, start, command) in processes().items()
                if (pid, start) in family or session.search(command)}
        assert left == {}
    finally:
        sweep.kill()
        stop_group(sweep.pid, grace=0)
        for pid, (_, start, _) in processes().items():
            if (pid, start) in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_a_two_row_rehearsal_of_a_recipe_runs_on_a_ray_cluster_and_compares(ray_head, ray_env, tmp_path):
    """python -m sweeps reproduce nash_mtl --rehearse --backend ray on the test's Ray: two rows and
    the single-task baselines as Ray tasks, then the aggregate table and the comparison report."""
    status, out, left_over = drive(
        [sys.executable, "-m", "sweeps", "reproduce", "nash_mtl", "--rehearse", "--rows", "ls dwa", "--seeds", "0",
         "--runs", str(tmp_path / "runs"), "--backend", "ray", "--ray-address", ray_head, "--",
         "--device", "cpu", "--num-workers", "0"], ray_env, timeout=400)
    assert status == 0 and "all 4 runs finished" in out, out
    assert not left_over
    sweep_dir = tmp_path / "runs" / "nash_mtl-rehearsal"
    for name in ("ls-s0", "dwa-s0", "single-semantic-s0", "single-depth-s0"):
        assert json.loads((sweep_dir / name / "config.json").read_text())["settings"]["recipe"] == "nash_mtl@1"
        assert len(rows_without_wall_clock(sweep_dir / name)) == 2
    report = (sweep_dir / "results" / "comparison.md").read_text()
    assert "| LS | 0 1 2 | 0 | 1 2 |" in report and "not comparable: synthetic data" in report


def test_a_study_of_two_trials_runs_on_ray(ray_head, ray_env, tiny_synthcity, tmp_path):
    """python -m sweeps tune --backend ray on the test's Ray: two trials as two tasks at once
    (--parallel 2), told to the study (tests/test_tune.py tests the tuner itself)."""
    from sweeps import tune

    status, out, left_over = drive(
        [sys.executable, "-m", "sweeps", "tune", str(REPO / "search_spaces" / "default.toml"), "--sweep", "study",
         "--runs", str(tmp_path / "runs"), "--trials", "2", "--parallel", "2", "--backend", "ray", "--ray-address",
         ray_head, "--", *run_flags(tiny_synthcity, epochs=1), "--method", "adam", "--val-fraction", "0.25"], ray_env)
    assert status == 0 and "tune study: 2 trials finished (0 failed, 0 pruned)" in out, out
    assert not left_over
    sweep_dir = tmp_path / "runs" / "study"
    study = json.loads((sweep_dir / tune.STUDY_JSON).read_text())
    assert [(t["run"], t["state"]) for t in study["trials"]] == [("trial-0000", "complete"), ("trial-0001", "complete")]
    for t in study["trials"]:
        summary = json.loads((sweep_dir / t["run"] / "summary.json").read_text())
        assert t["value"] == summary["selection"]["value"]
