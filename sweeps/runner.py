"""One planned run as one subprocess of main_cityscapes.py, the same on every backend.

A run is started, or resumed (--resume, with its flags again, which main_cityscapes.py checks)
when its folder holds an unfinished run, and skipped when finished. Its output is appended to
<sweep>/<name>.log and its exit status written to <sweep>/<name>.exit; a run whose folder
another live process owns (exit 75) is left to its owner, with no .exit written. Because a run
always continues from its last checkpoint, a backend may retry it after preemption, a killed
worker or a lost node.

A run of several processes (--gpus-per-run G > 1) is one torchrun of G processes of
main_cityscapes.py (`python -m torch.distributed.run --standalone --nproc-per-node G`):
--standalone picks a free local rendezvous port, so such runs share a machine. torchrun forwards
a stop signal to its processes and exits 1, as it does for any failure of theirs: a run whose
folder another live process owns is told by that folder's lease instead of by exit 75.

stop_runs() stops this process's runs (Ctrl-C or SIGTERM of a sweep): they exit 130/143
keeping their checkpoints, no .exit is written for them, and no further run starts here.
stop_run(name) stops one of them the same way (a tuner's pruner), and the others go on. A run
marked pruned (<sweep>/<name>.pruned, runfolder/state.py) is skipped until the mark is removed.
"""
import os
import shlex
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

from runfolder import exit_codes, lease, state
from runfolder.files import exit_file, log_file, pruned_file

REPO = Path(__file__).resolve().parent.parent
MAIN = REPO / "main_cityscapes.py"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM of the sweep, raised in its main thread; a KeyboardInterrupt, so that
    a backend's `except KeyboardInterrupt` cleans up after either."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class BackendError(RuntimeError):
    """A backend cannot run the sweep as asked (a missing tool, a refused submission):
    scripts/sweep.sh prints the message, without a traceback, and exits 2."""


class Stopped(Exception):
    """run_one was asked to start a run after stop_runs(): the sweep is stopping."""


_lock = threading.Lock()  # guards _children, _stopped and _stopping
_print_lock = threading.Lock()
_children = {}  # {run name: its process}: the runs of this process that are going
_stopped = set()  # the names of runs stopped one by one (stop_run), whose ends are no failures
_stopping = threading.Event()  # set by stop_runs()


def launcher(python, processes=1):
    """The argv that runs main_cityscapes.py: `python MAIN`, or for a run of several processes
    `python -m torch.distributed.run --standalone --nproc-per-node N MAIN` (torchrun, through
    the runs' own interpreter, which need not have a torchrun script on PATH)."""
    if processes > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), str(MAIN)]
    return [python, str(MAIN)]


def command(sweep_dir, run, python=None, threads=None, processes=1):
    """(verb, argv) that starts or resumes `run` (a PlannedRun) in <sweep_dir>/<run.name>, as one
    process or, with processes > 1, as one torchrun of that many (--gpus-per-run). A run is
    resumed once it has started (state.progress), and started again while its folder holds no run."""
    main = launcher(python or sys.executable, processes)
    run_dir = Path(sweep_dir) / run.name
    own = list(run.flags) + (["--threads", str(threads)] if threads else [])
    if state.progress(run_dir) == state.STARTED:
        return "resume", [*main, "--resume", str(run_dir), *own]
    return "start", [*main, *own, "--out", str(sweep_dir), "--name", run.name]


