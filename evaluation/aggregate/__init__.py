"""A sweep folder → <sweep>.md, <sweep>.csv and <sweep>_curves.png in runs/<sweep>/results/.

    python3 -m evaluation.aggregate runs/<sweep> [--results DIR] [--baseline FILE] [--separate KEY ...]

The output stays inside the sweep's folder unless --results names another (the committed
demonstrations pass --results results).

The field's reporting convention (docs/methods.md, "Reporting"): per seed the mean of the last N = min(10,
epochs) epochs' test metrics (summary.json "last10", N its "last10_epochs"); per (method,
weighting) the mean ± sample std (ddof = 1) over seeds; Δm of the averaged metrics; Welch's
t-test of the per-seed values against the adam + ew row, with Holm's correction over all the
tests of the table. Δm is affine in the metrics, so Δm of the averaged metrics is the mean of
the per-seed Δm, whose std and t-test are reported with it.

The multi-task runs of a sweep train one task set (its columns: the reported metrics of those
tasks, tasks/); runs of another multi-task set are refused, so a semantic + depth row is never
set beside a semantic + instance + depth one: aggregate them from separate sweep folders.
Single-task runs of the set's tasks are its baselines. Every finished run of the sweep,
single-task ones included, must share one setup
(evaluation.run_config.setup_of: every setting that changes results except the seed, method,
weighting and tasks, plus the epochs and the data's identity, size and image size); a sweep
that mixes setups is refused, naming each differing setting, its values and their runs.
`--separate KEY ...` makes the named settings part of the row on purpose (an lr sweep): a row
is then (method, weighting, KEY=value ...), tested against the adam + ew row with the same
values, and its Δm uses single-task runs with the same values.

Baselines for Δm: the published single-task row only for the real 7-class 128x256 release;
the sweep's own single-task runs (sweep.sh --single-task) or --baseline FILE in any setup.
Runs without summary.json are listed as unfinished or crashed, never averaged; their state is
runfolder/state.py's, from the run folder and the `<name>.exit` status file that a sweep writes
beside it.
"""

from pathlib import Path

from .. import weak_baseline
from ..run_record import last_epochs_phrase, read_metrics
from .collect import (
    RESULTS,
    check_sweep_setup,
    find_baselines,
    is_multi_task,
    scan_sweep,
    separated_values,
    sweep_tasks,
)
from .render import csv_fields, draw_figure, labelled, markdown, write_csv
from .statistics import group_runs, table_rows, value_order

SINGLE_TASK = "single-task"


def aggregate(sweep_dir, results_dir=None, baseline_file=None, separate=()):
    """Write <results>/<sweep>.md, .csv and _curves.png; returns the paths written. `results_dir`:
    default the sweep folder's results/; `separate`: the settings whose values make separate rows
    (--separate)."""
    sweep_dir = Path(sweep_dir)
    name = sweep_dir.resolve().name
    results_dir = Path(results_dir) if results_dir is not None else sweep_dir / RESULTS
    separate = tuple(dict.fromkeys(separate))
    finished, problems = scan_sweep(sweep_dir, results_dir)
    setup = check_sweep_setup(sweep_dir, finished, separate) if finished else None
    tasks = sweep_tasks(sweep_dir, finished)
    problems += [{"run": r.path.name, "state": f"finished, single-task {r.tasks[0]}: not a task of the sweep's "
                  f"{' + '.join(tasks)} runs", "epochs": len(read_metrics(r.path)), "note": ""}
                 for r in finished if len(r.tasks) == 1 and r.tasks[0] not in tasks]
    finished = [r for r in finished if len(r.tasks) > 1 or r.tasks[0] in tasks]
    groups = group_runs([r for r in finished if is_multi_task(r, tasks)], separate)
    by_values = {}  # separated values → the finished runs with them
    for run in finished:
        by_values.setdefault(separated_values(run, separate), []).append(run)
    single, baselines, notes = {}, {}, {}
    for values, runs in sorted(by_values.items(), key=lambda item: value_order(item[0])):
        single[values] = [r for r in runs if not is_multi_task(r, tasks)]
        rows_setup = setup | {key: runs[0].setup[key] for key in separate}
        baselines[values], notes[values] = find_baselines(tasks, rows_setup, single[values], baseline_file, separate)
    rows = table_rows(tasks, groups, baselines, separate)
    add_warnings(rows, baselines, separate, baseline_file)
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": results_dir / f"{name}.md", "csv": results_dir / f"{name}.csv"}
    averaged = last_epochs_phrase([r for runs in groups.values() for r in runs] or finished) if finished else None
    figure = None
    if finished:
        paths["png"] = results_dir / f"{name}_curves.png"
        series = dict(groups) | {(SINGLE_TASK, None, values): runs for values, runs in single.items() if runs}
        series = {(labelled(method, separate, values), weighting, values): runs
                  for (method, weighting, values), runs in series.items()}
        window = max(r.last_epochs for r in finished)
        figure = paths["png"].name, draw_figure(name, tasks, paths["png"], series, baselines, averaged, window)
    write_csv(rows, paths["csv"], csv_fields(tasks, separate))
    paths["md"].write_text(markdown(name, tasks, setup, separate, rows, baselines, notes, problems, averaged, figure))
    return paths


def add_warnings(rows, baselines, separate, baseline_file):
    """Each row's "delta_m_warning": the sentence of evaluation/weak_baseline.py where its
    single-task baseline is worse than the trivial predictors, else None."""
    name = str(baseline_file) if baseline_file is not None else "of the sweep's single-task runs"
    for row in rows:
        found = baselines[tuple(row[key] for key in separate)]
        warning = weak_baseline.warning_of(found["single_task"], name) if "single_task" in found else None
        row["delta_m_warning"] = weak_baseline.describe(warning) if warning else None
