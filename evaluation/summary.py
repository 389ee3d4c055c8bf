"""summary.json from metrics.jsonl, and whether a finished run folder agrees with itself
(docs/design.md, "Run folder"). No torch: --status (sweeps/status.py) asks this too.

summary.json is derived data: every reader recomputes it from metrics.jsonl and config.json,
and a stored summary.json that differs from the recomputed one, or a metrics.jsonl that does not
hold every epoch of config.json, makes the run inconsistent: named, and never averaged.
"""
import math

from . import selection
from .delta_m import delta_m

LAST_N = 10

# Keys today's summary has and older summaries lack; their absence is no disagreement.
ADDED_SINCE = frozenset({"last10_epochs"})


class InconsistentRun(ValueError):
    """A finished run whose files disagree; the message says where, without the folder."""


def _mean_of(rows):
    """The mean of each metric over `rows`; "class_iou" per class over the rows where that
    class's IoU is defined (None where it never is). Rows older than class_iou lack it."""
    keys = [k for k, v in rows[0].items() if k != "delta_m" and isinstance(v, (int, float))]
    mean = {k: math.fsum(r[k] for r in rows) / len(rows) for k in keys}
    per_class = [r["class_iou"] for r in rows if "class_iou" in r]
    if per_class:
        mean["class_iou"] = {}
        for name in per_class[-1]:
            defined = [ious[name] for ious in per_class if ious.get(name) is not None]
            mean["class_iou"][name] = math.fsum(defined) / len(defined) if defined else None
    return mean


def summarize(rows, baseline, baseline_name, objective=None, tasks=(), warning=None):
    """summary.json from the metrics.jsonl rows: the last epoch's test metrics, the mean of
    the last 10 epochs' test metrics, and Δm of both (Δm of the mean, not the mean of Δm,
    as the field reports it). A run shorter than 10 epochs averages all of them:
    "last10_epochs" says how many were averaged (the key "last10" is kept for readers).

    A run with a validation split (`objective`: its resolved --select-by, evaluation/selection.py;
    `tasks`: its task names) also gets the epoch that objective selects on val ("best_val_epoch",
    0-based as in metrics.jsonl), the objective there ("selection"), the test and val metrics of
    that epoch, and the mean of the last epochs' val metrics ("val_last10", what baselines read).

    A baseline worse than the trivial predictors (`warning`: evaluation/weak_baseline.py's, which
    config.json's baseline records) adds "delta_m_warning"; a good baseline adds nothing."""
    final = rows[-1]["test"]
    averaged = rows[-LAST_N:]
    last = _mean_of([r["test"] for r in averaged])
    has_metrics = baseline is not None and all(k in final for k in baseline)
    selected = {} if objective is None else _selected(rows, objective, tasks)
    return {
        "final": final,
        "last10": last,
        "last10_epochs": len(averaged),
        "delta_m": {
            "final": delta_m(final, baseline) if has_metrics else None,
            "last10": delta_m(last, baseline) if has_metrics else None,
            "baseline": baseline_name if has_metrics else None,
        },
        **selected,
        **({"delta_m_warning": warning} if warning is not None and has_metrics else {}),
    }


def _selected(rows, objective, tasks):
    best = selection.best_epoch(rows, objective, tasks)
    index = [row["epoch"] for row in rows].index(best)
    return {
        "best_val_epoch": best,
        "selection": {"by": objective, "direction": selection.direction(objective),
                      "value": selection.objective_values(rows, objective, tasks)[index]},
        "test_at_best_val": rows[index]["test"],
        "val_at_best_val": rows[index]["val"],
        "val_last10": _mean_of([row["val"] for row in rows[-LAST_N:]]),
    }


def summary_of_record(config, rows):
    """The summary a finished run's config.json and metrics.jsonl rows make; InconsistentRun
    when the rows are not every epoch of the config, in order, with test metrics."""
    settings = config.get("settings") if isinstance(config, dict) else None
    epochs = settings.get("epochs") if isinstance(settings, dict) else None
    if len(rows) != epochs:
        raise InconsistentRun(f"metrics.jsonl holds {len(rows)} epochs, config.json's settings.epochs is {epochs!r}")
    numbers = [row.get("epoch") if isinstance(row, dict) else None for row in rows]
    if numbers != list(range(len(rows))):
        raise InconsistentRun(f"metrics.jsonl's rows are epochs {numbers}, expected 0 to {len(rows) - 1} in order")
    if not all(isinstance(row.get("test"), dict) and row["test"] for row in rows):
        raise InconsistentRun("metrics.jsonl has a row without test metrics")
    baseline = config.get("baseline")
    baseline = baseline if isinstance(baseline, dict) else {}  # absent in hand-made configs
    with_split = bool(settings.get("val_fraction"))
    if with_split and not all(isinstance(row.get("val"), dict) and row["val"] for row in rows):
        raise InconsistentRun("config.json's settings.val_fraction holds a validation split out, but metrics.jsonl "
                              "has a row without val metrics")
    try:
        objective = selection.resolve(settings.get("select_by", selection.AUTO),
                                      baseline.get("val_metrics") is not None) if with_split else None
        return summarize(rows, baseline.get("metrics"), baseline.get("name"), objective, config.get("tasks", ()),
                         baseline.get("trivial_warning"))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise InconsistentRun(f"metrics.jsonl cannot be summarized ({type(e).__name__}: {e})") from None


def _leaves(value, prefix=""):
    """{"last10.miou": 0.41, ...}: every value of a nested dict by its dotted path."""
    if isinstance(value, dict) and (value or not prefix):
        leaves = {}
        for key, item in value.items():
            leaves.update(_leaves(item, f"{prefix}.{key}" if prefix else str(key)))
        return leaves
    return {prefix: value}


def _same(stored, recomputed):
    # the same rows give the same floats; the tolerance only forgives a writer that rounded
    if isinstance(stored, (int, float)) and isinstance(recomputed, (int, float)) \
            and not isinstance(stored, bool) and not isinstance(recomputed, bool):
        return math.isclose(stored, recomputed, rel_tol=1e-9, abs_tol=1e-12)
    return stored == recomputed


_ABSENT = object()


def _shown(value):
    return "nothing" if value is _ABSENT else repr(value)


def check_summary(stored, recomputed):
    """InconsistentRun naming the first value where summary.json (`stored`) differs from the
    summary of metrics.jsonl (`recomputed`): "last10.miou 0.5 vs 0.41"."""
    if not isinstance(stored, dict):
        raise InconsistentRun(f"summary.json holds {type(stored).__name__}, expected an object")
    have, want = _leaves(stored), _leaves(recomputed)
    # a key of today's summary that an older one lacks is compared only where it is present
    for path in sorted(set(have) | (set(want) - ADDED_SINCE)):
        stored_value, value = have.get(path, _ABSENT), want.get(path, _ABSENT)
        if _ABSENT in (stored_value, value) or not _same(stored_value, value):
            raise InconsistentRun(f"summary.json does not match metrics.jsonl: {path} {_shown(stored_value)} "
                                  f"vs {_shown(value)}")


def finished_summary(config, rows, stored):
    """The summary of a finished run recomputed from its record, after checking that summary.json
    (`stored`) agrees with it; InconsistentRun otherwise."""
    recomputed = summary_of_record(config, rows)
    check_summary(stored, recomputed)
    return recomputed
