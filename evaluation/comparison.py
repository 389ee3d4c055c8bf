"""A reproduced recipe beside its paper (docs/reproduce.md, "The comparison report"):
runs/<recipe>/results/comparison.md, comparison.csv and comparison.png.

    write_comparison(recipe, sweep_dir, results_dir, synthetic=False)

The sweep folder holds the runs `python -m sweeps reproduce RECIPE` planned: `<row>-s<seed>` for
every runnable row and seed, and the single-task baselines `single-<task>-s<seed>`. Per run,
each metric's value follows the recipe's evaluation rule:

- "final": the last epoch's test metrics;
- "last": the mean of the last N = evaluation_epochs epochs' test metrics (all epochs of a
  shorter run, which the report says);
- "best": `best_test_epoch`, the epoch whose test metrics have the lowest Δm against the
  recipe's published single-task row (the earliest such epoch on a tie), the same epoch for
  every metric of the run. Δm is affine in the metrics, so the baseline only sets their
  relative weights (1 / B_j); a fixed published row keeps the choice independent of our own
  single-task runs, which are themselves chosen this way (over their task's metrics). It is
  selected on the test set, so it is optimistic: the name says so (a validation-selected
  best_val_epoch is another rule). A recipe without a published single-task row ranks epochs
  against the Nash-MTL paper's one (evaluation.delta_m.PUBLISHED_BASELINE).

Per row and metric: the published value, our mean ± sample std (ddof 1) over seeds and n, the
standard error SE = s / √n, the 95 % interval mean ± t_{0.975, n−1} · SE (Student t; none for
n = 1), the difference (published − mean) / SE, and a mark where the published value lies
outside the interval. Values are shown in the paper's units (recipe.units). Δm of each row
against the published single-task row and against our single-task runs (per metric the mean
over seeds), the published Δm beside them; the rows ranked by published Δm and by ours, with
Kendall's τ-b between the two rankings over the runnable rows that have both.

Runs are never mixed across settings: every run used shares one setup (aggregate's
check_sweep_setup; a RunError names the settings otherwise), every run carries its row's own
flags and method, and a row whose runs differ in a setting or a method option is not averaged
(the report names the setting).
"""
import argparse
import csv
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from tasks import DEFAULT_TASKS, canonical, reported_metrics, task_of_metric

from . import weak_baseline
from .aggregate.collect import RESULTS, check_sweep_setup, scan_sweep
from .aggregate.render import WARNING_MARK
from .baseline import trivial_of
from .delta_m import PUBLISHED_BASELINE, delta_m
from .recipe import in_repository_units
from .run_config import describe_differences, setting_text, setup_differences, shared_setup
from .run_record import RunError, check_distinct_seeds, read_metrics
from .significance import mean_std
from .summary import LAST_N

LEVEL = 0.95
NOT_COMPARABLE = "not comparable: synthetic data"
BEST = "best_test_epoch"
RULES = {"final": "final epoch", "last": "mean of the last epochs", "best": BEST}
DELTA = "delta_m"  # the published Δm's key in a row's "published"
KINDS = ("published", "single_task")  # Δm against the published single-task row, and against ours
KIND_TEXT = {"published": "vs published single-task row", "single_task": "vs our single-task runs",
             None: "(none: the rows lack a common single-task baseline)"}
RUN_NAME = re.compile(r"(?P<row>[a-z0-9_]+)-s(?P<seed>\d+)")
SINGLE_NAME = re.compile(r"single-(?P<task>[a-z0-9_]+)-s(?P<seed>\d+)")
MARK = "✗"


# ---------------------------------------------------------------- statistics

@dataclass(frozen=True)
class Estimate:
    """Our seeds' values of one metric of one row, and where a published value lies against them."""
    values: tuple
    mean: float
    std: float | None  # sample std, ddof 1; None for n = 1
    se: float | None  # std / √n
    t: float | None  # t_{0.975, n−1}
    low: float | None
    high: float | None
    published: float | None  # in the same units as the values
    diff_se: float | None  # (published − mean) / SE; None without a published value or with SE 0
    outside: bool  # the published value lies outside [low, high]

    @property
    def n(self):
        return len(self.values)


