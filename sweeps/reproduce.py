"""python -m sweeps reproduce RECIPE: a published table (recipes/RECIPE.toml, docs/reproduce.md)
planned as one sweep, run on any backend, and compared with the paper.

The plan: every runnable row of the recipe x its seeds, as <row>-s<seed>, and the single-task
baselines single-<task>-s<seed>; each run gets the recipe's protocol flags, then the row's own,
then the flags after --, and `--recipe NAME@VERSION` (bookkeeping: recorded, never compared).
The sweep folder is <runs>/RECIPE (<runs>/RECIPE-rehearsal for --rehearse); its plan.json
records the recipe and its version, and a rerun under another version is refused. A rerun
resumes what is unfinished, so --rows and --seeds may grow a sweep step by step. When the runs
have ended: the aggregate table and <results>/comparison.md (evaluation/comparison.py).

--rehearse runs the same plan on a small SynthCity for a few epochs (minutes on a CPU); its
published columns say "not comparable: synthetic data". --estimate times a few steps of each
distinct configuration and prints the plan's device-hours and wall time (sweeps/estimate.py).
"""
import argparse
import sys
from pathlib import Path

from runfolder import lease
from runfolder.launcher_flags import owned_flag
from tasks import DEFAULT_TASKS

from . import cli, plan, status

# A rehearsal's size: later flags win, so these replace the protocol's data, size and length.
REHEARSAL_FLAGS = ("--dataset", "synthcity", "--image-size", "32x64", "--synthcity-train", "16",
                   "--synthcity-val", "8", "--width-mult", "0.0625", "--epochs", "2", "--batch-size", "4")
REHEARSAL_SUFFIX = "-rehearsal"


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m sweeps reproduce", allow_abbrev=False,
        usage="python -m sweeps reproduce RECIPE [--rows \"R ...\"] [--seeds \"S ...\"] [--rehearse] [--estimate] "
              "[--status] [backend options] [-- FLAGS ...]",
        description="Reproduce a published table: every row of recipes/RECIPE.toml x its seeds, and the "
                    "single-task baselines, as one sweep in <runs>/RECIPE on the chosen backend; then the "
                    "aggregate table and <results>/comparison.md beside the paper's numbers. Rerunning resumes. "
                    "Exit status as scripts/sweep.sh's.")
    p.add_argument("recipe", metavar="RECIPE", help="a recipe's name (recipes/RECIPE.toml) or the path of a recipe file")
    g = p.add_argument_group("plan")
    g.add_argument("--rows", type=str.split, default=None, metavar='"R ..."',
                   help="only these rows (their names in the recipe); the sweep may be extended later")
    g.add_argument("--seeds", type=cli._seeds, default=None, metavar='"S ..."',
                   help="only these of the recipe's seeds (default: all of them)")
    g.add_argument("--rehearse", action="store_true",
                   help="the same plan on a small SynthCity for 2 epochs, in <runs>/RECIPE-rehearsal; the "
                        "report's published columns are marked not comparable")
    g.add_argument("--estimate", action="store_true",
                   help="time a few steps of each distinct configuration on this device and print the plan's "
                        "device-hours and wall time on the chosen backend; runs nothing else")
    g.add_argument("--estimate-steps", type=cli._positive, default=3, metavar="N",
                   help="timed steps per configuration for --estimate, after one warm-up step (default: 3)")
    g.add_argument("--runs", default="runs", metavar="DIR", help="the folder of sweep folders (default: runs)")
    g.add_argument("--results", default=None, metavar="DIR",
                   help=f"where the tables and comparison.md go (default: <runs>/RECIPE/{cli.RESULTS})")
    g.add_argument("--status", action="store_true", help="print each run's state; start nothing")
    g.add_argument("run_flags", nargs="*", metavar="-- FLAGS",
                   help="after --: flags for every run, after the recipe's (e.g. --device cuda)")
    cli.add_backend_options(p)
    return p


