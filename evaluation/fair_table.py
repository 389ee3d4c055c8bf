"""The fair comparison's report (`python -m sweeps compare`, docs/fair_comparisons.md, "Compare"):
each method × weighting, tuned with the same number of trials on the validation split, re-run at
its best configuration with fresh seeds; this module turns those re-runs into <name>.md and
<name>.csv.

Two tables of test metrics: per seed the test metrics of the epoch that the validation split
chose (summary.json "test_at_best_val", at "best_val_epoch" by its "selection"), and per seed
the mean over the last N epochs (the field's convention, evaluation.aggregate). Each cell is the
mean over seeds ± the half-width of its 95 % Student-t interval. Δm is against the sweep's
single-task runs (evaluation.baseline: their last-N test metrics, one baseline for every row and
both tables, so it shifts no row against another). Welch's t-test of every column against the
baseline row (the first method × weighting compared), Holm-corrected over all the tests of one
table: the aggregation's statistics (evaluation/aggregate/statistics.py).

The re-runs and the single-task runs must agree on every setting that changes results but the
tuned ones, the validation split's fraction, seed and held-out indices included: the
aggregation's check, so runs on different splits are refused, naming the setting. The header states the protocol:
validation fraction, trials, seeds and the selection rule; the budget table, the trials and run
seconds (the sum of metrics.jsonl's per-epoch "seconds") each row used.
"""
from dataclasses import dataclass
from pathlib import Path

from experiment.flags import setting_definitions

from .aggregate import add_warnings
from .aggregate.collect import check_sweep_setup, find_baselines, sweep_tasks
from .aggregate.render import WARNING_MARK, in_percent, md_table, shown, warned, write_csv
from .aggregate.statistics import ALPHA, columns, family_size, last_n, table_rows
from .run_record import SUMMARY, RunError, check_distinct_seeds, last_epochs_phrase, read_metrics, read_run
from .significance import interval_half_width

LEVEL = 0.95
SELECTIONS = {"best_val": "at the validation-selected epoch", "last_n": "over the last N epochs"}
BUDGET_FIELDS = ("trials", "tuning_seconds", "rerun_seconds")


@dataclass(frozen=True)
class Compared:
    """One method × weighting of the comparison: its tuned flags, its re-runs and the tuning it cost."""
    method: str
    weighting: str
    tuned: dict  # {flag: value} of the best trial
    reruns: tuple  # the re-runs' folder names in the sweep folder
    trials: int  # finished trials of its study
    tuning_seconds: float  # the trials' summed run seconds


@dataclass(frozen=True)
class Protocol:
    trials: int  # per method × weighting
    seeds: tuple  # the re-runs' seeds
    tuning: str  # how the trials were chosen, e.g. "Optuna TPE sampler, seed 0"


def run_seconds(run_dir):
    """The seconds a run trained and evaluated: the sum of its epochs' "seconds" in metrics.jsonl."""
    return sum(float(row.get("seconds", 0.0)) for row in read_metrics(run_dir))


def at_best_val(run, metric):
    """A run's test `metric` at its validation-selected epoch (summary.json "test_at_best_val")."""
    value = (run.summary or {}).get("test_at_best_val", {}).get(metric)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise RunError(f"{run.path / SUMMARY}: no \"test_at_best_val\" {metric!r}; a fair comparison reads the test "
                       f"metrics at the epoch the validation split chose: the run needs --val-fraction above 0")
    return float(value)


def tuned_settings(compared, runs):
    """The settings the studies tuned (their flags' config.json keys, where the runs' setup has them):
    they differ from row to row and from the single-task runs on purpose, and are not compared."""
    known = set().union(*(run.setup for run in runs))
    tuned = {flag.removeprefix("--").replace("-", "_") for entry in compared for flag in entry.tuned}
    return tuple(sorted(tuned & known))


def _finished(path):
    run = read_run(path, setting_definitions())
    if run.summary is None:
        raise RunError(f"{path}: unfinished (no {SUMMARY}); rerun the compare command to finish it")
    return run


def selection_rule(runs):
    """"delta_m (minimize)": the rule every run chose its best_val_epoch by; RunError if they differ."""
    rules = {}
    for run in runs:
        selection = run.summary.get("selection") or {}
        rules.setdefault(f"{selection.get('by')} ({selection.get('direction')})", []).append(run.path.name)
    if len(rules) > 1:
        listed = "; ".join(f"{rule}: {', '.join(names)}" for rule, names in rules.items())
        raise RunError(f"the re-runs chose their best validation epoch by different rules ({listed}); give them one "
                       f"--select-by")
    return next(iter(rules))


def _cell(row, col):
    _, scale, digits = shown(col)
    if row[col] is None:
        return ""
    text = f"{row[col] * scale:{'+' if col.startswith('delta_m') else ''}.{digits}f}"
    if row[f"{col}_ci95"] is not None:
        text += f" ± {row[f'{col}_ci95'] * scale:.{digits}f}"
    return text + (" *" if row[f"{col}_p_holm"] is not None and row[f"{col}_p_holm"] < ALPHA else "") + warned(row, col)


def _with_intervals(rows, tasks):
    for row in rows:
        for col in columns(tasks):
            row[f"{col}_ci95"] = interval_half_width(row[f"{col}_std"], row["n_seeds"], LEVEL)
    return rows


def csv_fields(tasks):
    stats = tuple(f"{col}{suffix}" for col in columns(tasks) for suffix in ("", "_ci95", "_std", "_p", "_p_holm"))
    return ("selection", "method", "weighting", "tuned", "n_seeds", "seeds", *stats, *BUDGET_FIELDS, "delta_m_warning")


