"""A sweep's plan: methods × weightings × seeds, plus single-task baselines, expanded into
named runs with their flags, and written to <runs>/<sweep>/plan.json before anything starts.

Run names: <method>-<weighting>-s<seed>; single-task baselines single-<task>-s<seed> (the
first method, weighting ew). The order is seed by seed, so a partial sweep compares every
method.
"""
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from runfolder import atomic
from runfolder.files import PLAN
from runfolder.launcher_flags import owned_flag
from tasks import DEFAULT_TASKS, canonical


class PlanError(ValueError):
    """A sweep that cannot be planned as asked; the message names the flag."""


@dataclass(frozen=True)
class PlannedRun:
    name: str
    flags: tuple  # the run's own flags and the pass-through flags, without --out/--name/--resume


def build_plan(methods, weightings=("ew",), seeds=(0, 1, 2), single_task=False, tasks=None, extra=()):
    """The runs of a sweep, in launch order. tasks: the task list every run trains (None: the
    default of main_cityscapes.py, tasks.DEFAULT_TASKS); single_task adds one baseline per
    listed task."""
    if not methods:
        raise PlanError("--methods is required, e.g. --methods \"adam adam_with_adatask\"")
    for option, values in (("--methods", methods), ("--weightings", weightings), ("--seeds", seeds)):
        twice = sorted({str(v) for v in values if list(values).count(v) > 1})
        if twice:
            raise PlanError(f"{option}: {' '.join(twice)} given twice; each at most once (one run per name)")
    for flag in extra:
        owned = owned_flag(flag)
        if owned:
            raise PlanError(f"{flag}: {owned} is set by the sweep itself (use the sweep's own option, see --help)")
    if tasks:
        try:
            canonical(tasks)
        except ValueError as e:
            raise PlanError(f"--tasks {' '.join(tasks)}: {e}") from None
    task_flags = ("--tasks", *tasks) if tasks else ()
    runs = []
    for seed in seeds:
        for method in methods:
            for weighting in weightings:
                runs.append(PlannedRun(f"{method}-{weighting}-s{seed}",
                                       ("--method", method, "--weighting", weighting, "--seed", str(seed),
                                        *task_flags, *extra)))
        if single_task:
            for task in canonical(tasks or DEFAULT_TASKS):
                runs.append(PlannedRun(f"single-{task}-s{seed}",
                                       ("--method", methods[0], "--weighting", "ew", "--seed", str(seed),
                                        "--tasks", task, *extra)))
    return runs


def write_plan(sweep_dir, runs, backend, options=None, defined_by=None):
    """<sweep>/plan.json: every run with its flags, what defines the plan besides the run names
    (`defined_by`: the flags after -- and the task list), the backend and its options (which may
    change from one call to the next; the runs may not, check_rerun)."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plan = {"backend": backend, "options": options or {}, "defined_by": defined_by or {},
            "runs": [asdict(r) | {"flags": list(r.flags)} for r in runs]}
    atomic.write_text(sweep_dir / PLAN, json.dumps(plan, indent=2) + "\n")
    return sweep_dir / PLAN


def defined_by(extra, tasks, **more):
    """What a plan shares between all its runs: the flags after -- and the task list, and what
    else planned it (`more`, e.g. recipe="nash_mtl@1")."""
    return {"extra": list(extra), "tasks": list(tasks) if tasks else None, **more}


def read_plan(sweep_dir):
    """The PlannedRuns of <sweep>/plan.json."""
    path = Path(sweep_dir) / PLAN
    try:
        plan = json.loads(path.read_text())
        runs = [PlannedRun(r["name"], tuple(r["flags"])) for r in plan["runs"]]
        for i, run in enumerate(runs):
            if not (isinstance(run.name, str) and run.name and "/" not in run.name and run.name not in (".", "..")
                    and all(isinstance(flag, str) for flag in run.flags)):
                raise ValueError(f"run {i + 1}: expected a folder name and a list of flags, got {plan['runs'][i]!r}")
        return runs
    except FileNotFoundError:
        raise PlanError(f"{path}: no plan; was the sweep started with scripts/sweep.sh --sweep "
                        f"{Path(sweep_dir).name}?") from None
    except (ValueError, KeyError, TypeError) as e:
        raise PlanError(f"{path}: not a plan written by scripts/sweep.sh ({e})") from None
    except OSError as e:
        raise PlanError(f"{path}: cannot be read ({e.strerror}); expected the plan scripts/sweep.sh writes") from None


def flag_values(flags):
    """{flag: its values as one string} of a run's flags ("--lr 3e-3", "--tasks semantic depth")."""
    values, current = {}, None
    for token in flags:
        if token.startswith("--"):
            name, _, value = token.partition("=")
            current = name
            values[name] = value
        elif current is not None:
            values[current] = f"{values[current]} {token}".strip()
    return values