def estimate(values, published=None):
    """The Estimate of `values` (one per seed) against `published` (None: no published value)."""
    values = tuple(float(v) for v in values)
    n = len(values)
    mean, std = mean_std(values)
    se = std / math.sqrt(n) if std is not None else None
    t = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) if n > 1 else None
    low, high = (mean - t * se, mean + t * se) if se is not None else (None, None)
    diff = (published - mean) / se if published is not None and se else None
    outside = published is not None and low is not None and not low <= published <= high
    return Estimate(values, mean, std, se, t, low, high, published, diff, outside)


def kendall(published, ours):
    """(τ-b, two-sided p) of scipy.stats.kendalltau between two lists of Δm (one per row, same
    order); τ None for fewer than two rows or a constant list, p None for fewer than three."""
    if len(published) < 2:
        return None, None
    result = stats.kendalltau(published, ours)  # variant "b": ties in either list are corrected for
    tau = None if math.isnan(result.statistic) else float(result.statistic)
    p = float(result.pvalue) if tau is not None and len(published) >= 3 and not math.isnan(result.pvalue) else None
    return tau, p


def agreement(tau, p, n):
    """The sentence whether two rankings agree."""
    if tau is None:
        return (f"Kendall's τ is undefined over {n} row{'s' * (n != 1)} "
                "(it needs two rows with both Δm, and Δm that are not all equal).")
    verdict = ("the rankings agree (the same order)" if tau == 1 else
               "the rankings agree in part" if tau > 0 else "the rankings disagree")
    p_text = f", p = {p:.3g} (two-sided)" if p is not None else " (no p-value with fewer than 3 rows)"
    return f"Kendall's τ-b = {tau:.3f} over {n} runnable rows{p_text}: {verdict}."


# ---------------------------------------------------------------- the evaluation rule

def epoch_test_metrics(run):
    return [row["test"] for row in read_metrics(run.path)]


def rule_values(run, rule, epochs, keys, reference):
    """({metric: value} of `keys` for one run by the evaluation rule, and which epochs gave them).
    `epochs`: N of "last"; `reference`: the published single-task row in repository units (the
    recipe's, else PUBLISHED_BASELINE), which best_test_epoch ranks epochs by (over the keys it shares with the run's metrics)."""
    rows = epoch_test_metrics(run)
    if rule == "final":
        return {k: float(rows[-1][k]) for k in keys}, f"epoch {len(rows) - 1}"
    if rule == "last":
        n = min(epochs, len(rows))
        if n == run.last_epochs:  # summary.json's "last10" averages exactly these epochs
            values = {k: run.last10(k) for k in keys}
        else:
            values = {k: math.fsum(float(r[k]) for r in rows[-n:]) / n for k in keys}
        short = f" (the run has {len(rows)} < {epochs} epochs)" if n < epochs else ""
        return values, f"epochs {len(rows) - n}–{len(rows) - 1}{short}"
    if rule == "best":
        shared = {k: v for k, v in reference.items() if k in rows[0]}
        if not shared:
            raise RunError(f"{run.path}: best_test_epoch needs a published single-task metric among its test "
                           f"metrics ({', '.join(rows[0])})")
        scores = [delta_m(r, shared) for r in rows]
        best = min(range(len(rows)), key=lambda i: (scores[i], i))
        return {k: float(rows[best][k]) for k in keys}, f"{BEST} {best}"
    raise RunError(f"evaluation rule {rule!r}: expected one of {', '.join(RULES)}")


def rule_text(recipe):
    if recipe.evaluation == "final":
        return "final: each run's last epoch's test metrics"
    if recipe.evaluation == "last":
        return f"last: per run the mean of the test metrics of its last {recipe.evaluation_epochs or LAST_N} epochs"
    return (f"best: `{BEST}`, per run the epoch whose test metrics have the lowest Δm against the published "
            f"single-task row (the same epoch for all its metrics; selected on the test set, hence optimistic)")


# ---------------------------------------------------------------- runs into rows

def flag_settings(flags):
    """{setting: value} of the settings that `flags` (main_cityscapes.py flags) give explicitly."""
    from experiment.flags import build_parser, explicit_flags  # torch: only when a report is written

    parsed = vars(build_parser().parse_args(list(flags)))
    return {key: parsed[key] for key in explicit_flags(list(flags))}


def _same_value(recorded, wanted):
    if isinstance(wanted, (list, tuple)):
        return isinstance(recorded, (list, tuple)) and sorted(map(setting_text, recorded)) == sorted(
            map(setting_text, wanted))
    if isinstance(wanted, float) and isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        return math.isclose(recorded, wanted, rel_tol=1e-12)
    return recorded == wanted


