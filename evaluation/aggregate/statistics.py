"""The table's numbers: runs grouped into rows (adam + ew first), per row the mean ± sample std
over seeds of every column and Welch's p-value against the reference row, Holm-adjusted over
the whole table."""

from tasks import reported_metrics

from ..delta_m import delta_m
from ..run_record import check_distinct_seeds, last_epochs_text
from ..significance import holm, mean_std, welch_p
from .collect import separated_values, weighting_label

REFERENCE = ("adam", "ew")  # the row every other (method, weighting) is tested against
ALPHA = 0.05
BASELINE_KINDS = ("published", "single_task")


def metric_keys(tasks):
    """The metric columns of a sweep of `tasks`: their reported metrics, in the registry's order."""
    return tuple(m.key for m in reported_metrics(tasks))


def columns(tasks):
    """Every statistic's column: the metrics, then Δm against each kind of baseline."""
    return metric_keys(tasks) + tuple(f"delta_m_{kind}" for kind in BASELINE_KINDS)


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


def group_runs(runs, separate):
    """{(method, weighting label, separated values): [Run] by seed}, adam + ew first."""
    groups = {}
    for run in runs:
        key = (run.settings["method"], weighting_label(run), separated_values(run, separate))
        groups.setdefault(key, []).append(run)
    for seeds in groups.values():
        seeds.sort(key=lambda r: r.seed)
        check_distinct_seeds(seeds)
    return dict(sorted(groups.items(), key=lambda item: group_order(item[0])))


def last_n(run, metric):
    """A run's value of `metric` in the field's convention: the mean of its last N epochs' test metrics."""
    return run.last10(metric)


def group_samples(tasks, runs, baselines, read=last_n):
    """Per-seed values of every column: the tasks' metrics (`read(run, metric)`), and Δm against each baseline."""
    keys = metric_keys(tasks)
    samples = {m: [read(r, m) for r in runs] for m in keys}
    for kind, baseline in baselines.items():
        samples[f"delta_m_{kind}"] = [delta_m({m: read(r, m) for m in keys}, baseline) for r in runs]
    return samples


def table_rows(tasks, groups, baselines, separate=(), read=last_n, reference=REFERENCE):
    """One dict per group with the csv_fields: mean, std (None for one seed), p-value and its Holm
    adjustment over all the table's tests (None where undefined, or for a reference row itself) of
    every column. `baselines`: {separated values: {kind: baseline}}; a row's reference is the
    `reference` (method, weighting) row with its separated values; `read(run, metric)`: a run's
    value of a metric (default the mean of its last N epochs)."""
    samples = {key: group_samples(tasks, runs, baselines[key[2]], read) for key, runs in groups.items()}
    rows = []
    for (method, weighting, values), runs in groups.items():
        reference_samples = samples.get((*reference, values))
        row = {"method": method, "weighting": weighting, **dict(zip(separate, values)), "n_seeds": len(runs),
               "seeds": " ".join(str(r.seed) for r in runs), "epochs_averaged": last_epochs_text(runs)}
        for col in columns(tasks):
            column = samples[(method, weighting, values)].get(col)
            row[col], row[f"{col}_std"] = mean_std(column) if column else (None, None)
            compare = column and reference_samples is not None and (method, weighting) != reference
            row[f"{col}_p"] = welch_p(column, reference_samples[col]) if compare else None
        rows.append(row)
    tests = [(row, col) for row in rows for col in columns(tasks)]
    for (row, col), adjusted in zip(tests, holm([row[f"{col}_p"] for row, col in tests]), strict=True):
        row[f"{col}_p_holm"] = adjusted
    return rows


def family_size(tasks, rows):
    """How many tests Holm's correction counts: every defined p-value of the table."""
    return sum(row[f"{col}_p"] is not None for row in rows for col in columns(tasks))
