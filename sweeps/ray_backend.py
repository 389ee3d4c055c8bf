"""The Ray backend of scripts/sweep.sh: every planned run is one Ray task, on a Ray started for
the sweep or on an existing cluster.

Without --ray-address the sweep starts a Ray of its own on this machine (all its CPUs and the
GPUs Ray detects), whose processes end with the sweep's, however it ends: ray.shutdown stops
them, and a sweep killed even with SIGKILL leaves them to its reaper (sweeps/ray_reaper.py),
which stops them within seconds. --ray-address HOST:PORT (the head's address, as `ray start
--head` prints it) or auto runs the tasks on that cluster, of which nothing is ever stopped.

Each task asks for --cpus-per-run CPUs (Ray sets OMP_NUM_THREADS to match) and 1/--runs-per-gpu
of a GPU, none with cpu_only (runs given --device cpu), and calls sweeps.runner.run_one: the run
is a subprocess of the Ray worker, with the CUDA_VISIBLE_DEVICES that Ray gave the task.
Fractional GPUs are Ray's bookkeeping only: the runs sharing a GPU must fit in its memory together.
With --gpus-per-run G > 1 (never with --runs-per-gpu > 1) a task asks for G whole GPUs and G
times --cpus-per-run CPUs (the CPUs alone with cpu_only), and its run is one torchrun of G
processes on the task's node, which split the task's OMP_NUM_THREADS between them.

A task whose worker or node is lost is retried up to MAX_RETRIES times, on another node if need
be, and the retry resumes the run from its last checkpoint; a run that exits non-zero is a
result, not retried. A run whose worker dies is ended by Ray or, within 2 s, by its own watch on
the worker (MTL_PARENT_PID). Where the folder is still owned (exit 75), the task watches the
owner's lease: a process of this host that has not exited within a few seconds, or a lease of
another host renewed meanwhile (within a heartbeat, 60 s), is a live owner, left alone; a lost
node's run is taken over once its lease is MTL_LEASE_TIMEOUT seconds old (default 600). Ctrl-C
or SIGTERM of the sweep cancels the tasks, killing their workers and so their runs.

Shared storage: the run folders, the repository and the runs' interpreter must be at the same
paths on every node; the tasks write <runs>/<sweep>/ and import sweeps from the repository.

Token authentication, which multi-node clusters should use: RAY_AUTH_MODE=token on every node
(before `ray start`) and for the sweep, each with the same token, either in ~/.ray/auth_token
(`ray get-auth-token --generate` writes one; copy it to every node), in a file named by
RAY_AUTH_TOKEN_PATH, or in RAY_AUTH_TOKEN. A Ray started by the sweep enables token
authentication by itself (Ray 2.59 and later), writing ~/.ray/auth_token when there is none.
"""
import os
import signal
import socket
import sys
import time
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import ray

from runfolder import exit_codes, lease
from runfolder.files import LEASE
from sweeps import local, ray_reaper, runner
from sweeps.plan import PlanError

MAX_RETRIES = 3  # times a task lost with its worker or node is started again
TASK_FAILED = 1  # the status of a task that ended without its run's exit status (see the message)
_tasks = {}  # {run name: its task's ObjectRef} while run() waits for it, for stop()
_stopped = set()  # the runs that stop() cancelled: their ends are no failures


def task_resources(opts):
    """What one run asks Ray for: {"num_cpus": C x G, "num_gpus": G (--gpus-per-run), or 1/K of
    one (--runs-per-gpu), or 0 with cpu_only}."""
    for flag, value in (("--runs-per-gpu", opts.runs_per_gpu), ("--cpus-per-run", opts.cpus_per_run),
                        ("--gpus-per-run", opts.gpus_per_run)):
        if value < 1:
            raise PlanError(f"{flag} {value}: must be at least 1")
    if opts.gpus_per_run > 1 and opts.runs_per_gpu > 1:
        raise PlanError(f"--gpus-per-run {opts.gpus_per_run} and --runs-per-gpu {opts.runs_per_gpu} cannot be "
                        "combined: a run of several GPUs has each of them to itself")
    gpus = opts.gpus_per_run if opts.gpus_per_run > 1 else 1 / opts.runs_per_gpu
    return {"num_cpus": opts.cpus_per_run * opts.gpus_per_run, "num_gpus": 0 if opts.cpu_only else gpus}


def describe(resources, address):
    return (f"each run asks for {resources['num_cpus']:g} CPU and {resources['num_gpus']:g} GPU, on "
            + (f"the Ray cluster at {address}" if address else "a Ray started on this machine for the sweep"))


def run(sweep_dir, runs, opts):
    """Every run as a Ray task, waited for; returns {name: exit status} in plan order (None for a
    dry run). On Ctrl-C or SIGTERM (runner.Interrupted) the tasks are cancelled, their workers
    killed, and the interrupt goes on."""
    resources = task_resources(opts)
    print(f"ray: {describe(resources, opts.ray_address)}", flush=True)
    if opts.dry_run:
        local.show(sweep_dir, runs, opts)
        return None
    with connected(opts.ray_address):
        check_fits(resources, started_here=opts.ray_address is None)
        task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False, **resources)(run_in_worker)
        refs = {r.name: task.options(name=f"sweep:{r.name}").remote(str(sweep_dir), r, opts.python, opts.threads,
                                                                    opts.gpus_per_run)
                for r in runs}
        # Waited for as futures, not in ray.wait: a signal arriving in a Ray call comes out of it as a
        # plain KeyboardInterrupt instead of the runner.Interrupted that the sweep's handler raised.
        waiting, statuses = {ref.future(): name for name, ref in refs.items()}, {}
        _tasks.update(refs)
        try:
            for done in futures.as_completed(waiting):
                statuses[waiting[done]] = status_of(done, waiting[done])
        except KeyboardInterrupt:  # runner.Interrupted
            for name, ref in refs.items():
                if name not in statuses:  # force: the worker is killed, and its run with it
                    ray.cancel(ref, force=True)
            raise
        finally:
            for name in refs:
                _tasks.pop(name, None)
    return {r.name: statuses[r.name] for r in runs}