def flag_mismatch(run, wanted):
    """"lr 0.001 (the recipe gives 0.0001)" for each setting of `wanted` the run does not carry."""
    settings = run.settings
    return [f"{key} {setting_text(settings.get(key, 'absent'))} (the recipe gives {setting_text(value)})"
            for key, value in wanted.items() if not _same_value(settings.get(key), value)]


@dataclass
class Matched:
    rows: dict  # row name → [Run] by seed
    single: dict  # task → [Run] by seed
    problems: list  # runs not used: {"run", "state", "epochs", "note"}
    refused: dict  # row name → why its runs are not averaged


def _problem(run, state, note=""):
    return {"run": run.path.name, "state": state, "epochs": len(read_metrics(run.path)), "note": note}


def match_runs(recipe, finished, tasks):
    """The finished runs sorted into the recipe's rows and single-task baselines; the others
    listed with the reason."""
    rows = {row.name: row for row in recipe.rows if row.runnable}
    wanted = {name: flag_settings([*row.flags, "--method", row.method, "--weighting", row.weighting])
              for name, row in rows.items()}
    single = recipe.single_task
    wanted_single = flag_settings([*single.flags, "--method", single.method, "--weighting", "ew"])
    seeds = set(recipe.seeds)
    matched = Matched({name: [] for name in rows}, {task: [] for task in tasks}, [], {})
    for run in finished:
        name = run.path.name
        row, task = RUN_NAME.fullmatch(name), SINGLE_NAME.fullmatch(name)
        if task and task["task"] in tasks:
            key, target, want, seed = task["task"], matched.single, wanted_single, int(task["seed"])
            if run.tasks != (key,):
                matched.problems.append(_problem(run, "not used", f"trains {' + '.join(run.tasks)}, not {key} alone"))
                continue
        elif row and row["row"] in rows:
            key, target, want, seed = row["row"], matched.rows, wanted[row["row"]], int(row["seed"])
            if len(run.tasks) < 2 or tuple(run.tasks) != tasks:
                matched.problems.append(_problem(run, "not used", f"trains {' + '.join(run.tasks)}, not "
                                                                  f"{' + '.join(tasks)}"))
                continue
        else:
            matched.problems.append(_problem(run, "finished, not in the recipe",
                                             "its name is no runnable row's <row>-s<seed> nor single-<task>-s<seed>"))
            continue
        if seed not in seeds or run.seed != seed:
            matched.problems.append(_problem(run, "not used", f"seed {run.seed} (name: {seed}); the recipe's seeds "
                                                              f"are {sorted(seeds)}"))
            continue
        mismatch = flag_mismatch(run, want)
        if mismatch:
            matched.problems.append(_problem(run, "not used: not the recipe's flags", "; ".join(mismatch)))
            continue
        target[key].append(run)
    for groups in (matched.rows, matched.single):
        for key, runs in groups.items():
            runs.sort(key=lambda r: r.seed)
            check_distinct_seeds(runs)
    for name, runs in matched.rows.items():
        why = row_differences(runs)
        if why:
            matched.refused[name] = why
    return matched


def row_differences(runs):
    """Why the runs of one row cannot be averaged ("" if they can): the settings or method
    options in which they differ, named with their values and runs."""
    if len(runs) < 2:
        return ""
    _, differences = shared_setup(runs)
    identities = setup_differences({r.path.name: r.method_identity for r in runs})
    parts = []
    if differences:
        parts.append("its runs differ in settings:\n" + describe_differences(differences))
    if identities:
        parts.append("its runs differ in method options:\n" + describe_differences(identities))
    return "\n".join(parts)


# ---------------------------------------------------------------- the comparison's numbers

@dataclass
class RowResult:
    name: str
    label: str
    runnable: bool
    runs: list
    metrics: dict  # key → Estimate (our values, published in repository units); absent without runs
    delta: dict  # kind → Estimate of our Δm (published: the row's published Δm in our sign)
    published: dict  # the row's published values in the paper's units (Δm as printed)
    note: str
    refused: str = ""
    printed: dict = None  # the literal of each published value, for its digits (Row.published_text)


