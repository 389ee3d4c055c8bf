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
Runs without summary.json are listed as unfinished or crashed, never averaged; a crash is
known from the `<name>.exit` status file that scripts/sweep.sh writes beside the run folder.
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from tasks import DEFAULT_TASKS, canonical, reported_metrics

from .baseline import build_baseline, describe_seeds
from .delta_m import delta_m, load_baseline, registered_metrics, select_baseline
from .figures import Curve, Panel, plot_curves
from .run_config import describe_differences, setting_text, setup_differences, shared_setup
from .run_record import (
    CONFIG,
    METRICS,
    SUMMARY,
    RunError,
    check_distinct_seeds,
    last_epochs_phrase,
    last_epochs_text,
    read_json,
    read_metrics,
    read_run,
)
from .significance import holm, mean_std, welch_p

REFERENCE = ("adam", "ew")  # the row every other (method, weighting) is tested against
SINGLE_TASK = "single-task"
RESULTS = "results"  # the default output folder, inside the sweep's folder
ALPHA = 0.05
BASELINE_KINDS = ("published", "single_task")
FIGURE_KINDS = ("single_task", "published")  # the figure's Δm: single-task runs of the sweep's own setup first
# Name, scale and decimals of the Δm columns in the markdown (the metrics': their tasks' Metric).
DELTA_SHOWN = {"delta_m_published": ("Δm vs published", 1, 2), "delta_m_single_task": ("Δm vs single-task", 1, 2)}
# The shared setup's settings that the markdown names; every run's config.json has them all.
SETUP_SHOWN = ("data_name", "synthetic", "image_size", "train_samples", "val_samples", "classes", "arch", "width_mult",
               "epochs", "batch_size", "lr")


def metric_keys(tasks):
    """The metric columns of a sweep of `tasks`: their reported metrics, in the registry's order."""
    return tuple(m.key for m in reported_metrics(tasks))


def columns(tasks):
    """Every statistic's column: the metrics, then Δm against each kind of baseline."""
    return metric_keys(tasks) + tuple(f"delta_m_{kind}" for kind in BASELINE_KINDS)


def csv_fields(tasks, separate=()):
    """The CSV header: the row's key (method, weighting, the separated settings), then the statistics
    (p: Welch's raw p-value; p_holm: Holm-adjusted over every test of the table, which the `*` marks use)."""
    return ("method", "weighting", *separate, "n_seeds", "seeds", "epochs_averaged") + tuple(
        f"{col}{suffix}" for col in columns(tasks) for suffix in ("", "_std", "_p", "_p_holm"))


def shown(col):
    """(name, scale, decimals) of a column in the markdown: mIoU and PixAcc in percent as in the papers."""
    metric = registered_metrics().get(col)
    return DELTA_SHOWN[col] if metric is None else (metric.label, metric.scale, metric.digits)


def in_percent(col):
    return col in DELTA_SHOWN or registered_metrics()[col].scale == 100


def sweep_tasks(sweep_dir, runs):
    """The task set of the sweep's multi-task runs (of its single-task runs when it has none; the
    default tasks, for an empty table's columns, when it has no finished runs), in the registry's
    order; RunError naming the runs when multi-task runs train different sets."""
    sets = {}
    for run in runs:
        if len(run.tasks) > 1:
            sets.setdefault(canonical(run.tasks), []).append(run.path.name)
    if len(sets) > 1:
        listed = "; ".join(f"{' + '.join(tasks)}: {', '.join(names[:4])}" + (" ..." if len(names) > 4 else "")
                           for tasks, names in sets.items())
        raise RunError(f"{sweep_dir}: the finished multi-task runs train different task sets ({listed}); their "
                       f"metrics and Δm are not comparable: aggregate each task set from a sweep folder of its own")
    if sets:
        return next(iter(sets))
    return canonical({run.tasks[0] for run in runs}) if runs else DEFAULT_TASKS


def is_multi_task(run, tasks):
    return len(run.tasks) > 1 and canonical(run.tasks) == tasks


def separated_values(run, separate):
    """The run's values of the settings that separate rows (--separate), as setting_text writes them."""
    return tuple(setting_text(run.setup[key]) for key in separate)


def value_order(values):
    """Separated values in order: numbers by value, before anything else by text."""
    def order(text):
        try:
            return 0, float(text), ""
        except ValueError:
            return 1, 0.0, text
    return tuple(order(text) for text in values)


def group_order(key):
    method, weighting, values = key
    return (key[:2] != REFERENCE, method, weighting, value_order(values))


