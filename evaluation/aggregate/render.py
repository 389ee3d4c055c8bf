"""The table written out (markdown and CSV) and the test curves figure."""

import csv

import numpy as np

from tasks import reported_metrics

from ..delta_m import delta_m, registered_metrics
from ..figures import Curve, Panel, plot_curves
from ..run_config import setting_text
from ..run_record import read_metrics
from .collect import is_multi_task
from .statistics import ALPHA, BASELINE_KINDS, REFERENCE, columns, family_size, metric_keys

FIGURE_KINDS = ("single_task", "published")  # the figure's Δm: single-task runs of the sweep's own setup first
# Name, scale and decimals of the Δm columns in the markdown (the metrics': their tasks' Metric).
WARNING_MARK = "⚠"  # a Δm against a single-task baseline worse than the trivial predictors (weak_baseline.py)
DELTA_SHOWN = {"delta_m_published": ("Δm vs published", 1, 2), "delta_m_single_task": ("Δm vs single-task", 1, 2)}
# The shared setup's settings that the markdown names; every run's config.json has them all.
SETUP_SHOWN = ("data_name", "synthetic", "image_size", "train_samples", "val_samples", "classes", "arch", "width_mult",
               "epochs", "batch_size", "lr")


def csv_fields(tasks, separate=()):
    """The CSV header: the row's key (method, weighting, the separated settings), then the statistics
    (p: Welch's raw p-value; p_holm: Holm-adjusted over every test of the table, which the `*` marks use)."""
    return ("method", "weighting", *separate, "n_seeds", "seeds", "epochs_averaged") + tuple(
        f"{col}{suffix}" for col in columns(tasks) for suffix in ("", "_std", "_p", "_p_holm")) + ("delta_m_warning",)


def shown(col):
    """(name, scale, decimals) of a column in the markdown: mIoU and PixAcc in percent as in the papers."""
    metric = registered_metrics().get(col)
    return DELTA_SHOWN[col] if metric is None else (metric.label, metric.scale, metric.digits)


def in_percent(col):
    return col in DELTA_SHOWN or registered_metrics()[col].scale == 100


def labelled(text, separate, values):
    """"adam + ew", or with separated settings "adam + ew (lr=0.001)"."""
    return text + (f" ({', '.join(f'{k}={v}' for k, v in zip(separate, values))})" if separate else "")


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


def warned(row, col):
    """The mark of a Δm against a single-task baseline worse than the trivial predictors."""
    return f" {WARNING_MARK}" if col == "delta_m_single_task" and row.get("delta_m_warning") else ""


def _mark(p_holm):
    return " *" if p_holm is not None and p_holm < ALPHA else ""


def _p_cell(row, col):
    """"Holm-adjusted p (raw p)"."""
    p = row[f"{col}_p"]
    return "" if p is None else f"{row[f'{col}_p_holm']:.3g} ({p:.3g})" + _mark(row[f"{col}_p_holm"])


def _key_cells(row, separate):
    return [row["method"], row["weighting"], *(row[key] for key in separate)]


def md_table(header, lines):
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
        out += md_table(key_header + ["Seeds"] + [shown(c)[0] + " (%)" * in_percent(c) for c in cols],
                         [_key_cells(r, separate) + [r["n_seeds"]] + [_cell(r, c) + warned(r, c) for c in cols]
                          for r in rows])
        warnings = dict.fromkeys(r["delta_m_warning"] for r in rows if r.get("delta_m_warning"))
        out += ["", *(f"{WARNING_MARK} {text}" for text in warnings)] if warnings else []
        out += ["", f"## Welch's t-test against {' + '.join(REFERENCE)}: Holm-adjusted p (raw p), two-sided", ""]
        if not any(REFERENCE == (r["method"], r["weighting"]) for r in rows):
            out += [f"No {' + '.join(REFERENCE)} row in this sweep: no tests."]
        else:
            out += md_table(key_header + [shown(c)[0] for c in cols],
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
        out += md_table(["Run", "State", "Epochs done", "Last log line"],
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
