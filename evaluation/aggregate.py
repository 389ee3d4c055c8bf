"""A sweep folder → results/<sweep>.md, results/<sweep>.csv and results/<sweep>_curves.png.

    python3 -m evaluation.aggregate runs/<sweep> [--results results] [--baseline FILE]

The field's reporting convention (METHODS §2): per seed the mean of the last 10 epochs'
test metrics (summary.json "last10"); per (method, weighting) the mean ± sample std
(ddof = 1) over seeds; Δm of the averaged metrics; Welch's t-test of the per-seed values
against the adam + ew row. Δm is affine in the metrics, so Δm of the averaged metrics is
the mean of the per-seed Δm, whose std and t-test are reported with it.

Baselines for Δm: the published single-task row only for the real 7-class 128x256 release;
the sweep's own single-task runs (sweep.sh --single-task) or --baseline FILE in any setup.
Runs without summary.json are listed as unfinished or crashed, never averaged; a crash is
known from the `<name>.exit` status file that scripts/sweep.sh writes beside the run folder.
"""
import argparse
import csv
import math
import sys
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: the Agg canvas, no global backend state
from matplotlib.ticker import MaxNLocator
from scipy import stats

from .baseline import (TASK_METRICS, RunError, build_baseline, check_distinct_seeds, check_same_setup, mean_std,
                       read_json, read_run)
from .delta_m import METRIC_SIGNS, delta_m, load_baseline, select_baseline
from .run_record import CONFIG, METRICS, SUMMARY, read_metrics

REFERENCE = ("adam", "ew")  # the row every other (method, weighting) is tested against
SINGLE_TASK = "single-task"
ALPHA = 0.05
BASELINE_KINDS = ("published", "single_task")
COLUMNS = tuple(METRIC_SIGNS) + tuple(f"delta_m_{kind}" for kind in BASELINE_KINDS)
CSV_FIELDS = ("method", "weighting", "n_seeds", "seeds") + tuple(
    f"{col}{suffix}" for col in COLUMNS for suffix in ("", "_std", "_p"))
# Name, scale and decimals in the markdown: mIoU and PixAcc in percent as in the papers.
SHOWN = {"miou": ("mIoU", 100, 2), "pix_acc": ("PixAcc", 100, 2), "abs_err": ("AbsErr", 1, 4),
         "rel_err": ("RelErr", 1, 4), "delta_m_published": ("Δm vs published", 1, 2),
         "delta_m_single_task": ("Δm vs single-task", 1, 2)}
PERCENT = ("miou", "pix_acc", "delta_m_published", "delta_m_single_task")


def group_order(key):
    return (key != REFERENCE, *key)


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


