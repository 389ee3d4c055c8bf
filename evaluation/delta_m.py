"""Δm, the average relative change against a single-task baseline (docs/methods.md, "Δm and baselines").

Δm (%) = (1/K) Σ_j s_j (M_j − B_j) / B_j × 100 over the K reported metrics of the run's tasks
(tasks/: mIoU and PixAcc for semantic, InstErr for instance, AbsErr and RelErr for depth;
K = 4 for semantic + depth), s = −1 where higher is better and +1 where lower is better
(Metric.delta_m_sign), so lower Δm is better. Metrics shown in percent (scale 100) are stored
as fractions (mIoU 0.75, not 75); RelErr is a raw ratio.
"""
import json
import math
from pathlib import Path

from data.datasets import dataset_named
from tasks import TASKS, canonical, reported_metrics

# Single-task row of the CityScapes table in Navon et al. 2022, "Multi-Task Learning as a
# Bargaining Game" (Nash-MTL), for the 7-class 128x256 release. RelErr is a raw ratio.
PUBLISHED_BASELINE = {"miou": 0.7401, "pix_acc": 0.9316, "abs_err": 0.0125, "rel_err": 27.77}
PUBLISHED_NAME = "published-7class-128x256"
PUBLISHED_TASKS = ("semantic", "depth")  # the tasks the published row measures


def registered_metrics():
    """{key: Metric} of every registered task's reported metrics, in the registry's order."""
    return {m.key: m for m in reported_metrics(TASKS)}


def delta_m(metrics, baseline):
    """Δm in percent of `metrics` against `baseline`, averaged over the baseline's metrics.

    `baseline` holds the reported metrics of the run's tasks (load_baseline, build_baseline),
    keyed as in metrics.jsonl; keys that are no registered metric (a baseline's "source") are
    ignored. `metrics` may hold more keys than the baseline; it must hold each of its metrics.
    """
    keys = [m for m in registered_metrics().values() if m.key in baseline]
    if not keys:
        raise ValueError(f"Δm needs a baseline of reported metrics ({', '.join(registered_metrics())}); "
                         f"got the keys {', '.join(map(str, baseline)) or 'none'}")
    missing = [m.key for m in keys if m.key not in metrics]
    if missing:
        raise ValueError(f"Δm needs {', '.join(m.key for m in keys)} in both metrics and baseline; missing {missing}")
    total = sum(m.delta_m_sign * (metrics[m.key] - baseline[m.key]) / baseline[m.key] for m in keys)
    return total / len(keys) * 100


def _expected(metrics):
    fractions = [m.label for m in metrics if m.scale == 100]
    note = f" ({' and '.join(fractions)} as fractions)" if fractions else ""
    return f"a JSON object with positive numbers for {', '.join(m.key for m in metrics)}{note}"


def load_baseline(path, tasks):
    """The reported metrics of `tasks` (names) from a baseline JSON file; other keys (e.g.
    "source", or the metrics of other tasks) are left out. ValueError naming the file, and the
    missing keys when some of the tasks' metrics are absent."""
    path = Path(path)
    metrics = reported_metrics(tasks)
    expected = _expected(metrics)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"baseline file {path}: cannot read it ({e.strerror}); expected {expected}") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"baseline file {path}: invalid JSON ({e}); expected {expected}") from e
    if not isinstance(data, dict):
        raise ValueError(f"baseline file {path}: expected {expected}, got {type(data).__name__}")
    return _checked_metrics(data, metrics, f"baseline file {path}", tasks, expected)


def _checked_metrics(data, metrics, where, tasks, expected):
    """The `metrics` of the dict `data` as floats; ValueError naming `where` and the key otherwise."""
    missing = [m.key for m in metrics if m.key not in data]
    if missing:
        raise ValueError(f"{where}: no {', '.join(missing)}, which tasks {' + '.join(canonical(tasks))} "
                         f"report; expected {expected}")
    baseline = {}
    for metric in metrics:
        key, value = metric.key, data[metric.key]
        # bool is an int subclass; true/false is not a metric value.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{where}: \"{key}\" must be a positive number, got {value!r}; expected {expected}")
        if metric.scale == 100 and value > 1:  # a fraction shown in percent: above 1 it was written in percent
            raise ValueError(f"{where}: \"{key}\" = {value} is not a fraction in (0, 1]; "
                             f"write e.g. {value / 100:g}, not {value:g}")
        baseline[key] = float(value)
    return baseline


def load_val_baseline(path, tasks, split):
    """The val metrics of `tasks` in a baseline file (its "val" object, which evaluation.baseline
    writes from single-task runs with a validation split), or None when it has none. `split`: the
    run's validation-split settings ({val_fraction, val_seed, val_split_sha256}); a file whose
    "source" → "setup" records another split is refused, naming the setting."""
    path = Path(path)
    data = json.loads(path.read_text())  # load_baseline has read and checked it already
    if "val" not in data:
        return None
    source = data.get("source")
    setup = source.get("setup") if isinstance(source, dict) else None
    for key, value in split.items():
        if isinstance(setup, dict) and setup.get(key) != value:
            raise ValueError(f"baseline file {path}: its single-task runs were made with {key} "
                             f"{setup.get(key, '(none)')}, this run has {value}; a baseline serves runs of its own "
                             f"validation split: rebuild it from single-task runs with this run's --val-fraction "
                             f"and --val-seed")
    metrics = reported_metrics(tasks)
    if not isinstance(data["val"], dict):
        raise ValueError(f"baseline file {path}: \"val\" must be an object of val metrics, not {data['val']!r}")
    return _checked_metrics(data["val"], metrics, f"baseline file {path}, \"val\"", tasks, _expected(metrics))


def select_baseline(tasks, num_classes, image_size, dataset, baseline_file=None):
    """(baseline or None, its name or None, why) for a run of `tasks` (names) on `dataset` (its
    --dataset name) in a setup.

    A baseline file always wins (its metrics of `tasks`). The published numbers apply only to
    semantic + depth on the 7-class 128x256 release of a dataset they can apply to (its
    not_comparable is None: the real CityScapes release); anything else needs single-task runs
    measured in the same setup.
    """
    if baseline_file is not None:
        return load_baseline(baseline_file, tasks), str(baseline_file), f"baseline from {baseline_file}"
    height, width = image_size
    reasons = []
    if canonical(tasks) != canonical(PUBLISHED_TASKS):
        reasons.append(f"tasks {' + '.join(canonical(tasks))} (the published numbers are "
                       f"{' + '.join(PUBLISHED_TASKS)})")
    unlike_published = dataset_named(dataset).not_comparable
    if unlike_published:
        reasons.append(unlike_published)
    if num_classes != 7:
        reasons.append(f"{num_classes} classes (the published numbers are 7-class)")
    if (height, width) != (128, 256):
        reasons.append(f"image size {height}x{width} (the published numbers are 128x256)")
    if reasons:
        why = "; ".join(reasons)
        return None, None, f"{why}: published CityScapes numbers do not apply; pass --baseline FILE from single-task runs"
    return dict(PUBLISHED_BASELINE), PUBLISHED_NAME, "published single-task row (Nash-MTL paper, 7-class 128x256)"