def protocol_text(protocol, runs, rule, reference):
    settings = runs[0].settings
    fraction, seed = settings.get("val_fraction"), settings.get("val_seed")
    return (f"Protocol: validation split {fraction:g} of train/ held out (`--val-fraction {fraction:g} --val-seed "
            f"{seed}`; the release's val/ folder is the test split, which no choice looks at); {protocol.trials} "
            f"trials per method × weighting on it ({protocol.tuning}), each run's epoch chosen by {rule} on the "
            f"validation split; each one's best trial re-run with seeds {' '.join(map(str, protocol.seeds))}; "
            f"tests against {' + '.join(reference)}.")


def markdown(title, tasks, protocol, compared, tables, baselines, notes, runs, rule, single_seconds):
    reference = (compared[0].method, compared[0].weighting)
    cols = [c for c in columns(tasks) if not c.startswith("delta_m_") or c.removeprefix("delta_m_") in baselines]
    out = [f"# Fair comparison `{title}`", "", protocol_text(protocol, runs, rule, reference), ""]
    for selection, rows in tables.items():
        read = ("the test metrics of its best validation epoch (summary.json `best_val_epoch`)"
                if selection == "best_val" else f"the mean of its test metrics over {last_epochs_phrase(runs)}")
        out += [f"## Test metrics {SELECTIONS[selection]}", "",
                (f"Per seed {read}; mean ± the half-width of the {LEVEL:.0%} Student-t interval over seeds. `*`: "
                 f"Holm-adjusted p < {ALPHA} in Welch's t-test against {' + '.join(reference)}, over all "
                 f"{family_size(tasks, rows)} tests of this table."), ""]
        out += md_table(["Method", "Weighting", "Seeds", *(shown(c)[0] + " (%)" * in_percent(c) for c in cols)],
                        [[r["method"], r["weighting"], r["n_seeds"], *(_cell(r, c) for c in cols)] for r in rows])
        warnings = dict.fromkeys(r["delta_m_warning"] for r in rows if r.get("delta_m_warning"))
        out += [*(f"{WARNING_MARK} {text}" for text in warnings), ""] if warnings else [""]
    out += ["## Budget", "", "Run seconds: the sum of each run's per-epoch seconds (metrics.jsonl).", ""]
    out += md_table(["Method", "Weighting", "Tuned flags", "Trials", "Tuning (s)", "Re-runs (s)", "Total (s)"],
                    [[c.method, c.weighting, " ".join(f"{k} {v}" for k, v in c.tuned.items()) or "(defaults)",
                      c.trials, f"{c.tuning_seconds:.0f}", f"{row['rerun_seconds']:.0f}",
                      f"{c.tuning_seconds + row['rerun_seconds']:.0f}"]
                     for c, row in zip(compared, tables["best_val"], strict=True)])
    out += ["", f"The single-task baselines, shared by every row: {single_seconds:.0f} s.", "", "## Baselines for Δm", ""]
    out += [f"- {kind.replace('_', '-')}: {note}" for kind, note in notes.items()]
    return "\n".join(out) + "\n"


def fair_table(sweep_dir, compared, single_task, protocol, results_dir, name="compare"):
    """Write <results_dir>/<name>.md and .csv from the re-runs of `compared` ([Compared], the first
    is the baseline row) and the single-task run folders `single_task` (names), all in `sweep_dir`;
    returns {"md": path, "csv": path}. RunError naming the runs when one is unfinished, lacks a
    validation split, or they disagree in a setting that changes results."""
    sweep_dir = Path(sweep_dir)
    groups = {}
    for entry in compared:
        runs = sorted((_finished(sweep_dir / n) for n in entry.reruns), key=lambda r: r.seed)
        check_distinct_seeds(runs)
        groups[(entry.method, entry.weighting, ())] = runs
    reruns = [r for runs in groups.values() for r in runs]
    single = [_finished(sweep_dir / n) for n in single_task]
    setup = check_sweep_setup(sweep_dir, reruns + single, tuned_settings(compared, reruns + single))
    tasks = sweep_tasks(sweep_dir, reruns)
    rule = selection_rule(reruns)
    baselines, notes = find_baselines(tasks, setup, single)
    reference = (compared[0].method, compared[0].weighting)
    tables = {}
    for selection, read in (("best_val", at_best_val), ("last_n", last_n)):
        rows = _with_intervals(table_rows(tasks, groups, {(): baselines}, read=read, reference=reference), tasks)
        add_warnings(rows, {(): baselines}, (), None)
        for entry, row in zip(compared, rows, strict=True):
            row |= {"selection": selection, "tuned": " ".join(f"{k} {v}" for k, v in entry.tuned.items()),
                    "trials": entry.trials, "tuning_seconds": entry.tuning_seconds,
                    "rerun_seconds": sum(run_seconds(r.path) for r in groups[(entry.method, entry.weighting, ())])}
        tables[selection] = rows
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": results_dir / f"{name}.md", "csv": results_dir / f"{name}.csv"}
    write_csv([row for rows in tables.values() for row in rows], paths["csv"], csv_fields(tasks))
    single_seconds = sum(run_seconds(r.path) for r in single)
    paths["md"].write_text(markdown(sweep_dir.resolve().name, tasks, protocol, compared, tables, baselines, notes, reruns, rule,
                                    single_seconds))
    return paths
