"""--status: each run of a sweep with its state, epochs and last test metrics, read from the
run folders alone, so it answers the same on every backend and from any node.

States: finished (summary.json), running (a live owner, evaluation.run_lock.live_owner),
failed (a non-zero <name>.exit), pending (not started, or stopped and resumable).
"""
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from evaluation import run_lock
from tasks import DEFAULT_TASKS, TASKS, reported_metrics

from . import plan, runner

STATES = ("finished", "running", "failed", "pending")


@dataclass(frozen=True)
class RunState:
    name: str
    state: str  # one of STATES
    epochs: str  # "<finished epochs>/<epochs>", "-" before the run has a config.json
    metrics: dict  # the last finished epoch's reported test metrics (tasks/)
    note: str = ""


def _json(path):
    """The JSON in path, None where it is missing or unreadable (a status never fails on one run)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rows(run_dir):
    try:
        lines = (run_dir / runner.METRICS).read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        return []


def _exit_status(sweep_dir, name):
    """The text of <name>.exit, None when there is none."""
    try:
        return (sweep_dir / f"{name}.exit").read_text().strip()
    except OSError:
        return None


def run_state(sweep_dir, name):
    """The RunState of <sweep_dir>/<name>."""
    sweep_dir = Path(sweep_dir)
    run_dir = sweep_dir / name
    # The lease, not a try at the flock: taking the lock even for a moment could make a run
    # that starts then exit 75, and on some network file systems flock holds per node only;
    # the lease is what acquire() itself trusts across nodes, so running means "a start now
    # would be refused as busy" (a dead node's run shows as running until its lease times out).
    owner = run_lock.live_owner(run_dir)
    config = _json(run_dir / runner.CONFIG)
    rows = _rows(run_dir)
    total = config.get("settings", {}).get("epochs", "?") if isinstance(config, dict) else None
    epochs = f"{len(rows)}/{total}" if total is not None else "-"
    test = rows[-1].get("test", {}) if rows else {}
    metrics = {m.key: test[m.key] for m in reported_metrics(TASKS) if isinstance(test.get(m.key), (int, float))}
    exit_status = _exit_status(sweep_dir, name)
    if owner is not None:
        return RunState(name, "running", epochs, metrics, f"{owner.get('host', '?')} pid {owner.get('pid', '?')}")
    if (run_dir / runner.SUMMARY).exists():
        return RunState(name, "finished", epochs, metrics)
    if exit_status not in (None, "0"):
        return RunState(name, "failed", epochs, metrics, f"exit {exit_status}, see {name}.log")
    return RunState(name, "pending", epochs, metrics, "stopped; resumes" if config is not None else "")


def report(sweep_dir):
    """The lines --status prints: a count per state, then one line per run in plan order."""
    states = [run_state(sweep_dir, run.name) for run in plan.read_plan(sweep_dir)]
    counts = ", ".join(f"{sum(s.state == state for s in states)} {state}" for state in STATES)
    width = max([len("run")] + [len(s.name) for s in states])
    # The default tasks' columns, and those of every other task a run reports.
    shown = [m.key for m in reported_metrics(TASKS)
             if m.key in {m.key for m in reported_metrics(DEFAULT_TASKS)} or any(m.key in s.metrics for s in states)]
    lines = [f"sweep {Path(sweep_dir).name} ({sweep_dir}): {len(states)} runs: {counts}",
             f"{'run':<{width}}  {'state':<8}  {'epoch':>7}" + "".join(f"  {k:>8}" for k in shown)]
    for s in states:
        values = "".join(f"  {s.metrics[k]:>8.4f}" if k in s.metrics else f"  {'-':>8}" for k in shown)
        lines.append(f"{s.name:<{width}}  {s.state:<8}  {s.epochs:>7}{values}" + (f"  {s.note}" if s.note else ""))
    return lines


def main(sweep_dir):
    """Print the report; exit status 0, or 2 when the folder holds no plan."""
    try:
        lines = report(sweep_dir)
    except plan.PlanError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