def scan_sweep(sweep_dir):
    """(multi-task groups {(method, weighting): [Run] by seed}, single-task Runs, not-averaged rows)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise RunError(f"{sweep_dir}: not a folder; expected a sweep folder runs/<sweep> of run folders")
    groups, single, problems = {}, [], []
    run_names = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    crashed_early = sorted(p.stem for p in sweep_dir.glob("*.exit") if not (sweep_dir / p.stem).exists()
                           and _exit_status(sweep_dir, p.stem) != 0)
    for name in run_names:
        if not (sweep_dir / name / SUMMARY).exists():
            problems.append(_not_averaged(sweep_dir, name))
            continue
        run = read_run(sweep_dir / name)
        if set(run.tasks) == set(TASK_METRICS):
            groups.setdefault((run.settings["method"], run.settings["weighting"]), []).append(run)
        else:
            single.append(run)
    problems += [_not_averaged(sweep_dir, name) for name in crashed_early]
    for key in groups:
        groups[key].sort(key=lambda r: r.seed)
        check_distinct_seeds(groups[key])
    return dict(sorted(groups.items(), key=lambda item: group_order(item[0]))), single, problems


def welch_p(a, b):
    """Two-sided p-value of Welch's t-test; None where it is undefined (fewer than two
    seeds on a side, or no spread on either side)."""
    if len(a) < 2 or len(b) < 2 or (len(set(a)) == 1 and len(set(b)) == 1):
        return None
    with warnings.catch_warnings():  # scipy warns about identical samples; the NaN is handled here
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.ttest_ind(a, b, equal_var=False).pvalue
    return None if math.isnan(p) else float(p)


def find_baselines(setup, single, baseline_file=None):
    """({kind: baseline dict}, {kind: where it comes from, or why it is absent})."""
    baselines, notes = {}, {}
    published, name, why = select_baseline(setup["classes"], tuple(setup["image_size"]), setup["synthetic"])
    if published is not None:
        baselines["published"], notes["published"] = published, f"{name}: {why}"
    else:
        notes["published"] = why
    if baseline_file is not None:
        baseline = load_baseline(baseline_file)
        source = read_json(baseline_file).get("source")
        source = source if isinstance(source, dict) else {}  # absent in hand-written files
        baselines["single_task"] = dict(baseline, source=source)
        recorded = source.get("setup")
        if recorded is not None and recorded != setup:
            differ = "; ".join(f"{k} {recorded.get(k)} there, {v} here"
                               for k, v in setup.items() if recorded.get(k) != v)
            raise RunError(f"--baseline {baseline_file}: measured in another setup than the sweep's runs ({differ})")
        notes["single_task"] = f"from {baseline_file}" + (", not the sweep's own single-task runs" if single else "")
    elif single:
        try:
            baselines["single_task"] = build_baseline(single)
            seeds = baselines["single_task"]["source"]["seeds"]
            notes["single_task"] = (f"the sweep's single-task runs, semantic seeds {seeds['semantic']}, "
                                    f"depth seeds {seeds['depth']}")
        except RunError as e:
            notes["single_task"] = f"not available: {e}"
    else:
        notes["single_task"] = ("not available: no single-task runs in the sweep folder (scripts/sweep.sh "
                                "--single-task) and no --baseline FILE")
    return baselines, notes


def group_samples(runs, baselines):
    """Per-seed values of every column: the four metrics, and Δm against each baseline."""
    samples = {m: [r.last10(m) for r in runs] for m in METRIC_SIGNS}
    for kind, baseline in baselines.items():
        samples[f"delta_m_{kind}"] = [delta_m({m: r.last10(m) for m in METRIC_SIGNS}, baseline) for r in runs]
    return samples


def table_rows(groups, baselines):
    """One dict per group with the CSV_FIELDS: mean, std (None for one seed) and p-value (None
    where undefined, or for the reference row itself) of every column."""
    samples = {key: group_samples(runs, baselines) for key, runs in groups.items()}
    reference = samples.get(REFERENCE)
    rows = []
    for (method, weighting), runs in groups.items():
        row = {"method": method, "weighting": weighting, "n_seeds": len(runs),
               "seeds": " ".join(str(r.seed) for r in runs)}
        for col in COLUMNS:
            values = samples[(method, weighting)].get(col)
            row[col], row[f"{col}_std"] = mean_std(values) if values else (None, None)
            compare = values and reference is not None and (method, weighting) != REFERENCE
            row[f"{col}_p"] = welch_p(values, reference[col]) if compare else None
        rows.append(row)
    return rows


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_FIELDS})


def _cell(row, col):
    _, scale, digits = SHOWN[col]
    if row[col] is None:
        return ""
    sign = "+" if col.startswith("delta_m") else ""
    text = f"{row[col] * scale:{sign}.{digits}f}"
    if row[f"{col}_std"] is not None:
        text += f" ± {row[f'{col}_std'] * scale:.{digits}f}"
    p = row[f"{col}_p"]
    return text + (" *" if p is not None and p < ALPHA else "")


def _p_cell(p):
    return "" if p is None else f"{p:.3g}" + (" *" if p < ALPHA else "")


def _md_table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines]


def describe_setup(setup):
    h, w = setup["image_size"]
    return (f"{setup['dataset']}{' (synthetic)' if setup['synthetic'] else ''}, {setup['classes']} classes, {h}x{w}, "
            f"{setup['train_samples']} train / {setup['val_samples']} test samples, "
            f"{setup['arch']} x{setup['width_mult']}")


def markdown(name, setup, rows, baselines, notes, problems, figure):
    cols = tuple(METRIC_SIGNS) + tuple(f"delta_m_{k}" for k in BASELINE_KINDS if k in baselines)
    out = [f"# Sweep `{name}`", ""]
    if not rows:
        out += ["No finished multi-task runs.", ""]
    else:
        n_runs = sum(r["n_seeds"] for r in rows)
        delta = "Δm of the averaged metrics, ± the std of the per-seed Δm; lower is better. " if baselines else ""
        out += [f"{n_runs} finished multi-task runs in {len(rows)} groups; {describe_setup(setup)}.", "",
                "Per seed the mean of the last 10 epochs' test metrics; mean ± sample std (ddof = 1) over seeds "
                f"(no std with one seed). {delta}`*`: p < {ALPHA} in Welch's t-test against the "
                f"{' + '.join(REFERENCE)} row.", ""]
        out += _md_table(["Method", "Weighting", "Seeds"] + [SHOWN[c][0] + " (%)" * (c in PERCENT) for c in cols],
                         [[r["method"], r["weighting"], r["n_seeds"]] + [_cell(r, c) for c in cols] for r in rows])
        out += ["", f"## Welch's t-test against {' + '.join(REFERENCE)} (two-sided p-values)", ""]
        if not any(REFERENCE == (r["method"], r["weighting"]) for r in rows):
            out += [f"No {' + '.join(REFERENCE)} row in this sweep: no tests."]
        else:
            out += _md_table(["Method", "Weighting"] + [SHOWN[c][0] for c in cols],
                             [[r["method"], r["weighting"]] + [_p_cell(r[f"{c}_p"]) for c in cols] for r in rows
                              if (r["method"], r["weighting"]) != REFERENCE])
            out += ["", "Empty: undefined (fewer than two seeds on a side, or no spread on either side)."]
    out += ["", "## Baselines for Δm", ""] if notes else []
    for kind in notes:
        line = f"- {kind.replace('_', '-')}: {notes[kind]}"
        if kind in baselines:
            std = baselines[kind].get("source", {}).get("std", {})
            line += "; " + ", ".join(f"{m} {baselines[kind][m]:.6g}"
                                     + (f" ± {std[m]:.2g}" if std.get(m) is not None else "") for m in METRIC_SIGNS)
        out.append(line)
    if problems:
        out += ["", "## Not averaged", ""]
        out += _md_table(["Run", "State", "Epochs done", "Last log line"],
                         [[p["run"], p["state"], p["epochs"], p["note"] and f"`{p['note']}`"] for p in problems])
    if figure:
        out += ["", "## Test curves", "", "Mean over seeds per epoch, band min to max over seeds.", "",
                f"![test curves]({figure})"]
    return "\n".join(out) + "\n"


def plot_curves(name, series, path):
    """A 2x2 grid, one subplot per metric: per series (label → runs) the mean over seeds per
    epoch and a min-max band. Single-task runs draw only their own task's metrics."""
    history = {r.path: read_metrics(r.path) for runs in series.values() for r in runs}
    fig = Figure(figsize=(12, 8), layout="constrained")
    fig.suptitle(f"{name}: test metrics per epoch (mean over seeds, band min to max)")
    legend = {}  # label → line, one legend for the figure
    for ax, metric in zip(fig.subplots(2, 2).flat, METRIC_SIGNS):
        for i, (label, runs) in enumerate(series.items()):
            curves = [[row["test"][metric] for row in history[r.path]] for r in runs
                      if any(metric in TASK_METRICS[t] for t in r.tasks)]
            if not curves:
                continue
            epochs = min(len(c) for c in curves)  # finished runs of one sweep share their epoch count
            values = np.array([c[:epochs] for c in curves])
            x = np.arange(1, epochs + 1)
            style = dict(color="black", linestyle="--") if label == SINGLE_TASK else dict(color=f"C{i}")
            (line,) = ax.plot(x, values.mean(axis=0), **style)
            legend[f"{label} (n={len(curves)})"] = line
            if len(curves) > 1:
                ax.fill_between(x, values.min(axis=0), values.max(axis=0), alpha=0.2, color=style["color"])
        ax.set(title=SHOWN[metric][0], xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(len(legend), 3))
    fig.savefig(path, dpi=100)