def labelled(text, separate, values):
    """"adam + ew", or with separated settings "adam + ew (lr=0.001)"."""
    return text + (f" ({', '.join(f'{k}={v}' for k, v in zip(separate, values))})" if separate else "")


def _exit_status(sweep_dir, name):
    path = sweep_dir / f"{name}.exit"
    try:
        return int(path.read_text().strip()) if path.exists() else None
    except ValueError:
        raise RunError(f"{path}: expected an exit status (an integer) written by scripts/sweep.sh") from None


def _last_log_line(sweep_dir, name):
    path = sweep_dir / f"{name}.log"
    if not path.exists():
        return ""
    lines = [s.strip() for s in path.read_text(errors="replace").replace("\r", "\n").splitlines() if s.strip()]
    return lines[-1][:200] if lines else ""


def _not_averaged(sweep_dir, name):
    """A row of the 'not averaged' list: name, state, finished epochs, last log line."""
    metrics = sweep_dir / name / METRICS
    # Count lines rather than parse them: a killed run may have left a torn last line.
    epochs = sum(1 for line in metrics.read_text().splitlines() if line.strip()) if metrics.exists() else 0
    status = _exit_status(sweep_dir, name)
    if not (sweep_dir / name).is_dir():
        state = f"failed before creating its run folder (exit {status})"
    elif not (sweep_dir / name / CONFIG).exists():
        state = "unfinished (no config.json yet)" if status is None else f"crashed (exit {status}), no config.json"
    else:
        state = "unfinished (running or interrupted)" if status is None else f"crashed (exit {status})"
    return {"run": name, "state": state, "epochs": epochs, "note": _last_log_line(sweep_dir, name)}


def scan_sweep(sweep_dir, results_dir=None):
    """(finished Runs, not-averaged rows); `results_dir`, the output folder, is no run even where
    it lies in the sweep's folder, and neither is the default one."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise RunError(f"{sweep_dir}: not a folder; expected a sweep folder runs/<sweep> of run folders")
    finished, problems = [], []
    outputs = {(sweep_dir / RESULTS).resolve()} | ({Path(results_dir).resolve()} if results_dir else set())
    # hidden folders belong to the launchers (submitit's .slurm), not to runs
    run_names = sorted(p.name for p in sweep_dir.iterdir()
                       if p.is_dir() and not p.name.startswith(".") and p.resolve() not in outputs)
    crashed_early = sorted(p.stem for p in sweep_dir.glob("*.exit") if not (sweep_dir / p.stem).exists()
                           and _exit_status(sweep_dir, p.stem) != 0)
    for name in run_names:
        if (sweep_dir / name / SUMMARY).exists():
            finished.append(read_run(sweep_dir / name))
        else:
            problems.append(_not_averaged(sweep_dir, name))
    return finished, problems + [_not_averaged(sweep_dir, name) for name in crashed_early]


def check_sweep_setup(sweep_dir, runs, separate):
    """The setup all runs share, without the separated settings; RunError naming every other
    setting whose values differ, or a --separate KEY that is not a setting of the runs."""
    known = sorted(set().union(*(run.setup for run in runs)))
    unknown = [key for key in separate if key not in known]
    if unknown:
        raise RunError(f"--separate {' '.join(unknown)}: not a setting of these runs; the settings that can "
                       f"separate rows are {', '.join(known)}")
    setup, differences = shared_setup(runs, ignore=separate)
    if differences:
        keys = " ".join(dict.fromkeys([*separate, *differences]))
        raise RunError(f"{sweep_dir}: the finished runs differ in settings that change results:\n"
                       f"{describe_differences(differences)}\n"
                       f"Runs averaged into one row or tested against each other must agree on all of them. To make "
                       f"such settings separate rows on purpose (a sweep over them): python3 -m evaluation.aggregate "
                       f"{sweep_dir} --separate {keys}; otherwise leave the runs that differ out (move their "
                       f"folders out of {sweep_dir})")
    return setup


def group_runs(runs, separate):
    """{(method, weighting, separated values): [Run] by seed}, adam + ew first."""
    groups = {}
    for run in runs:
        key = (run.settings["method"], run.settings["weighting"], separated_values(run, separate))
        groups.setdefault(key, []).append(run)
    for seeds in groups.values():
        seeds.sort(key=lambda r: r.seed)
        check_distinct_seeds(seeds)
    return dict(sorted(groups.items(), key=lambda item: group_order(item[0])))


def find_baselines(tasks, setup, single, baseline_file=None, separate=()):
    """({kind: baseline dict}, {kind: where it comes from, or why it is absent}) for the rows of
    `setup`, the sweep's setup with the rows' values of the separated settings; `single`: the
    single-task runs with those values. A --baseline FILE measured in another setup is refused,
    unless only separated settings differ: then it serves none of these rows."""
    baselines, notes = {}, {}
    published, name, why = select_baseline(tasks, setup["classes"], tuple(setup["image_size"]), setup["synthetic"])
    if published is not None:
        baselines["published"], notes["published"] = published, f"{name}: {why}"
    else:
        notes["published"] = why
    if baseline_file is not None:
        baseline = load_baseline(baseline_file, tasks)
        source = read_json(baseline_file).get("source")
        source = source if isinstance(source, dict) else {}  # absent in hand-written files
        recorded = source.get("setup", {})
        if not isinstance(recorded, dict):
            raise RunError(f"--baseline {baseline_file}: \"source\" → \"setup\" must be an object, not {recorded!r}")
        differences = setup_differences({str(baseline_file): recorded, "the sweep's runs": setup}) if recorded else {}
        if set(differences) - set(separate):
            raise RunError(f"--baseline {baseline_file}: measured in another setup than the sweep's runs:\n"
                           f"{describe_differences(differences)}\n"
                           f"rebuild it (python3 -m evaluation.baseline) from single-task runs made with the "
                           f"sweep's settings, or leave out --baseline")
        if differences:
            notes["single_task"] = (f"not available: {baseline_file} was measured with other values of "
                                    f"{', '.join(differences)}")
        else:
            baselines["single_task"] = dict(baseline, source=source)
            notes["single_task"] = f"from {baseline_file}" + (", not the sweep's own single-task runs" if single else "")
    elif single:
        try:
            baselines["single_task"] = build_baseline(single, tasks)
            notes["single_task"] = f"the sweep's single-task runs, {describe_seeds(baselines['single_task'])}"
        except RunError as e:
            notes["single_task"] = f"not available: {e}"
    else:
        notes["single_task"] = ("not available: no single-task runs in the sweep folder (scripts/sweep.sh "
                                "--single-task) with these rows' settings and no --baseline FILE")
    return baselines, notes


def group_samples(tasks, runs, baselines):
    """Per-seed values of every column: the tasks' metrics, and Δm against each baseline."""
    keys = metric_keys(tasks)
    samples = {m: [r.last10(m) for r in runs] for m in keys}
    for kind, baseline in baselines.items():
        samples[f"delta_m_{kind}"] = [delta_m({m: r.last10(m) for m in keys}, baseline) for r in runs]
    return samples


