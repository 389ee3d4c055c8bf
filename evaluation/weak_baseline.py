"""A single-task baseline worse than the trivial predictor (evaluation/trivial.py) on some metric.

Δm divides by the baseline, so a baseline that learnt less than "the majority class
everywhere" makes any model look far better than it is (a sweep showed Δm −111 % against a
baseline of mIoU 2.5 %). Every place that shows Δm against such a baseline says so, naming
the baseline's runs and the metrics: the training console and summary.json
("delta_m_warning"), evaluation.baseline, and evaluation.aggregate's tables.

evaluation.baseline records the trivial predictors' metrics on the single-task runs' own data
in the baseline ("source" → "trivial"); worse_than_trivial, the one comparison, reads them. A
baseline without them (older files, hand-written ones) carries no warning.
"""
import json
from pathlib import Path

from tasks import TASKS

from .delta_m import load_baseline, registered_metrics


def worse_than_trivial(baseline, trivial):
    """{metric key: {"baseline": value, "trivial": value}} of the reported metrics on which
    `baseline` is worse than `trivial` (both {key: value}; other keys are ignored)."""
    worse = {}
    for key, metric in registered_metrics().items():
        # delta_m_sign is +1 where lower is better: a larger baseline value is then worse
        if key in baseline and key in trivial and metric.delta_m_sign * (baseline[key] - trivial[key]) > 0:
            worse[key] = {"baseline": baseline[key], "trivial": trivial[key]}
    return worse


def warning_of(baseline, name):
    """The warning of a baseline dict (its metrics and "source", as evaluation.baseline builds
    it) named `name`: None, or {"baseline": name, "runs": {task: [run folders]} of the tasks
    whose metrics are worse, "metrics": worse_than_trivial}."""
    source = baseline.get("source")
    trivial = source.get("trivial") if isinstance(source, dict) else None
    if not isinstance(trivial, dict):
        return None
    worse = worse_than_trivial(baseline, trivial)
    if not worse:
        return None
    runs = source.get("runs") if isinstance(source.get("runs"), dict) else {}
    tasks = [task for task in runs if task in TASKS and any(m.key in worse for m in TASKS[task].metrics)]
    return {"baseline": name, "runs": {task: runs[task] for task in tasks}, "metrics": worse}


def warning_of_file(path, tasks):
    """warning_of a baseline file, for a run of `tasks` (names): only their metrics count."""
    source = json.loads(Path(path).read_text()).get("source")
    return warning_of({**load_baseline(path, tasks), "source": source}, str(path))


def describe(warning):
    """One line for the console and the tables."""
    metrics = ", ".join(f"{key} {m['baseline']:.4f} (trivial {m['trivial']:.4f})"
                        for key, m in warning["metrics"].items())
    runs = ", ".join(str(run) for paths in warning["runs"].values() for run in paths) or "not recorded"
    return (f"Δm misleads: the baseline {warning['baseline']} is worse than the trivial predictor on {metrics}; "
            f"its single-task runs: {runs}")