def thread_share(environ, processes):
    """{"OMP_NUM_THREADS": its share} for each of a run's `processes` when the environment gives
    the run a thread count (Ray sets it to the task's CPUs), else {}: a run of several processes
    would otherwise start that many threads in each. Without one, torchrun sets 1 per process."""
    total = environ.get("OMP_NUM_THREADS", "").strip()
    if processes <= 1 or not total.isdigit():
        return {}
    return {"OMP_NUM_THREADS": str(max(1, int(total) // processes))}


def owned_elsewhere(status, run_dir, processes):
    """Whether a run that exited with `status` found its folder owned by another live process:
    exit 75 from main_cityscapes.py itself, or, through torchrun (which turns any failure into
    exit 1), a live owner's lease once every process of the run has ended."""
    if status == exit_codes.EXIT_BUSY:
        return True
    return processes > 1 and status != exit_codes.EXIT_OK and lease.live_owner(run_dir) is not None


def say(*args, **kwargs):
    """print(), flushed, for lines that several threads write at once."""
    with _print_lock:
        print(*args, **{"flush": True, **kwargs})


def stopping():
    """Whether stop_runs() was called in this process."""
    return _stopping.is_set()


def stop_runs(signum=signal.SIGTERM):
    """Forward signum to every run this process has going, and start no other. Only the first
    call forwards: a second signal would cut the runs' own clean stop short."""
    with _lock:
        if _stopping.is_set():
            return
        _stopping.set()
        for child in _children.values():
            child.send_signal(signum)


def stop_run(name, signum=signal.SIGTERM):
    """Send signum to run `name` of this process, which stops cleanly, keeping its checkpoint; its
    end is announced as stopped and writes no .exit, since it did not fail. True when the run was
    going. The signal goes to the run's process, not its group: a torchrun forwards it to its
    processes, and a second signal would cut their clean stop short."""
    with _lock:
        child = _children.get(name)
        if child is None or child.poll() is not None:
            return False
        _stopped.add(name)
        child.send_signal(signum)
        return True


def wait(child, step=0.5):
    """child.wait(), in steps: an exception raised in this thread from elsewhere (Ray's cancel of
    a task, ray_backend.stop) comes between two steps, while a single wait would hold it until
    the run had ended."""
    while True:
        try:
            return child.wait(timeout=step)
        except subprocess.TimeoutExpired:
            continue


def run_one(sweep_dir, run, python=None, threads=None, env=None, announce=say, cwd=None, processes=1):
    """Run `run` to its end; returns its exit status (0 for a run that was finished already,
    exit_codes.EXIT_BUSY for one owned by another process). env: extra environment variables
    (CUDA_VISIBLE_DEVICES); the subprocess gets MTL_PARENT_PID=<this process>, so it stops
    within seconds if this process dies (under torchrun, each of its processes does). cwd: the
    run's working directory, where relative paths in its flags are read (default: this
    process's). processes: more than 1 runs it as one torchrun of that many (--gpus-per-run).
    Raises Stopped after stop_runs()."""
    sweep_dir = Path(sweep_dir)
    if state.progress(sweep_dir / run.name) == state.FINISHED:
        announce(f"{'skip':<7} {run.name} (finished)", flush=True)
        return exit_codes.EXIT_OK
    if state.read_pruned(sweep_dir, run.name) is not None:
        announce(f"{'skip':<7} {run.name} (pruned; remove {pruned_file(sweep_dir, run.name)} to resume it)", flush=True)
        return exit_codes.EXIT_OK
    verb, argv = command(sweep_dir, run, python, threads, processes)
    log = log_file(sweep_dir, run.name)
    gpu = (env or {}).get("CUDA_VISIBLE_DEVICES")
    on_gpu = f" CUDA_VISIBLE_DEVICES={gpu}" if gpu else ""
    parent_env = {**os.environ, **(env or {})}
    child_env = {**parent_env, **thread_share(parent_env, processes), lease.PARENT_ENV: str(os.getpid())}
    with _lock:
        if _stopping.is_set():
            raise Stopped(run.name)
        _stopped.discard(run.name)
        exit_file(sweep_dir, run.name).unlink(missing_ok=True)  # no stale status while it runs
        with open(log, "a") as output:
            output.write(f"# {datetime.now():%Y-%m-%d %H:%M:%S} {verb}{on_gpu}: {shlex.join(argv)}\n")
            output.flush()
            # Its own process group: a Ctrl-C at the terminal reaches the sweep alone, which
            # forwards it once (a second signal would cut the run's own clean stop short).
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                     env=child_env, cwd=cwd, process_group=0)
        _children[run.name] = child
    announce(f"{verb:<7} {run.name}" + (f" (GPU{'s' if ',' in gpu else ''} {gpu})" if gpu else ""), flush=True)
    try:
        status = wait(child)
    except BaseException as e:  # this thread was interrupted (a worker that runs the run in its main thread)
        # SIGTERM unless the interrupt names its signal: a Ray worker, whose cancel raises a bare
        # KeyboardInterrupt here, blocks SIGINT, and the run inherits that signal mask.
        child.send_signal(getattr(e, "signum", signal.SIGTERM))
        child.wait()  # the run stops as on that signal, keeping its checkpoint
        raise
    finally:
        with _lock:
            _children.pop(run.name, None)
            stopped_alone = run.name in _stopped
    if status < 0:  # killed by signal N: 128 + N, as a shell reports it
        status = exit_codes.stopped_by(-status)
    if owned_elsewhere(status, sweep_dir / run.name, processes):
        status = exit_codes.EXIT_BUSY  # not ours to record: its owner writes the .exit
        announce(f"{'running':<7} {run.name} (owned by another process, see {log})", flush=True)
    elif stopping():  # stopped by the sweep itself: resumable, not failed
        announce(f"{'stopped':<7} {run.name} (exit {status}; rerunning the sweep resumes it)", flush=True)
    elif stopped_alone and status != exit_codes.EXIT_OK:  # stop_run: resumable, not failed
        announce(f"{'stopped':<7} {run.name} (exit {status}; stopped on its own)", flush=True)
    else:
        state.write_exit(sweep_dir, run.name, status)
        announce(f"{'done':<7} {run.name}" if status == exit_codes.EXIT_OK else
                 f"{'FAILED':<7} {run.name} (exit {status}, see {log})", flush=True)
    return status