def table_rows(tasks, groups, baselines, separate=()):
    """One dict per group with the csv_fields: mean, std (None for one seed), p-value and its Holm
    adjustment over all the table's tests (None where undefined, or for a reference row itself) of
    every column. `baselines`: {separated values: {kind: baseline}}; a row's reference is the
    adam + ew row with its separated values."""
    samples = {key: group_samples(tasks, runs, baselines[key[2]]) for key, runs in groups.items()}
    rows = []
    for (method, weighting, values), runs in groups.items():
        reference = samples.get((*REFERENCE, values))
        row = {"method": method, "weighting": weighting, **dict(zip(separate, values)), "n_seeds": len(runs),
               "seeds": " ".join(str(r.seed) for r in runs), "epochs_averaged": last_epochs_text(runs)}
        for col in columns(tasks):
            column = samples[(method, weighting, values)].get(col)
            row[col], row[f"{col}_std"] = mean_std(column) if column else (None, None)
            compare = column and reference is not None and (method, weighting) != REFERENCE
            row[f"{col}_p"] = welch_p(column, reference[col]) if compare else None
        rows.append(row)
    tests = [(row, col) for row in rows for col in columns(tasks)]
    for (row, col), adjusted in zip(tests, holm([row[f"{col}_p"] for row, col in tests]), strict=True):
        row[f"{col}_p_holm"] = adjusted
    return rows


def family_size(tasks, rows):
    """How many tests Holm's correction counts: every defined p-value of the table."""
    return sum(row[f"{col}_p"] is not None for row in rows for col in columns(tasks))


def write_csv(rows, path, fields):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in fields})


def _cell(row, col):
    _, scale, digits = shown(col)
    if row[col] is None:
        return ""
    sign = "+" if col.startswith("delta_m") else ""
    text = f"{row[col] * scale:{sign}.{digits}f}"
    if row[f"{col}_std"] is not None:
        text += f" ± {row[f'{col}_std'] * scale:.{digits}f}"
    return text + _mark(row[f"{col}_p_holm"])


