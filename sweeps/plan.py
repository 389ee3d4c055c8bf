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
from tasks import DEFAULT_TASKS, canonical

# Flags the sweep sets itself: a run's folder name must say what the run is.
OWNED_FLAGS = ("--method", "--weighting", "--seed", "--out", "--name", "--resume", "--tasks")


class PlanError(ValueError):
    """A sweep that cannot be planned as asked; the message names the flag."""


@dataclass(frozen=True)
class PlannedRun:
    name: str
    flags: tuple  # the run's own flags and the pass-through flags, without --out/--name/--resume


def owned_flag(token):
    """The flag of OWNED_FLAGS that `token` (one pass-through argument) is or abbreviates, else None:
    "--see 5" must not reach a run as --seed, whatever a parser would make of it."""
    name = token.split("=", 1)[0]
    if len(name) < 3 or not name.startswith("--"):
        return None
    return next((flag for flag in OWNED_FLAGS if flag.startswith(name)), None)


def build_plan(methods, weightings=("ew",), seeds=(0, 1, 2), single_task=False, tasks=None, extra=()):
    """The runs of a sweep, in launch order. tasks: the task list every run trains (None: the
    default of main_cityscapes.py, tasks.DEFAULT_TASKS); single_task adds one baseline per
    listed task."""
    if not methods:
        raise PlanError("--methods is required, e.g. --methods \"adam adam_with_adatask\"")
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


def write_plan(sweep_dir, runs, backend, options=None):
    """<sweep>/plan.json: every run with its flags, the backend and its options."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plan = {"backend": backend, "options": options or {}, "runs": [asdict(r) | {"flags": list(r.flags)}
                                                                     for r in runs]}
    atomic.write_text(sweep_dir / PLAN, json.dumps(plan, indent=2) + "\n")
    return sweep_dir / PLAN


def read_plan(sweep_dir):
    """The PlannedRuns of <sweep>/plan.json."""
    path = Path(sweep_dir) / PLAN
    try:
        plan = json.loads(path.read_text())
        return [PlannedRun(r["name"], tuple(r["flags"])) for r in plan["runs"]]
    except FileNotFoundError:
        raise PlanError(f"{path}: no plan; was the sweep started with scripts/sweep.sh --sweep "
                        f"{Path(sweep_dir).name}?") from None
    except (ValueError, KeyError, TypeError) as e:
        raise PlanError(f"{path}: not a plan written by scripts/sweep.sh ({e})") from None
