"""--status: each run of a sweep with its state, epochs and last test metrics, read from the
run folders alone, so it answers the same on every backend and from any node.

States (runfolder/state.py decides them): finished, running (a live owner), failed (a non-zero
<name>.exit, or finished but inconsistent: summary.json or metrics.jsonl disagree, which
evaluation/summary.py checks without torch), pruned (stopped early by the tuner's --prune, with
<name>.pruned beside it: left alone until the mark is removed), pending (not started, or
interrupted: stopped and resumable).
"""
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from evaluation.summary import InconsistentRun, finished_summary
from runfolder import exit_codes, state
from runfolder.files import CONFIG, METRICS, SUMMARY, log_file, pruned_file
from tasks import DEFAULT_TASKS, TASKS, reported_metric_keys

from . import plan

STATES = (state.FINISHED, state.RUNNING, state.FAILED, state.PRUNED, state.PENDING)


@dataclass(frozen=True)
class StatusRow:
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
    """(the rows of metrics.jsonl that are JSON objects, a note on the lines that are not): one bad
    line, a torn last one included, must not hide the others."""
    try:
        lines = [line for line in (run_dir / METRICS).read_text().splitlines() if line.strip()]
    except OSError:
        return [], ""
    rows, bad = [], []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("test", {}), dict):
            rows.append(row)
        else:
            bad.append(str(number))
    return rows, (f"{METRICS} line{'s' if len(bad) > 1 else ''} {', '.join(bad)}: no metrics row" if bad else "")


def _inconsistency(run_dir, config):
    """Why the finished run in run_dir is inconsistent (evaluation/summary.py), "" when it is not."""
    try:
        lines = (run_dir / METRICS).read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        finished_summary(config, rows, json.loads((run_dir / SUMMARY).read_text()))
    except (OSError, ValueError) as e:  # InconsistentRun is a ValueError; so is a line that is no JSON
        return str(e) if isinstance(e, InconsistentRun) else f"unreadable {METRICS} or {SUMMARY} ({e})"
    return ""


def status_row(sweep_dir, name):
    """The StatusRow of <sweep_dir>/<name>."""
    run_dir = Path(sweep_dir) / name
    config = _json(run_dir / CONFIG)
    rows, damaged = _rows(run_dir)
    settings = config.get("settings") if isinstance(config, dict) else None
    total = settings.get("epochs", "?") if isinstance(settings, dict) else "?" if config is not None else None
    epochs = f"{len(rows)}/{total}" if total is not None else "-"
    test = rows[-1].get("test", {}) if rows else {}
    metrics = {key: test[key] for key in reported_metric_keys(TASKS) if isinstance(test.get(key), (int, float))}
    try:
        run = state.run_state(sweep_dir, name)
    except (state.ExitFileError, OSError) as e:  # a status never fails on one run
        return StatusRow(name, state.FAILED, epochs, metrics, str(e))
    shown, note = run.state, ""
    if run.state == state.RUNNING:
        note = f"{run.owner.get('host', '?')} pid {run.owner.get('pid', '?')}"
    elif run.state == state.FAILED:
        note = f"exit {run.exit_status}, see {log_file(sweep_dir, name).name}"
    elif run.state == state.FINISHED:
        problem = _inconsistency(run_dir, config)
        if problem:
            shown, note = state.FAILED, f"inconsistent: {problem}"
    elif run.state == state.PRUNED:
        note = f"{state.read_pruned(sweep_dir, name)}; remove {pruned_file(sweep_dir, name).name} to resume"
    elif run.state == state.INTERRUPTED:  # pending too: rerunning the sweep resumes it
        shown, note = state.PENDING, "stopped; resumes"
    return StatusRow(name, shown, epochs, metrics, "; ".join(filter(None, (note, damaged))))


def report(sweep_dir):
    """The lines --status prints: a count per state, then one line per run in plan order."""
    states = [status_row(sweep_dir, run.name) for run in plan.read_plan(sweep_dir)]
    # pruned only where there are some: only a tuner's --prune makes them
    counts = ", ".join(f"{n} {kind}" for kind in STATES
                       for n in [sum(s.state == kind for s in states)] if n or kind != state.PRUNED)
    width = max([len("run")] + [len(s.name) for s in states])
    # The default tasks' columns, and those of every other task a run reports.
    shown = [key for key in reported_metric_keys(TASKS)
             if key in reported_metric_keys(DEFAULT_TASKS) or any(key in s.metrics for s in states)]
    lines = [f"sweep {Path(sweep_dir).name} ({sweep_dir}): {len(states)} runs: {counts}",
             f"{'run':<{width}}  {'state':<8}  {'epoch':>7}" + "".join(f"  {k:>8}" for k in shown)]
    for s in states:
        values = "".join(f"  {s.metrics[k]:>8.4f}" if k in s.metrics else f"  {'-':>8}" for k in shown)
        lines.append(f"{s.name:<{width}}  {s.state:<8}  {s.epochs:>7}{values}" + (f"  {s.note}" if s.note else ""))
    return lines


def main(sweep_dir):
    """Print the report; exit status 0, or 2 (bad input) when the folder holds no plan."""
    if Path(sweep_dir).exists() and not Path(sweep_dir).is_dir():
        print(f"sweep: {sweep_dir}: not a folder; --status reads the sweep folder <--runs>/<--sweep>", file=sys.stderr)
        return exit_codes.EXIT_BAD_INPUT
    try:
        lines = report(sweep_dir)
    except plan.PlanError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return exit_codes.EXIT_BAD_INPUT
    print("\n".join(lines))
    return exit_codes.EXIT_OK