def _mark(p_holm):
    return " *" if p_holm is not None and p_holm < ALPHA else ""


def _p_cell(row, col):
    """"Holm-adjusted p (raw p)"."""
    p = row[f"{col}_p"]
    return "" if p is None else f"{row[f'{col}_p_holm']:.3g} ({p:.3g})" + _mark(row[f"{col}_p_holm"])


def _key_cells(row, separate):
    return [row["method"], row["weighting"], *(row[key] for key in separate)]


def _md_table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines]


def describe_setup(setup, separate):
    """The shared setup's main settings in one line, then the settings that differ per row."""
    shown = ", ".join(f"{key}={setting_text(setup[key])}" for key in SETUP_SHOWN if key in setup)
    per_row = f"; per row: {', '.join(separate)}" if separate else ""
    return f"{shown} and the same values of every other setting that changes results{per_row}"


def markdown(name, tasks, setup, separate, rows, baselines, notes, problems, averaged, figure):
    """`baselines` and `notes`: {separated values: {kind: ...}}, as find_baselines gives them per value;
    `averaged`: "the last N epochs" of the rows' runs; `figure`: (file name, caption) or None."""
    kinds = [k for k in BASELINE_KINDS if any(k in found for found in baselines.values())]
    cols = metric_keys(tasks) + tuple(f"delta_m_{k}" for k in kinds)
    reference = " + ".join(REFERENCE) + (f" row with the same {', '.join(separate)}" if separate else " row")
    out = [f"# Sweep `{name}`", ""]
    if not rows:
        out += ["No finished multi-task runs.", ""]
    else:
        n_runs = sum(r["n_seeds"] for r in rows)
        delta = "Δm of the averaged metrics, ± the std of the per-seed Δm; lower is better. " if kinds else ""
        holm_note = (f"Holm's step-down correction over all {family_size(tasks, rows)} tests of this table (every cell of the "
                     f"p-value table below)")
        out += [(f"{n_runs} finished multi-task runs of {' + '.join(tasks)} in {len(rows)} groups; every run has "
                 f"{describe_setup(setup, separate)}."),
                "",
                (f"Per seed the mean of the test metrics over {averaged}; mean ± sample std (ddof = 1) over seeds "
                 f"(no std with one seed). {delta}`*`: Holm-adjusted p < {ALPHA} in Welch's t-test against the "
                 f"{reference}; {holm_note}."), ""]
        key_header = ["Method", "Weighting", *separate]
        out += _md_table(key_header + ["Seeds"] + [shown(c)[0] + " (%)" * in_percent(c) for c in cols],
                         [_key_cells(r, separate) + [r["n_seeds"]] + [_cell(r, c) for c in cols] for r in rows])
        out += ["", f"## Welch's t-test against {' + '.join(REFERENCE)}: Holm-adjusted p (raw p), two-sided", ""]
        if not any(REFERENCE == (r["method"], r["weighting"]) for r in rows):
            out += [f"No {' + '.join(REFERENCE)} row in this sweep: no tests."]
        else:
            out += _md_table(key_header + [shown(c)[0] for c in cols],
                             [_key_cells(r, separate) + [_p_cell(r, c) for c in cols] for r in rows
                              if (r["method"], r["weighting"]) != REFERENCE])
            no_reference = f", or no {reference}" if separate else ""
            out += ["", (f"{holm_note}; `*`: adjusted p < {ALPHA}. Empty: undefined (fewer than two seeds on a side, "
                         f"or no spread on either side{no_reference}). The CSV has both: `<column>_p` raw, "
                         f"`<column>_p_holm` adjusted.")]
    out += ["", "## Baselines for Δm", ""] if notes else []
    for values, found in notes.items():
        for kind, note in found.items():
            line = f"- {labelled(kind.replace('_', '-'), separate, values)}: {note}"
            if kind in baselines[values]:
                baseline = baselines[values][kind]
                std = baseline.get("source", {}).get("std", {})
                line += "; " + ", ".join(f"{m} {baseline[m]:.6g}"
                                         + (f" ± {std[m]:.2g}" if std.get(m) is not None else "")
                                         for m in metric_keys(tasks))
            out.append(line)
    if problems:
        out += ["", "## Not averaged", ""]
        out += _md_table(["Run", "State", "Epochs done", "Last log line"],
                         [[p["run"], p["state"], p["epochs"], p["note"] and f"`{p['note']}`"] for p in problems])
    if figure:
        file_name, caption = figure
        out += ["", "## Test curves", "", caption, "", f"![test curves]({file_name})"]
    return "\n".join(out) + "\n"