def stop(sweep_dir, name):
    """Stop run `name` alone through Ray: ray.cancel of its task, not forced, raises
    KeyboardInterrupt in the worker, whose run_one sends the run SIGTERM and waits for its clean
    stop (checkpoint kept); a cancelled task is not retried. True when the task was going."""
    ref = _tasks.get(name)
    if ref is None:
        return False
    _stopped.add(name)
    ray.cancel(ref, force=False)
    return True


@contextmanager
def connected(address):
    """Connected to the cluster at `address`, or to a local Ray started here (None) and stopped on exit."""
    # The tasks import sweeps from the repository: the same path on every node.
    runtime_env = {"env_vars": {"PYTHONPATH": str(runner.REPO)}}
    if address:
        ray.init(address=address, runtime_env=runtime_env)
        try:
            yield
        finally:
            ray.shutdown()
        return
    with ray_reaper.reaped_on_exit():  # even after kill -9 of this process
        # "local": a new Ray, never one that another user on this machine started
        ray.init(address="local", include_dashboard=False, runtime_env=runtime_env)
        try:
            yield
        finally:
            ray.shutdown()


def check_fits(resources, started_here):
    """A task that no node can hold waits for ever: refuse it on the sweep's own Ray, warn on a
    cluster (whose autoscaler may add such a node)."""
    needed = {"CPU": resources["num_cpus"], "GPU": resources["num_gpus"]}
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if any(all(node.get(key, 0) >= amount for key, amount in needed.items()) for node in nodes):
        return
    have = "; ".join(f"{node.get('CPU', 0):g} CPUs, {node.get('GPU', 0):g} GPUs" for node in nodes) or "no nodes"
    message = (f"no Ray node has the {needed['CPU']:g} CPUs and {needed['GPU']:g} GPU one run asks for "
               f"(--cpus-per-run, --runs-per-gpu, --gpus-per-run; runs with --device cpu ask for no GPU); the nodes "
               f"have: {have}")
    if started_here:
        raise PlanError(message)
    print(f"sweep: warning: {message}; the runs wait until such a node joins", file=sys.stderr, flush=True)


def status_of(done, name):
    """The run's exit status from its task's future, after the lines that announced its end; or
    TASK_FAILED with a message when the task itself failed."""
    try:
        status, lines = done.result()
        for line in lines:
            print(line, flush=True)
        return status
    except ray.exceptions.RayError as e:
        if isinstance(e, ray.exceptions.TaskCancelledError) and name in _stopped:  # by stop(): the run
            _stopped.discard(name)  # stopped cleanly on the SIGTERM that its worker sent it
            print(f"{'stopped':<7} {name} (its task was cancelled; stopped on its own)", flush=True)
            return exit_codes.stopped_by(signal.SIGTERM)
        if isinstance(e, ray.exceptions.RayTaskError):  # an error outside the run (its log, its folder)
            reason = f"{type(e.cause).__name__}: {e.cause}"
        else:  # lost more than MAX_RETRIES times, or cancelled
            reason = f"{type(e).__name__}: {next(iter(str(e).strip().splitlines()), '')}"
    print(f"{'LOST':<7} {name} ({reason}); rerun the sweep to resume it", file=sys.stderr, flush=True)
    return TASK_FAILED


def run_in_worker(sweep_dir, run, python, threads, processes=1):
    """The task: the run as a subprocess of this Ray worker (a retry resumes it), a torchrun of
    `processes` processes when more than 1. Returns (exit status, the lines run_one announced
    after its first). The first, how the run began, is printed here and reaches the sweep through
    Ray; the others are the sweep's to print, since Ray forwards a worker's output with a delay
    and drops what comes once the sweep's Ray is stopping."""
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")  # set by Ray for a task with GPUs
    env = {"CUDA_VISIBLE_DEVICES": gpus} if gpus else None
    lines = []

    def announce(line, **print_options):
        if not lines:
            runner.say(line)
        lines.append(line)

    status = runner.run_one(sweep_dir, run, python, threads, env=env, announce=announce, processes=processes)
    while status == exit_codes.EXIT_BUSY and owner_is_gone(Path(sweep_dir) / run.name):
        status = runner.run_one(sweep_dir, run, python, threads, env=env, announce=announce, processes=processes)
    return status, lines[1:]


def owner_is_gone(run_dir, poll=2.0, grace=5.0):
    """After a run reported its folder owned (exit 75): wait while the owner looks dead. True once
    the folder may be taken over: its lease removed, its process (of this host) ended, or its
    lease (from another host: a lost node) not renewed for MTL_LEASE_TIMEOUT seconds. False when
    the owner is alive: its lease renewed meanwhile, or its process of this host still running
    after `grace` seconds (a killed worker's run stops within 2 s)."""
    lease_path = Path(run_dir) / LEASE
    first, timeout, since = lease.read_lease(lease_path), lease.lease_timeout(), time.monotonic()
    while True:
        held = lease.read_lease(lease_path)
        if held is None or not isinstance(held.get("renewed"), (int, float)):
            return True
        if held != first:
            return False
        if held.get("host") == socket.gethostname():
            if not lease.pid_alive(held.get("pid")):
                return True
            if time.monotonic() - since > grace:
                return False
        elif time.time() - held["renewed"] >= timeout:
            return True
        time.sleep(poll)