def recipe_tasks(recipe):
    """The tasks whose metrics the recipe's published single-task row holds (semantic + depth)."""
    keys = [k for k in recipe.single_task.published if k != DELTA]
    return canonical({task_of_metric(k) for k in keys}) if keys else DEFAULT_TASKS


def single_task_baseline(single, values, keys_of_task):
    """{metric: mean over the task's seeds} from our single-task runs, or None (a task without
    runs, or a mean that is not positive: Δm divides by it)."""
    baseline = {}
    for task, keys in keys_of_task.items():
        runs = single.get(task, [])
        if not runs:
            return None
        for key in keys:
            baseline[key] = math.fsum(values[r.path.name][key] for r in runs) / len(runs)
            if baseline[key] <= 0:
                return None
    return baseline


def compare(recipe, sweep_dir, results_dir=None):
    """Everything the report shows, as a dict (the markdown, CSV and figure are drawn from it)."""
    sweep_dir = Path(sweep_dir)
    finished, problems = scan_sweep(sweep_dir, results_dir)
    tasks = recipe_tasks(recipe)
    keys = tuple(m.key for m in reported_metrics(tasks))
    keys_of_task = {task: tuple(m.key for m in reported_metrics([task])) for task in tasks}
    matched = match_runs(recipe, finished, tasks)
    problems = problems + matched.problems
    used = [r for runs in (*matched.rows.values(), *matched.single.values()) for r in runs]
    row_setting_keys = set()
    for row in recipe.rows:
        if row.runnable:
            row_setting_keys |= set(flag_settings(row.flags))
    known = set().union(*(r.setup for r in used)) if used else set()
    separate = tuple(sorted(row_setting_keys & known))
    setup = check_sweep_setup(sweep_dir, used, separate) if used else None
    reference = in_repository_units(recipe, recipe.single_task.published)
    reference = {k: v for k, v in reference.items() if k != DELTA}  # {} where the paper prints no single-task row
    values, epochs_used = {}, {}
    for run in used:
        task_keys = keys if len(run.tasks) > 1 else keys_of_task[run.tasks[0]]
        values[run.path.name], epochs_used[run.path.name] = rule_values(
            run, recipe.evaluation, recipe.evaluation_epochs or LAST_N, task_keys, reference or dict(PUBLISHED_BASELINE))
    ours = single_task_baseline(matched.single, values, keys_of_task)
    weak = weak_of_ours(ours, matched.single, tasks) if ours is not None else None
    single_setup = {k: matched.single[t][0].setup.get(k) for t in tasks if matched.single[t] for k in separate}

    st = recipe.single_task
    st_published = in_repository_units(recipe, st.published)
    single_metrics = {}
    for task, task_keys in keys_of_task.items():
        runs = matched.single[task]
        for key in task_keys:
            if runs:
                single_metrics[key] = estimate([values[r.path.name][key] for r in runs], st_published.get(key))
    results = [RowResult("single", st.label, True, [r for t in tasks for r in matched.single[t]], single_metrics,
                         {}, dict(st.published), st.note, printed=getattr(st, "published_text", {}))]
    for row in recipe.rows:
        published = in_repository_units(recipe, row.published)
        runs = matched.rows.get(row.name, []) if row.runnable else []
        refused = matched.refused.get(row.name, "")
        note = row.note
        metrics, delta = {}, {}
        if runs and not refused:
            for key in keys:
                metrics[key] = estimate([values[r.path.name][key] for r in runs], published.get(key))
            printed = row.published.get(DELTA)
            ours_sign = printed * recipe.delta_m_sign if printed is not None else None
            if reference:
                delta["published"] = estimate([delta_m(values[r.path.name], reference) for r in runs], ours_sign)
            differs = [k for k in separate if runs[0].setup.get(k) != single_setup.get(k)]
            if ours is not None and not differs:
                delta["single_task"] = estimate([delta_m(values[r.path.name], ours) for r in runs], ours_sign)
            elif differs:
                note = (note + "; " if note else "") + (f"no Δm against our single-task runs: the row's "
                                                        f"{', '.join(differs)} differ from theirs")
        results.append(RowResult(row.name, row.label, row.runnable, runs, metrics, delta, dict(row.published),
                                 note, refused, getattr(row, "published_text", {})))
    ranking = rank(recipe, results)
    return {"recipe": recipe, "tasks": tasks, "keys": keys, "setup": setup, "rows": results,
            "problems": problems, "values": values, "epochs_used": epochs_used, "ranking": ranking,
            "baseline_ours": ours, "baseline_ours_warning": weak}