def sweep_name(recipe, rehearse):
    return recipe.name + (REHEARSAL_SUFFIX if rehearse else "")


def chosen_rows(recipe, names):
    """The runnable rows, or those of `names`; PlanError naming an unknown or unrunnable row."""
    runnable = [row for row in recipe.rows if row.runnable]
    if names is None:
        return runnable
    known = {row.name: row for row in recipe.rows}
    for name in names:
        if name not in known:
            raise plan.PlanError(f"--rows {name}: no such row in {recipe.path}; its rows are "
                                 f"{', '.join(row.name for row in recipe.rows)}")
        if not known[name].runnable:
            raise plan.PlanError(f"--rows {name}: {recipe.path} marks it runnable = false (a method this "
                                 f"repository does not have); it keeps its published numbers only")
    return [known[name] for name in dict.fromkeys(names)]


def chosen_seeds(recipe, seeds):
    if seeds is None:
        return list(recipe.seeds)
    foreign = [seed for seed in seeds if seed not in recipe.seeds]
    if foreign:
        raise plan.PlanError(f"--seeds {' '.join(map(str, foreign))}: not among the recipe's seeds "
                             f"{' '.join(map(str, recipe.seeds))} ({recipe.path})")
    return seeds


def recipe_plan(recipe, rows=None, seeds=None, rehearse=False, extra=()):
    """(PlannedRuns, the plan's definition) of a recipe: seed by seed, every chosen row, then a
    single-task baseline per task."""
    for flag in extra:
        owned = owned_flag(flag)
        if owned:
            raise plan.PlanError(f"{flag}: {owned} is set by the recipe's plan itself")
    tail = (*(REHEARSAL_FLAGS if rehearse else ()), *extra, "--recipe", f"{recipe.name}@{recipe.version}")
    runs = []
    for seed in chosen_seeds(recipe, seeds):
        for row in chosen_rows(recipe, rows):
            runs.append(plan.PlannedRun(f"{row.name}-s{seed}", (
                "--method", row.method, "--weighting", row.weighting, "--seed", str(seed),
                *recipe.flags, *row.flags, *tail)))
        for task in DEFAULT_TASKS:
            runs.append(plan.PlannedRun(f"single-{task}-s{seed}", (
                "--method", recipe.single_task.method, "--weighting", "ew", "--seed", str(seed), "--tasks", task,
                *recipe.flags, *recipe.single_task.flags, *tail)))
    shared = (*recipe.flags, *(REHEARSAL_FLAGS if rehearse else ()), *extra)
    definition = plan.defined_by(shared, None, recipe=f"{recipe.name}@{recipe.version}", rehearsal=rehearse)
    return runs, definition


def main(argv=None):
    from evaluation.recipe import RecipeError, load_recipe

    parser = build_parser()
    args, run_flags = cli.split_at_dashes(parser, list(sys.argv[1:] if argv is None else argv))
    try:
        recipe = load_recipe(args.recipe, check_flags=not args.status)  # --status: no parser, no torch
    except RecipeError as e:
        parser.error(str(e))
    name = sweep_name(recipe, args.rehearse)
    sweep_dir = (Path(args.runs) / name).absolute()
    if args.status:
        return status.main(sweep_dir)
    try:
        lease.lease_timeout()
        runs, definition = recipe_plan(recipe, args.rows, args.seeds, args.rehearse, run_flags)
    except (plan.PlanError, ValueError) as e:
        parser.error(str(e))
    opts = cli.backend_options(argparse.Namespace(**vars(args), sweep=name), run_flags)
    opts.recipe, opts.synthetic = str(recipe.path), args.rehearse
    if args.estimate:
        from .estimate import print_estimate
        return print_estimate(recipe, runs, opts, args.estimate_steps)
    # the recipe holds every row: a call with fewer rows or seeds extends the sweep, never refused
    return cli.start(sweep_dir, runs, definition, opts, extend=True)