def aggregate(sweep_dir, results_dir="results", baseline_file=None):
    """Write <results>/<sweep>.md, .csv and _curves.png; returns the paths written."""
    sweep_dir = Path(sweep_dir)
    name = sweep_dir.resolve().name
    groups, single, problems = scan_sweep(sweep_dir)
    finished = [r for runs in groups.values() for r in runs] + single
    setup = check_same_setup(finished) if finished else None
    baselines, notes = find_baselines(setup, single, baseline_file) if setup else ({}, {})
    rows = table_rows(groups, baselines)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": results_dir / f"{name}.md", "csv": results_dir / f"{name}.csv"}
    if finished:
        paths["png"] = results_dir / f"{name}_curves.png"
        series = {f"{method} + {weighting}": runs for (method, weighting), runs in groups.items()}
        plot_curves(name, series | ({SINGLE_TASK: single} if single else {}), paths["png"])
    write_csv(rows, paths["csv"])
    paths["md"].write_text(markdown(name, setup, rows, baselines, notes, problems,
                                    paths["png"].name if "png" in paths else None))
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description="Tables (markdown, CSV) and test curves (PNG) from a sweep folder: "
                                            "mean ± std over seeds per (method, weighting), Δm, Welch t-tests.")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="runs/<sweep>, a folder of run folders")
    p.add_argument("--results", default="results", metavar="DIR", help="where <sweep>.md, .csv and _curves.png go")
    p.add_argument("--baseline", default=None, metavar="FILE",
                   help="single-task baseline JSON (python3 -m evaluation.baseline); default: the sweep's own "
                        "single-task runs, if any")
    args = p.parse_args(argv)
    try:
        paths = aggregate(args.sweep_dir, args.results, args.baseline)
    except (RunError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