def weak_of_ours(ours, single, tasks):
    """The sentence of evaluation/weak_baseline.py where our single-task runs are worse than the
    trivial predictors on their data (None where they are not, or the data is not readable here)."""
    trivial = trivial_of(single[tasks[0]][0], tasks)
    source = {"trivial": trivial, "runs": {task: [str(r.path) for r in single[task]] for task in tasks}}
    warning = trivial and weak_baseline.warning_of({**ours, "source": source}, "of our single-task runs")
    return weak_baseline.describe(warning) if warning else None


def rank(recipe, results):
    """The paper's ranking (published Δm ascending), ours (our mean Δm ascending: against our
    single-task runs where every ranked row has it, else against the published row), and τ-b."""
    rows = [r for r in results[1:] if r.published.get(DELTA) is not None]
    paper = sorted(rows, key=lambda r: r.published[DELTA] * recipe.delta_m_sign)
    ranked = [r for r in results[1:] if r.delta]
    kind = next((k for k in ("single_task", "published") if ranked and all(k in r.delta for r in ranked)), None)
    ranked = ranked if kind else []
    both = [r for r in paper if r in ranked]
    ours = sorted(ranked, key=lambda r: r.delta[kind].mean)
    tau, p = kendall([r.published[DELTA] * recipe.delta_m_sign for r in both], [r.delta[kind].mean for r in both])
    return {"paper": [r.name for r in paper], "ours": [r.name for r in ours], "kind": kind,
            "compared": [r.name for r in both], "tau": tau, "p": p}


# ---------------------------------------------------------------- formatting

def decimals(value, literal=None):
    """The digits after the point with which a published number is printed (0.0125: 4; "93.10": 2
    from its literal, which the float has lost)."""
    text = literal if literal else repr(float(value))
    if "e" in text.lower() or "." not in text:
        return 0 if literal and "e" not in text.lower() else 4
    return len(text.split(".")[1]) if literal else len(text.split(".")[1].rstrip("0")) or 1


def metric_label(key):
    metric = {m.key: m for m in reported_metrics(["semantic", "depth", "instance"])}.get(key)
    if metric is None:
        return "Δm (%)"
    return f"{metric.label} {'↑' if metric.higher_is_better else '↓'}"


def _fmt(value, digits, sign=False):
    return "" if value is None else f"{value:{'+' if sign else ''}.{digits}f}"


def _md_table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]


def _estimate_cells(est, factor, digits, synthetic, sign=False):
    """our mean ± std, n, SE, 95 % interval, (published − mean)/SE, mark: in the paper's units."""
    if est is None:
        return ["", "", "", "", "", ""]
    def scaled(v):
        return None if v is None else v * factor

    d = digits + 1
    mean = _fmt(scaled(est.mean), d, sign) + (f" ± {_fmt(scaled(est.std), d)}" if est.std is not None else "")
    interval = (f"[{_fmt(scaled(est.low), d, sign)}, {_fmt(scaled(est.high), d, sign)}]" if est.low is not None
                else "none (n = 1)")
    diff = "" if synthetic or est.diff_se is None else f"{0.0 if abs(est.diff_se) < 0.005 else est.diff_se:+.2f}"
    mark = MARK if est.outside and not synthetic else ""
    return [mean, est.n, _fmt(scaled(est.se), d), interval, diff, mark]


