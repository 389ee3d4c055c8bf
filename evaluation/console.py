"""What a run prints for a person: a short header, one line per epoch with the time left, a
final table. Paths are shown as the user would type them (relative to the current folder
when under it) and commands with the interpreter that runs them, so each can be pasted."""
import os
import shlex
import sys
from pathlib import Path

from tasks import DEFAULT_TASKS, TASKS, canonical, reported_metrics

from . import weak_baseline

RECENT_EPOCHS = 3  # the time left is extrapolated from the last few epochs' mean duration


def shown_path(path):
    """A path relative to the current folder when it lies under it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def python_command(*args):
    """A shell command running this interpreter (e.g. `.venv/bin/python main_cityscapes.py …`)."""
    return shlex.join([shown_path(sys.executable), *map(str, args)])


def tool_command(tool, *args):
    """A console script installed beside this interpreter (tensorboard), else the bare name."""
    beside = Path(sys.executable).parent / tool
    return shlex.join([shown_path(beside) if beside.exists() else tool, *map(str, args)])


def duration(seconds):
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def time_left(rows, total_epochs):
    """Seconds left: the mean duration of the last few finished epochs times the epochs to go."""
    recent = [row["seconds"] for row in rows[-RECENT_EPOCHS:]]
    return sum(recent) / len(recent) * (total_epochs - len(rows)) if recent else None


def header(run_dir, setting, data, model, delta_m_reason):
    """The run's identity in four short lines (config.json has every detail)."""
    lines = [f"run    {shown_path(run_dir)}  ({setting})", f"data   {data}", f"model  {model}"]
    if delta_m_reason is not None:
        lines.append(f"Δm     n/a: {delta_m_reason}")
    return "\n".join(lines)


def _fmt(metrics, key):
    return format(metrics[key], ".4f") if key in metrics else "-"


def short_label(metric):
    """The epoch line's name of a Metric: its label in lower case without an "Err" suffix
    (pixacc, abs, rel, inst), or as it is where it starts in lower case (mIoU)."""
    label = metric.label.removesuffix("Err") if metric.label.endswith("Err") else metric.label
    return label if label[:1].islower() else label.lower()


def reported(metrics):
    """The Metrics the console shows for a run whose metrics dict is `metrics`: those of its tasks
    and of DEFAULT_TASKS (a single-task run shows the other default task's as "-"), in the
    registry's order."""
    tasks = [name for name, cls in TASKS.items() if any(m.key in metrics for m in cls.metrics)]
    return reported_metrics(canonical({*DEFAULT_TASKS, *tasks}))


def epoch_line(row, rows, total_epochs):
    """One epoch: train losses, test metrics, Δm when a baseline applies, the validation split's
    metrics and objective when the run holds one out, its time and the time left."""
    train = row["train"]
    losses = " ".join(f"{key[5:8]} {_fmt(train, key)}" for key in train if key.startswith("loss_"))
    line = f"epoch {row['epoch'] + 1:>3}/{total_epochs}  lr {row['lr']:.1e}  train loss {losses}"
    for split in ("test", "val"):
        if split in row:
            metrics = row[split]
            line += f" | {split} " + " ".join(f"{short_label(m)} {_fmt(metrics, m.key)}" for m in reported(metrics))
            if metrics.get("delta_m") is not None:
                line += f" Δm {metrics['delta_m']:+.2f}%"
    if "val_objective" in row:
        line += f" obj {row['val_objective']:.4f}"
    left = time_left(rows, total_epochs)
    line += f"  ({duration(row['seconds'])}"
    return line + (f", ~{duration(left)} left)" if left else ")")


def last_n_label(n):
    return f"last-{n} mean"  # N = min(10, epochs): a shorter run averages every epoch it has


def final_table(summary, baseline, baseline_name):
    """Final and last-min(10, N)-epoch mean test metrics, the baseline and Δm; with a validation
    split, also the test and val metrics at the epoch the validation objective selects."""
    averaged = last_n_label(summary.get("last10_epochs", 10))
    best = summary.get("best_val_epoch")
    at_best = "" if best is None else f"{f'test@ep{best + 1}':>12}{f'val@ep{best + 1}':>12}"
    lines = [f"{'test':<10}{'final':>12}{averaged:>15}{'baseline':>12}{at_best}"]
    for key in (m.key for m in reported_metrics(TASKS)):
        if key in summary["final"]:
            base = f"{baseline[key]:.4f}" if baseline and key in baseline else "-"
            line = f"{key:<10}{summary['final'][key]:>12.4f}{summary['last10'][key]:>15.4f}{base:>12}"
            if best is not None:
                line += f"{summary['test_at_best_val'][key]:>12.4f}{summary['val_at_best_val'][key]:>12.4f}"
            lines.append(line)
    dm = summary["delta_m"]
    if dm["baseline"] is not None:
        lines.append(f"{'delta_m':<10}{dm['final']:>+11.2f}%{dm['last10']:>+14.2f}%   (vs {baseline_name}; "
                     f"lower is better)")
    if "delta_m_warning" in summary:
        lines.append(f"warning: {weak_baseline.describe(summary['delta_m_warning'])}")
    if best is not None:
        chosen = summary["selection"]
        lines.append(f"epoch {best + 1} selected on val by {chosen['by']} ({chosen['direction']}d: "
                     f"{chosen['value']:.4f}); val is held out of train/, test is the release's val/ folder")
    return "\n".join(lines)


def thread_count(torch_threads):
    return f"{torch_threads} thread" + ("s" if torch_threads != 1 else "") + (
        " (OMP_NUM_THREADS)" if os.environ.get("OMP_NUM_THREADS") else "")
