"""What state a run of a sweep is in, decided here once from its folder and the sweep's status
files (docs/design.md, "Run folder"); the sweeps, --status and the aggregation all ask this.

How far a run folder got (progress), from its files alone: ABSENT (no folder), CREATED (a folder
without config.json: the run stopped before its first write, or is starting), STARTED
(config.json), FINISHED (summary.json, written last).

A run's state: RUNNING while a live process owns its folder (the lease: lease.live_owner), else
FINISHED, else PRUNED when a tuner stopped it early (<name>.pruned, written once its process had
exited; the sweep leaves it alone until the mark is removed), else FAILED when its last start by
the sweep ended with a non-zero <name>.exit, else INTERRUPTED when it started (stopped, and
resumable), else PENDING. A run stopped by the sweep itself (Ctrl-C) has no .exit, since it is
not failed: it resumes.
"""
from dataclasses import dataclass
from pathlib import Path

from . import atomic, lease
from .files import CONFIG, SUMMARY, exit_file, pruned_file

ABSENT, CREATED, STARTED, FINISHED = "absent", "created", "started", "finished"
RUNNING, FAILED, INTERRUPTED, PENDING, PRUNED = "running", "failed", "interrupted", "pending", "pruned"


class ExitFileError(ValueError):
    """A <name>.exit that holds no exit status; the message names the file."""


def progress(run_dir):
    """ABSENT, CREATED, STARTED or FINISHED: how far the run in `run_dir` got."""
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY).exists():
        return FINISHED
    if (run_dir / CONFIG).exists():
        return STARTED
    return CREATED if run_dir.is_dir() else ABSENT


def write_exit(sweep_dir, name, status):
    """<sweep>/<name>.exit: the exit status of the run's start that just ended."""
    atomic.write_text(exit_file(sweep_dir, name), f"{status}\n")


def read_exit(sweep_dir, name):
    """The exit status in <sweep>/<name>.exit, None when there is none; ExitFileError when the
    file holds no integer."""
    path = exit_file(sweep_dir, name)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise ExitFileError(f"{path}: expected an exit status (an integer) written by scripts/sweep.sh") from None


class StillRunning(RuntimeError):
    """A pruned mark was asked for a run whose process has not exited, or that finished."""


def write_pruned(sweep_dir, name, reason):
    """<sweep>/<name>.pruned, holding `reason` (one line: why the tuner stopped it). Only once the
    run's process has exited (no live owner), so that the mark never sits beside a run that goes
    on; and never for a finished run, which is a result and stays one. StillRunning otherwise."""
    run_dir = Path(sweep_dir) / name
    owner = lease.live_owner(run_dir)
    if owner is not None:
        raise StillRunning(f"{run_dir}: still owned by pid {owner.get('pid', '?')} on {owner.get('host', '?')}; "
                           "a run is marked pruned only after its process exited")
    if progress(run_dir) == FINISHED:
        raise StillRunning(f"{run_dir}: finished before it was stopped; a finished run is not pruned")
    atomic.write_text(pruned_file(sweep_dir, name), f"{reason}\n")


def read_pruned(sweep_dir, name):
    """The reason in <sweep>/<name>.pruned, None when the run is not marked pruned."""
    try:
        return pruned_file(sweep_dir, name).read_text().strip()
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class RunState:
    """A run of a sweep: its state, how far its folder got, the exit status of its last start by
    the sweep (None while there is none) and the lease of the live process that owns its folder."""
    state: str  # RUNNING, FINISHED, PRUNED, FAILED, INTERRUPTED or PENDING
    progress: str  # ABSENT, CREATED, STARTED or FINISHED
    exit_status: int | None
    owner: dict | None


def run_state(sweep_dir, name):
    """The RunState of run `name` of the sweep in `sweep_dir`; ExitFileError for an unreadable .exit.

    The lease, not a try at the flock, tells a running run: taking the lock even for a moment
    could make a run that starts then exit 75, and on some network file systems flock holds per
    node only; the lease is what acquire() itself trusts across nodes, so running means "a start
    now would be refused as busy" (a dead node's run shows as running until its lease times out).
    """
    run_dir = Path(sweep_dir) / name
    owner, reached, status = lease.live_owner(run_dir), progress(run_dir), read_exit(sweep_dir, name)
    if owner is not None:
        state = RUNNING
    elif reached == FINISHED:
        state = FINISHED
    elif pruned_file(sweep_dir, name).exists():
        state = PRUNED
    elif status not in (None, 0):
        state = FAILED
    else:
        state = INTERRUPTED if reached == STARTED else PENDING
    return RunState(state, reached, status, owner)
