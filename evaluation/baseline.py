"""Single-task runs → the baseline JSON that `--baseline` reads (docs/methods.md, "Δm and baselines": outside the
real 7-class 128x256 release, Δm needs a baseline measured in the same setup).

    python3 -m evaluation.baseline runs/<sweep>/single-*/ --out baseline.json

Each task's reported metrics (tasks/: mIoU and PixAcc of semantic, InstErr of instance,
AbsErr and RelErr of depth) come from the `--tasks <task>` runs: per run the mean of its last
N epochs' test metrics (summary.json "last10", N = min(10, epochs)), then the mean over seeds.
Runs with a validation split (--val-fraction, docs/fair_comparisons.md) give the val metrics by
the same rule (summary.json "val_last10", then the mean over seeds) under "val", so that
--baseline gives Δm on val too; the split's settings are part of the setup, so runs of different
splits never make one baseline, and a run refuses a baseline of another split.
The runs must share their setup, evaluation.run_config.setup_of: every setting that changes
results except the seed and the tasks, plus the epochs and the data (its identity, size and
image size); the baseline records it under "source" → "setup", and `evaluation.aggregate
--baseline` compares it with the sweep's. It also records the trivial predictors' metrics on
the runs' data ("source" → "trivial", evaluation/trivial.py) where that data is still readable,
and says when the baseline is worse than them on some metric (evaluation/weak_baseline.py).
"""
import argparse
import sys
from pathlib import Path

from experiment.flags import setting_definitions
from tasks import TASKS, canonical

from .run_config import describe_differences, shared_setup
from .run_record import (
    SUMMARY,
    RunError,
    check_distinct_seeds,
    last_epochs_phrase,
    read_run,
    write_json,
)
from .significance import mean_std
from .trivial import trivial_metrics
from .weak_baseline import describe, warning_of


def build_baseline(runs, tasks=None):
    """The baseline dict (every reported metric of `tasks`, plus "source") from finished
    single-task Runs, at least one per task. `tasks` (names): default the tasks the runs train."""
    if not runs:
        raise RunError("no run folders given; a baseline needs single-task runs, one or more per task")
    for run in runs:
        if run.summary is None:
            raise RunError(f"{run.path}: unfinished (no {SUMMARY}); finish it with "
                           f"`python3 main_cityscapes.py --resume {run.path}` or leave it out")
        if len(run.tasks) != 1 or run.tasks[0] not in TASKS:
            raise RunError(f"{run.path}: trained tasks {', '.join(run.tasks)}; a baseline needs single-task runs "
                           f"(--tasks <one of {', '.join(TASKS)}>)")
    tasks = canonical(tasks if tasks is not None else {run.tasks[0] for run in runs})
    setup, differences = shared_setup(runs)
    if differences:
        raise RunError(f"the single-task runs differ in settings that change results:\n"
                       f"{describe_differences(differences)}\n"
                       f"a baseline serves one setup: give only the single-task runs made with the settings of "
                       f"the multi-task runs it is for, and leave the others out")
    by_task = {task: sorted((r for r in runs if r.tasks == (task,)), key=lambda r: r.seed) for task in tasks}
    for task, task_runs in by_task.items():
        if not task_runs:
            raise RunError(f"no single-task {task} run among {', '.join(str(r.path) for r in runs)}; "
                           f"a baseline for {' + '.join(tasks)} needs a --tasks {task} run")
        check_distinct_seeds(task_runs)
    baseline, std = _means(by_task, "test")
    used = [r for task_runs in by_task.values() for r in task_runs]
    with_val = "val_last10" in used[0].summary  # the runs share their setup, the split's settings included
    if with_val:
        baseline["val"], val_std = _means(by_task, "val")
    baseline["source"] = {
        "kind": f"single-task runs, per run the mean of its test metrics over {last_epochs_phrase(used)}, then the "
                "mean over seeds",
        "tasks": list(tasks),
        "setup": setup,
        "runs": {task: [str(r.path) for r in rs] for task, rs in by_task.items()},
        "seeds": {task: [r.seed for r in rs] for task, rs in by_task.items()},
        "std": std,  # sample std (ddof = 1) over seeds; null with one seed
        **({"val_std": val_std} if with_val else {}),
    }
    trivial = trivial_of(used[0], tasks)
    if trivial is not None:
        baseline["source"]["trivial"] = trivial
    return baseline


def trivial_of(run, tasks):
    """The trivial predictors' reported metrics of `tasks` on the data of `run` (all the runs
    share it: the setup holds its identity), or None where that data is not readable here."""
    try:
        metrics = trivial_metrics(run.config["data"]["root"], run.setup["classes"], tasks)
    except (OSError, ValueError, KeyError):
        return None
    return {m.key: metrics[m.key] for task in tasks for m in TASKS[task].metrics}


def _means(by_task, split):
    """({metric: mean over seeds}, {metric: std}) of each task's runs' last-N means on `split`."""
    means, std = {}, {}
    for task, task_runs in by_task.items():
        for metric in TASKS[task].metrics:
            means[metric.key], std[metric.key] = mean_std([r.last10(metric.key, split) for r in task_runs])
            if means[metric.key] <= 0:  # Δm divides by it
                raise RunError(f"single-task {task} runs {', '.join(str(r.path) for r in task_runs)}: "
                               f"mean {split} {metric.key} is {means[metric.key]}, not positive; they cannot serve "
                               f"as a baseline")
    return means, std


def describe_seeds(baseline):
    """"semantic seeds [0, 1], depth seeds [0, 1]" of a built baseline."""
    return ", ".join(f"{task} seeds {seeds}" for task, seeds in baseline["source"]["seeds"].items())


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False,
                                description="Turn single-task runs (--tasks <task>, one or more per task and any "
                                            "number of seeds) into the baseline JSON that --baseline reads.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished single-task run folders")
    p.add_argument("--out", required=True, metavar="FILE", help="baseline JSON to write")
    p.add_argument("--tasks", nargs="+", choices=tuple(TASKS), default=None, metavar="TASK",
                   help=f"the tasks the baseline is for, from {', '.join(TASKS)} (default: those the runs train); "
                        "every one needs a run")
    args = p.parse_args(argv)
    try:
        baseline = build_baseline([read_run(d, setting_definitions()) for d in args.run_dirs], args.tasks)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, baseline)
    for metric, value in baseline.items():
        if metric not in ("source", "val"):
            std = baseline["source"]["std"][metric]
            print(f"{metric:<8} {value:.6g}" + (f" ± {std:.2g}" if std is not None else " (n=1)"))
    for metric, value in baseline.get("val", {}).items():
        std = baseline["source"]["val_std"][metric]
        print(f"val {metric:<8} {value:.6g}" + (f" ± {std:.2g}" if std is not None else " (n=1)"))
    print(f"{baseline['source']['kind']}: {describe_seeds(baseline)}; written to {args.out}")
    if "trivial" not in baseline["source"]:
        print("not compared with the trivial predictors: the runs' data is not readable here")
    warning = warning_of(baseline, args.out)
    if warning is not None:
        print(f"warning: {describe(warning)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
