"""The validation objective (--select-by) and the epoch it selects (docs/fair_comparisons.md,
"The validation split"). Selection reads the "val" metrics of metrics.jsonl rows only: an
objective on the test split is refused.

Objectives:
- "delta_m": Δm on val against single-task baselines measured on the same split (lower is better);
- "normalized_mean": the mean over the run's tasks of each task's first reported metric on val,
  divided by its value in the first epoch and signed so that higher is better for every task
  (mIoU 0.30 → 0.36 gives +1.2; AbsErr 0.020 → 0.015 gives −0.75); a first-epoch value of 0
  divides by 1;
- "val/<metric>": one val metric, a reported metric or a task's loss (loss_<task>), in the
  direction its task defines;
- "auto": "delta_m" when the --baseline file gives val metrics, else "normalized_mean".
"""
import math

from tasks import TASKS, canonical

AUTO, DELTA_M, NORMALIZED_MEAN = "auto", "delta_m", "normalized_mean"
VAL_PREFIX = "val/"
MAXIMIZE, MINIMIZE = "maximize", "minimize"
CHOICES = f"{AUTO}, {DELTA_M}, {NORMALIZED_MEAN} or {VAL_PREFIX}<metric>"


def resolve(select_by, has_val_baseline, tasks=None):
    """The concrete objective of `select_by`: "delta_m", "normalized_mean" or "val/<metric>".
    ValueError naming --select-by for an unknown value, a test/ objective, or delta_m without a
    val baseline; with `tasks` (names), also for a val/<metric> those tasks do not report."""
    if select_by == AUTO:
        return DELTA_M if has_val_baseline else NORMALIZED_MEAN
    if select_by == DELTA_M and not has_val_baseline:
        raise ValueError(f"--select-by {DELTA_M}: needs a --baseline file with val metrics (python -m "
                         f"evaluation.baseline over single-task runs with the same --val-fraction and --val-seed); "
                         f"use --select-by {AUTO} or {NORMALIZED_MEAN} without one")
    if select_by in (NORMALIZED_MEAN, DELTA_M):
        return select_by
    if select_by.startswith("test/"):
        raise ValueError(f"--select-by {select_by}: selection never looks at the test split; give a val/<metric> "
                         f"objective (e.g. val/{select_by.removeprefix('test/')})")
    metric = select_by.removeprefix(VAL_PREFIX)
    if not select_by.startswith(VAL_PREFIX) or metric not in _directions(TASKS):
        raise ValueError(f"--select-by {select_by}: expected {CHOICES}, a metric one of "
                         f"{', '.join(_directions(TASKS))}")
    if tasks is not None and metric not in _directions(tasks):
        raise ValueError(f"--select-by {select_by}: not a metric of the tasks {' + '.join(canonical(tasks))}; "
                         f"expected one of {', '.join(VAL_PREFIX + m for m in _directions(tasks))}")
    return select_by


def _directions(tasks):
    """{val metric key: higher is better} of `tasks` (names): their reported metrics and losses,
    from the registry alone (no torch: sweeps' --status checks summaries with it)."""
    tasks = canonical(tasks)
    return {**{key: key not in TASKS[name].lower_is_better for name in tasks for key in TASKS[name].metric_keys},
            **{f"loss_{name}": False for name in tasks}}


def direction(name):
    """"maximize" or "minimize": the better direction of a resolved objective."""
    if name == DELTA_M:
        return MINIMIZE
    if name == NORMALIZED_MEAN:
        return MAXIMIZE
    return MAXIMIZE if _directions(TASKS)[name.removeprefix(VAL_PREFIX)] else MINIMIZE


def objective_values(rows, name, tasks):
    """The objective `name` (resolved) of each metrics.jsonl row, from its "val" metrics;
    `tasks`: the run's task names (normalized_mean averages over them)."""
    if name == NORMALIZED_MEAN:
        first = [TASKS[task].metric_keys[0] for task in canonical(tasks)]
        sign = {key: 1 if direction(VAL_PREFIX + key) == MAXIMIZE else -1 for key in first}
        start = {key: rows[0]["val"][key] or 1.0 for key in first}  # a zero first value divides by 1
        return [math.fsum(sign[key] * row["val"][key] / start[key] for key in first) / len(first) for row in rows]
    key = DELTA_M if name == DELTA_M else name.removeprefix(VAL_PREFIX)
    return [float(row["val"][key]) for row in rows]


def best_epoch(rows, name, tasks):
    """The "epoch" of the row whose objective `name` is best (maximum or minimum by direction);
    ties go to the earliest epoch."""
    values = objective_values(rows, name, tasks)
    sign = 1 if direction(name) == MAXIMIZE else -1
    best = max(range(len(rows)), key=lambda i: (sign * values[i], -i))
    return rows[best]["epoch"]