def panels(tasks, delta_kind):
    """The figure's panels, named as the tables' columns with their unit and which way is better."""
    keys = list(metric_keys(tasks)) + ([f"delta_m_{delta_kind}"] if delta_kind else [])
    metrics = registered_metrics()
    better = {key: "↑" if key in metrics and metrics[key].higher_is_better else "↓" for key in keys}
    return [Panel(key, f"{shown(key)[0]}{' (%)' * in_percent(key)} {better[key]}") for key in keys]


def run_curves(tasks, run, baseline, delta_key):
    """{panel key: per-epoch test values} of one run on the tables' scale (percent where they show
    percent): its tasks' metrics, and Δm against `baseline` for a multi-task run. Only the metric
    keys are read: the epochs' rows hold other entries (a per-class dict) beside them."""
    tests = [row["test"] for row in read_metrics(run.path)]
    curves = {m.key: [m.scale * test[m.key] for test in tests] for m in reported_metrics(run.tasks)}
    if baseline is not None and is_multi_task(run, tasks):
        curves[delta_key] = [delta_m({m: test[m] for m in metric_keys(tasks)}, baseline) for test in tests]
    return curves


def figure_curves(tasks, series, baselines, delta_kind):
    """[Curve] of the series ((method, weighting or None for single-task runs, separated values) →
    runs): per panel the runs' per-epoch values, cut to the fewest epochs among them (finished
    runs of one setup share their epoch count)."""
    delta_key = f"delta_m_{delta_kind}"
    out = []
    for (method, weighting, values), runs in series.items():
        per_run = [run_curves(tasks, r, baselines[values].get(delta_kind), delta_key) for r in runs]
        stacked = {}
        for key in dict.fromkeys(key for curves in per_run for key in curves):
            rows = [curves[key] for curves in per_run if key in curves]
            epochs = min(len(row) for row in rows)
            stacked[key] = np.array([row[:epochs] for row in rows])
        out.append(Curve(method, weighting, stacked))
    return out


def seeds_text(series):
    """"3" seeds per line, or "1–3" where lines differ (a series of single-task runs has each seed twice)."""
    counts = sorted({len({r.seed for r in runs}) for runs in series.values()})
    return f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def draw_figure(name, tasks, path, series, baselines, averaged, window):
    """Draw the curves figure; returns its caption for the markdown."""
    delta_kind = next((kind for kind in FIGURE_KINDS if any(kind in found for found in baselines.values())), None)
    curves = figure_curves(tasks, series, baselines, delta_kind)
    n = seeds_text(series)
    plot_curves(path, f"{name}: test metrics per epoch, mean over {n} seeds, band min–max over seeds",
                panels(tasks, delta_kind), curves, window)
    single = " Black dotted: the single-task runs, in their own task's panels." if any(
        weighting is None for _, weighting, _ in series) else ""
    epochs = max(values.shape[1] for curve in curves for values in curve.values.values())
    shaded = f" Grey background: {averaged}, whose mean the tables report." if window < epochs else ""
    return (f"Test metrics per epoch (epoch 1 is the first): mean over seeds ({n} per line), light band from the "
            f"minimum to the maximum over seeds. Colour: weighting; line style and marker: method.{single}{shaded}")


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


def main(argv=None):
    p = argparse.ArgumentParser(description="Tables (markdown, CSV) and test curves (PNG) from a sweep folder: "
                                            "mean ± std over seeds per (method, weighting), Δm, Welch t-tests "
                                            "with Holm's correction. "
                                            "The runs must share every setting that changes results.")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="runs/<sweep>, a folder of run folders")
    p.add_argument("--results", default=None, metavar="DIR",
                   help=f"where <sweep>.md, .csv and _curves.png go (default: SWEEP_DIR/{RESULTS})")
    p.add_argument("--baseline", default=None, metavar="FILE",
                   help="single-task baseline JSON (python3 -m evaluation.baseline); default: the sweep's own "
                        "single-task runs, if any")
    p.add_argument("--separate", nargs="+", default=(), metavar="KEY",
                   help="settings (config.json keys, e.g. lr) whose values make separate rows on purpose: a row per "
                        "(method, weighting, KEY=value ...), tested against adam + ew with the same values")
    args = p.parse_args(argv)
    try:
        paths = aggregate(args.sweep_dir, args.results, args.baseline, args.separate)
    except (RunError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
