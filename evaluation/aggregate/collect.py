"""A sweep folder read into runs: its finished runs, the runs not averaged and why (their state
is runfolder/state.py's, docs/design.md, "Run states"), its task set, the setup its runs share
and the baselines for Δm."""

from pathlib import Path

from experiment.flags import setting_definitions
from runfolder import state
from runfolder.files import EXIT_SUFFIX, METRICS, SUMMARY, log_file
from tasks import DEFAULT_TASKS, canonical

from ..baseline import build_baseline, describe_seeds
from ..delta_m import load_baseline, select_baseline
from ..run_config import describe_differences, setting_text, setup_differences, shared_setup
from ..run_record import InconsistentRunFolder, RunError, read_json, read_run

RESULTS = "results"  # the default output folder, inside the sweep's folder


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


def weighting_label(run):
    """The row's weighting: its name, with the method's own settings that depart from its
    defaults, "pcgrad (head_grads=weighted)" (docs/design.md, "Settings and their legacy values").
    Runs of one method that differ in them are rows of their own, never averaged together."""
    departures = ", ".join(f"{key}={setting_text(value)}" for key, value in run.departures.items())
    return run.settings["weighting"] + (f" ({departures})" if departures else "")


def separated_values(run, separate):
    """The run's values of the settings that separate rows (--separate), as setting_text writes them."""
    return tuple(setting_text(run.setup[key]) for key in separate)


def _last_log_line(sweep_dir, name):
    path = log_file(sweep_dir, name)
    if not path.exists():
        return ""
    lines = [s.strip() for s in path.read_text(errors="replace").replace("\r", "\n").splitlines() if s.strip()]
    return lines[-1][:200] if lines else ""


def _not_averaged(sweep_dir, name):
    """A row of the 'not averaged' list: name, state, finished epochs, last log line. A run that
    is not failed is unfinished, whether running, interrupted or pending: the list does not tell
    them apart."""
    metrics = sweep_dir / name / METRICS
    # Count lines rather than parse them: a killed run may have left a torn last line.
    epochs = sum(1 for line in metrics.read_text().splitlines() if line.strip()) if metrics.exists() else 0
    run = state.run_state(sweep_dir, name)
    if run.state == state.FAILED:
        text = (f"failed before creating its run folder (exit {run.exit_status})" if run.progress == state.ABSENT
                else f"crashed (exit {run.exit_status})" + (", no config.json" if run.progress == state.CREATED else ""))
    elif run.state == state.PRUNED:
        text = "pruned (stopped early by the tuner; unfinished)"
    else:
        text = "unfinished (running or interrupted)" if run.progress == state.STARTED else "unfinished (no config.json yet)"
    return {"run": name, "state": text, "epochs": epochs, "note": _last_log_line(sweep_dir, name)}


def scan_sweep(sweep_dir, results_dir=None):
    """(finished Runs, not-averaged rows: unfinished, failed, or finished but inconsistent,
    run_record.check_finished); `results_dir`, the output folder, is no run even where
    it lies in the sweep's folder, and neither is the default one."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise RunError(f"{sweep_dir}: not a folder; expected a sweep folder runs/<sweep> of run folders")
    finished, problems = [], []
    outputs = {(sweep_dir / RESULTS).resolve()} | ({Path(results_dir).resolve()} if results_dir else set())
    # hidden folders belong to the launchers (submitit's .slurm), not to runs
    run_names = sorted(p.name for p in sweep_dir.iterdir()
                       if p.is_dir() and not p.name.startswith(".") and p.resolve() not in outputs)
    crashed_early = sorted(p.stem for p in sweep_dir.glob(f"*{EXIT_SUFFIX}") if not (sweep_dir / p.stem).exists()
                           and state.run_state(sweep_dir, p.stem).state == state.FAILED)
    for name in run_names:
        if not (sweep_dir / name / SUMMARY).exists():
            problems.append(_not_averaged(sweep_dir, name))
            continue
        try:
            finished.append(read_run(sweep_dir / name, setting_definitions()))
        except InconsistentRunFolder as e:  # its files disagree: which of them to believe is the user's call
            problems.append(dict(_not_averaged(sweep_dir, name), state="inconsistent", note=str(e)))
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


def find_baselines(tasks, setup, single, baseline_file=None, separate=()):
    """({kind: baseline dict}, {kind: where it comes from, or why it is absent}) for the rows of
    `setup`, the sweep's setup with the rows' values of the separated settings; `single`: the
    single-task runs with those values. A --baseline FILE measured in another setup is refused,
    unless only separated settings differ: then it serves none of these rows."""
    baselines, notes = {}, {}
    published, name, why = select_baseline(tasks, setup["classes"], tuple(setup["image_size"]), setup["data_name"])
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