def _listed(names, most=4):
    more = len(names) - most
    return ", ".join(names[:most]) + (f" and {more} more" if more > 0 else "")


def check_rerun(sweep_dir, runs, definition, extend=False):
    """The runs a call may run in `sweep_dir`. A sweep folder belongs to one plan: a run that
    plan.json holds keeps its flags (its results were made with them), and the plan's
    `definition` (defined_by) stays; without `extend` the runs must be plan.json's. With
    `extend`: plan.json's runs, then the new ones (more seeds, methods or weightings under the same
    definition). PlanError, before anything starts, naming each flag that differs, its value in
    plan.json and now, and the runs it affects."""
    path = Path(sweep_dir) / PLAN
    if not path.exists():
        return runs
    planned = read_plan(sweep_dir)
    before = {r.name: flag_values(r.flags) for r in planned}
    changed = {}  # (flag, in plan.json, now) -> the runs affected
    recorded = json.loads(path.read_text()).get("defined_by")
    if recorded:  # the definition is every run's: compare it once
        old, new = (flag_values(d["extra"]) | {"--tasks": " ".join(d["tasks"]) if d["tasks"] else None}
                    | {key: value for key, value in d.items() if key not in ("extra", "tasks")}  # e.g. "recipe"
                    for d in (recorded, definition))
        affected = {"every run": [f"all {len(planned)} runs"]}
    else:  # a plan.json from before defined_by: the flags of the runs it shares with this command
        pairs = [(before[r.name], flag_values(r.flags), r.name) for r in runs if r.name in before]
        old, new, affected = {}, {}, {}
        for was, now, name in pairs:
            for flag in set(was) | set(now):
                if was.get(flag) != now.get(flag):
                    old[flag], new[flag] = was.get(flag), now.get(flag)
                    affected.setdefault(flag, []).append(name)
    for flag in sorted(set(old) | set(new)):
        if old.get(flag) != new.get(flag):
            changed[(flag, old.get(flag), new.get(flag))] = affected.get(flag) or affected["every run"]
    if changed:
        lines = [f"  {flag}: {_shown(old)} in plan.json, {_shown(new)} now ({_listed(names)})"
                 for (flag, old, new), names in changed.items()]
        raise PlanError(f"{path}: this command's runs differ from the sweep's plan; a run continues only under "
                        f"the settings it was made with:\n" + "\n".join(lines) +
                        "\nrerun with plan.json's flags, or give the new ones another --sweep")
    if extend:
        return planned + [r for r in runs if r.name not in before]
    names = [r.name for r in runs]
    added, missing = [n for n in names if n not in before], [n for n in before if n not in names]
    if added or missing:
        raise PlanError(f"{path}: this command plans other runs than the sweep's plan"
                        + (f"; new: {_listed(added)}" if added else "")
                        + (f"; not in this command: {_listed(missing)}" if missing else "")
                        + ". Add runs to the sweep with --extend (the same flags after --), or use another --sweep")
    return runs


def _shown(value):
    return "absent" if value is None else repr(value)