def markdown(result, synthetic, sweep_dir, figure_name):
    recipe = result["recipe"]
    source = recipe.source
    pub = f"published ({NOT_COMPARABLE})" if synthetic else "published"
    diff_header = f"(published − mean)/SE ({NOT_COMPARABLE})" if synthetic else "(published − mean)/SE"
    mark_header = "outside 95 %" + (" (not drawn: synthetic data)" if synthetic else "")
    ident = ", ".join(f"{k} {source[k]}" for k in ("arxiv", "doi") if source.get(k))
    lines = [f"# Comparison: {recipe.name} (recipe version {recipe.version})", "", f"**{recipe.title}**", ""]
    if synthetic:
        lines += [(f"> **Synthetic rehearsal** on SynthCity: every published column is labelled \"{NOT_COMPARABLE}\". "
                  "This report checks the pipeline, not the paper."), ""]
    lines += [(f"- Source: {source.get('paper', '')} ({source.get('authors', '')}), {source.get('venue', '')} "
              f"{source.get('year', '')}, {source.get('table', '')}; {ident}"),
              f"- Sweep: `{Path(sweep_dir).name}` (the folder of its runs; no machine path, so a report can be committed)",
              f"- Evaluation rule: {rule_text(recipe)}",
              "- Values in the paper's units (published = ours × " +
              ", ".join(f"{k} {v:g}" for k, v in recipe.units.items()) + ")"]
    if recipe.delta_m_sign == -1:
        lines.append("- The paper prints Δm with the opposite sign; Δm is shown here as the repository computes it "
                     "(lower is better), the published value times −1")
    planned = [r for r in result["rows"][1:] if r.runnable]
    found_runs = sum(len(r.runs) for r in result["rows"])
    n_planned = len(recipe.seeds) * (len(planned) + len(result["tasks"]))
    lines += [(f"- Seeds planned: {list(recipe.seeds)} for each of {len(planned)} runnable rows and "
              f"{len(result['tasks'])} single-task baselines ({n_planned} runs); finished and used: {found_runs}"),
              ("- Our mean ± sample std (ddof 1) over seeds, n seeds; SE = std/√n; 95 % interval = mean ± "
              "t_{0.975, n−1}·SE (Student t; none for n = 1); "
              f"{MARK}: the published value lies outside our 95 % interval"), ""]
    lines += ["## Runs", ""]
    lines += _md_table(["row", "planned seeds", "seeds found", "missing"],
                       [[r.label if r.name != "single" else f"{r.label} (single-task runs)",
                         " ".join(map(str, recipe.seeds)) if r.runnable else "not runnable",
                         " ".join(f"{t}:{s.seed}" if r.name == "single" else str(s.seed)
                                  for t, s in ((s.tasks[0], s) for s in r.runs)),
                         " ".join(str(s) for s in recipe.seeds if r.name != "single" and r.runnable
                                  and s not in {x.seed for x in r.runs})]
                        for r in result["rows"]])
    lines.append("")
    for key in result["keys"]:
        factor = recipe.units.get(key, 1)
        lines += [f"## {metric_label(key)}", ""]
        table = []
        for r in result["rows"]:
            printed = r.published.get(key)
            digits = (decimals(printed, (r.printed or {}).get(key)) if printed is not None
                      else 2 if factor == 100 else 4)
            label = f"{r.label} (single-task)" if r.name == "single" else r.label
            table.append([label, "" if printed is None else f"{printed:.{digits}f}",
                          *(_estimate_cells(r.metrics.get(key), factor, digits, synthetic)
                            if r.runnable else ["not runnable", "", "", "", "", ""])])
        lines += _md_table(["row", pub, "ours: mean ± std", "n", "SE", "95 % interval", diff_header, mark_header],
                           table)
        lines.append("")
    lines += ["## Δm (%)", "",
              ("Δm against the published single-task row, and against our single-task runs (per metric the mean "
              "over their seeds, by the same evaluation rule); the marks and SE differences compare the published "
              "Δm with ours against the published row, the column computed as the paper computes it."), ""]
    table = []
    for r in result["rows"][1:]:
        printed = r.published.get(DELTA)
        shown = None if printed is None else printed * recipe.delta_m_sign
        if not r.runnable:
            table.append([r.label, _fmt(shown, 2, True), "not runnable", "", "", "", "", "", ""])
            continue
        cells = _estimate_cells(r.delta.get("published"), 1, 2, synthetic, sign=True)
        single = r.delta.get("single_task")
        single_text = "" if single is None else (
            _fmt(single.mean, 3, True) + (f" ± {_fmt(single.std, 3)}" if single.std is not None else ""))
        table.append([r.label, _fmt(shown, 2, True), *cells, single_text + (f" {WARNING_MARK}" * bool(
            single_text and result["baseline_ours_warning"]))])
    lines += _md_table(["row", pub, "ours vs published ST: mean ± std", "n", "SE", "95 % interval", diff_header,
                        mark_header, "ours vs our ST: mean ± std"], table)
    lines.append("")
    if result["baseline_ours_warning"]:
        lines += [f"{WARNING_MARK} {result['baseline_ours_warning']}", ""]
    lines += ranking_section(result, synthetic)
    notes = [(r.label, r.note) for r in result["rows"] if r.note]
    refused = [(r.label, r.refused) for r in result["rows"] if r.refused]
    if refused:
        lines += ["## Rows not averaged", ""]
        for label, why in refused:
            lines += [f"- **{label}**: " + why.replace("\n", "\n  "), ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {label}: {note}" for label, note in notes] + [""]
    if result["problems"]:
        lines += ["## Runs not used", "", ("Unfinished, failed or inconsistent runs, and runs that are not the "
                  "recipe's, are listed and never averaged."), ""]
        lines += _md_table(["run", "state", "epochs", "note"],
                           [[p["run"], p["state"], p["epochs"], p["note"].replace("|", "/").replace("\n", " ")]
                            for p in result["problems"]])
        lines.append("")
    lines += ["## Per run", "", f"The epochs each run's values come from ({recipe.evaluation}).", ""]
    keys = result["keys"]
    per_run = []
    for r in result["rows"]:
        for run in r.runs:
            v = result["values"][run.path.name]
            per_run.append([run.path.name, result["epochs_used"][run.path.name],
                            *(_fmt(v[k] * recipe.units.get(k, 1), 4) if k in v else "" for k in keys)])
    lines += _md_table(["run", "epochs", *(metric_label(k) for k in keys)], per_run)
    lines += ["", f"![published vs ours]({figure_name})", ""]
    return "\n".join(lines)


def ranking_section(result, synthetic):
    recipe, ranking = result["recipe"], result["ranking"]
    by_name = {r.name: r for r in result["rows"]}
    kind = ranking["kind"]
    ours_rank = {name: i + 1 for i, name in enumerate(ranking["ours"])}
    lines = ["## Ranking by Δm", "",
             (f"The paper's order (published Δm ascending, lower is better) and ours (our mean Δm "
             f"{KIND_TEXT[kind]})."), ""]
    table = []
    for i, name in enumerate(ranking["paper"], 1):
        r = by_name[name]
        ours = r.delta.get(kind) if kind else None
        table.append([i, r.label, _fmt(r.published[DELTA] * recipe.delta_m_sign, 2, True),
                      ours_rank.get(name, "not runnable" if not r.runnable else "no runs"),
                      _fmt(ours.mean, 2, True) if ours is not None else ""])
    header = "paper rank" + (f" ({NOT_COMPARABLE})" if synthetic else "")
    lines += _md_table([header, "row", "published Δm", "our rank", f"our Δm {KIND_TEXT[kind]}"], table)
    lines.append("")
    sentence = agreement(ranking["tau"], ranking["p"], len(ranking["compared"]))
    if synthetic:
        sentence = f"({NOT_COMPARABLE}) " + sentence
    lines += [sentence + " τ-b: scipy.stats.kendalltau, ties corrected for; over the runnable rows that have both "
              "a published and our Δm.", ""]
    return lines


CSV_FIELDS = ("row", "label", "runnable", "metric", "published", "n", "mean", "std", "se", "t", "low", "high",
              "diff_se", "outside", "seeds")


def _times(value, factor):
    return None if value is None else value * factor


def write_csv(result, path, synthetic):
    """One line per row and metric (Δm: delta_m_published, delta_m_single_task), in the paper's units."""
    recipe = result["recipe"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in result["rows"]:
            entries = [(k, r.metrics.get(k), recipe.units.get(k, 1), r.published.get(k)) for k in result["keys"]]
            printed = r.published.get(DELTA)
            for kind in KINDS:
                if r.name != "single":
                    entries.append((f"delta_m_{kind}", r.delta.get(kind), 1,
                                    None if printed is None else printed * recipe.delta_m_sign))
            for key, est, factor, published in entries:
                line = {"row": r.name, "label": r.label, "runnable": r.runnable, "metric": key,
                        "published": published}
                if est is not None:
                    line |= {"n": est.n, "mean": _times(est.mean, factor), "std": _times(est.std, factor),
                             "se": _times(est.se, factor), "t": est.t, "low": _times(est.low, factor),
                             "high": _times(est.high, factor),
                             "diff_se": None if synthetic else est.diff_se,
                             "outside": None if synthetic else est.outside,
                             "seeds": " ".join(str(run.seed) for run in r.runs)}
                writer.writerow({k: "" if line.get(k) is None else line[k] for k in CSV_FIELDS})


def draw(result, path, synthetic):
    """Per metric a panel: per row the published value (hollow diamond) and our mean with its 95 %
    interval (error bar; a bare point for n = 1)."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    from .figures import OKABE_ITO, STYLE

    recipe = result["recipe"]
    panels = [*result["keys"], DELTA]
    rows = result["rows"]
    with rc_context(STYLE):
        cols = min(3, len(panels))
        nrows = math.ceil(len(panels) / cols)
        fig = Figure(figsize=(3.2 * cols, 0.25 * len(rows) + 2.6 * nrows), layout="constrained")
        axes = fig.subplots(nrows, cols, squeeze=False).ravel()
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        delta_kind = "published" if any("published" in r.delta for r in rows) else "single_task"
        for ax, key in zip(axes, panels):
            factor = recipe.units.get(key, 1) if key != DELTA else 1
            shown = rows if key != DELTA else rows[1:]  # the single-task row has no Δm
            for i, r in enumerate(shown):
                est = r.metrics.get(key) if key != DELTA else r.delta.get(delta_kind)
                printed = r.published.get(key)
                if key == DELTA and printed is not None:
                    printed *= recipe.delta_m_sign
                if est is not None:
                    err = None if est.se is None else [[est.t * est.se * factor], [est.t * est.se * factor]]
                    ax.errorbar([est.mean * factor], [i], xerr=err, marker="o", color=OKABE_ITO[0], capsize=2,
                                linestyle="none", zorder=2)
                if printed is not None:  # drawn over ours: a published value inside our marker stays visible
                    ax.plot([printed], [i], marker="D", markerfacecolor="none", color="0.3" if synthetic else "black",
                            linestyle="none", zorder=3)
            ax.set_yticks(range(len(shown)), [r.label + (" (ST)" if r.name == "single" else "") for r in shown])
            ax.set_ylim(len(shown) - 0.5, -0.5)
            ax.set_title(metric_label(key) if key != DELTA else f"Δm (%) ↓ {KIND_TEXT[delta_kind]}")
        handles = [ax.plot([], [], marker="D", markerfacecolor="none", color="black", linestyle="none")[0],
                   ax.errorbar([], [], xerr=[[], []], marker="o", color=OKABE_ITO[0], linestyle="none")]
        fig.legend(handles, [f"published ({NOT_COMPARABLE})" if synthetic else "published",
                             "ours: mean, 95 % interval"], loc="outside lower center", ncols=2)
        fig.suptitle(f"{recipe.name} v{recipe.version}: {recipe.title}" + (f" ({NOT_COMPARABLE})" if synthetic
                                                                            else ""), fontsize=8)
        fig.savefig(path, dpi=150)


def write_comparison(recipe, sweep_dir, results_dir, synthetic=False):
    """Write results_dir/comparison.md, comparison.csv and comparison.png for `recipe`
    (evaluation.recipe.Recipe) from the runs in `sweep_dir`; returns {"md", "csv", "png": Path}.
    `synthetic`: a rehearsal on SynthCity, whose published columns are not comparable.
    RunError where the runs used do not share one setup (naming the settings)."""
    results_dir = Path(results_dir)
    result = compare(recipe, sweep_dir, results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": results_dir / "comparison.md", "csv": results_dir / "comparison.csv",
             "png": results_dir / "comparison.png"}
    draw(result, paths["png"], synthetic)
    write_csv(result, paths["csv"], synthetic)
    paths["md"].write_text(markdown(result, synthetic, sweep_dir, paths["png"].name))
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False,
                                description="The comparison report of a reproduced recipe (what `python -m sweeps "
                                            "reproduce` writes when its runs finish).")
    p.add_argument("recipe", help="a recipe's name (recipes/<name>.toml) or path")
    p.add_argument("sweep_dir", help="the sweep folder of its runs, runs/<recipe>")
    p.add_argument("--results", default=None, help="output folder (default: <sweep_dir>/results)")
    p.add_argument("--synthetic", action="store_true", help="a rehearsal on SynthCity: published not comparable")
    args = p.parse_args(argv)
    from .recipe import RecipeError, load_recipe

    results = args.results if args.results is not None else Path(args.sweep_dir) / RESULTS
    try:
        paths = write_comparison(load_recipe(args.recipe), args.sweep_dir, results, args.synthetic)
    except (RecipeError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
