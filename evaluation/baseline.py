"""Single-task runs → the baseline JSON that `--baseline` reads (METHODS §2: outside the
real 7-class 128x256 release, Δm needs a baseline measured in the same setup).

    python3 -m evaluation.baseline runs/<sweep>/single-*/ --out baseline.json

mIoU and PixAcc come from the `--tasks semantic` runs, AbsErr and RelErr from the
`--tasks depth` runs: per run the mean of its last N epochs' test metrics (summary.json
"last10", N = min(10, epochs)), then the mean over seeds. The runs must share their setup,
evaluation.run_config.setup_of: every setting that changes results except the seed and the
tasks, plus the epochs and the data (its identity, size and image size); the baseline records
it under "source" → "setup", and `evaluation.aggregate --baseline` compares it with the
sweep's. The run folder helpers here (reading runs, comparing their setups) are shared with
evaluation.aggregate.
"""
import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from .delta_m import METRIC_SIGNS
from .run_config import ConfigError, read_config, setup_of
from .run_config import settings as filled_settings
from .run_record import CONFIG, LAST_N, SUMMARY, read_metrics, write_json

TASK_METRICS = {"semantic": ("miou", "pix_acc"), "depth": ("abs_err", "rel_err")}
MAX_SETTINGS_LISTED, MAX_RUNS_LISTED = 10, 4  # bounds of a setup-mismatch message
ABSENT = "(absent)"  # a setting a setup does not record


class RunError(ValueError):
    """A run folder that cannot be used as asked; the message names the folder."""


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise RunError(f"{path}: cannot read it ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: invalid JSON ({e})") from e


@dataclass
class Run:
    path: Path
    config: dict
    summary: dict | None  # None while the run is unfinished

    @property
    def settings(self):
        return filled_settings(self.config)

    @property
    def tasks(self):
        return tuple(self.config["tasks"])

    @property
    def seed(self):
        return self.settings["seed"]

    @property
    def setup(self):
        """What must be equal between runs for their test metrics to be averaged or compared."""
        return setup_of(self.config)

    def last10(self, metric):
        value = (self.summary or {}).get("last10", {}).get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RunError(f"{self.path / SUMMARY}: \"last10\" has no finite {metric!r} (got {value!r})")
        return float(value)

    @property
    def last_epochs(self):
        """How many epochs "last10" averages: summary.json's "last10_epochs", or in a summary from
        before it, min(10, the epochs in metrics.jsonl) as run_record.summarize took them."""
        n = (self.summary or {}).get("last10_epochs")
        if n is None:
            n = min(LAST_N, len(read_metrics(self.path)))
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RunError(f"{self.path}: \"last10\" averages {n!r} epochs (summary.json \"last10_epochs\", "
                           f"else the rows of metrics.jsonl); expected a positive integer")
        return n


def last_epochs_text(runs):
    """The N of "the mean of the last N epochs" of `runs`: one number, since runs of one setup share
    their epochs; should they not, every N, "5/10", rather than a wrong one."""
    return "/".join(str(n) for n in sorted({r.last_epochs for r in runs}))


def last_epochs_phrase(runs):
    """"the last 10 epochs", "the last epoch"."""
    text = last_epochs_text(runs)
    return "the last epoch" if text == "1" else f"the last {text} epochs"


def read_run(path):
    """The run in folder `path`; its summary is None if it has not finished."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise RunError(f"{path}: no {CONFIG}; not a run folder of main_cityscapes.py")
    try:
        config = read_config(path / CONFIG)
    except ConfigError as e:
        raise RunError(str(e)) from None
    return Run(path, config, read_json(path / SUMMARY) if (path / SUMMARY).exists() else None)


def setting_text(value):
    """A setting's value as messages and tables show it: a string bare, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def run_labels(runs):
    """The runs' folder names, or their paths where two folders share a name."""
    names = [r.path.name for r in runs]
    return names if len(set(names)) == len(names) else [str(r.path) for r in runs]


def setup_differences(setups):
    """{setting: {value text: [labels]}} for every setting whose value differs between the
    setups ({label: setup}), in the order of the settings' names."""
    differences = {}
    for key in sorted(set().union(*setups.values())):
        by_value = {}
        for label, setup in setups.items():
            by_value.setdefault(setting_text(setup[key]) if key in setup else ABSENT, []).append(label)
        if len(by_value) > 1:
            differences[key] = by_value
    return differences


def describe_differences(differences):
    """One line per differing setting, "lr: 0.0001 (adam-ew-s0) vs 0.003 (adam-ew-s1)",
    at most MAX_SETTINGS_LISTED lines of at most MAX_RUNS_LISTED labels per value."""
    def labels(names):
        more = len(names) - MAX_RUNS_LISTED
        return ", ".join(names[:MAX_RUNS_LISTED]) + (f" and {more} more" if more > 0 else "")

    lines = [f"  {key}: " + " vs ".join(f"{value} ({labels(names)})" for value, names in by_value.items())
             for key, by_value in list(differences.items())[:MAX_SETTINGS_LISTED]]
    more = len(differences) - MAX_SETTINGS_LISTED
    return "\n".join(lines + ([f"  and {more} more settings"] if more > 0 else []))


def shared_setup(runs, ignore=()):
    """(the first run's setup without the settings in `ignore`, the differences between the
    runs' setups without them): the setup is the runs' common one when there are none."""
    setups = {label: {k: v for k, v in run.setup.items() if k not in ignore}
              for label, run in zip(run_labels(runs), runs)}
    return next(iter(setups.values())), setup_differences(setups)


def check_distinct_seeds(runs):
    """Two runs with one seed would count that seed twice."""
    seen = {}
    for run in runs:
        if run.seed in seen:
            raise RunError(f"{run.path} and {seen[run.seed]} are both seed {run.seed} of the same configuration; "
                           f"leave one out")
        seen[run.seed] = run.path


def mean_std(values):
    """(mean, sample std with ddof = 1); the std is None for a single value, where it is undefined."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def build_baseline(runs):
    """The baseline dict (the four metrics plus "source") from finished single-task Runs of both tasks."""
    if not runs:
        raise RunError("no run folders given; a baseline needs single-task runs of both tasks")
    for run in runs:
        if run.summary is None:
            raise RunError(f"{run.path}: unfinished (no {SUMMARY}); finish it with "
                           f"`python3 main_cityscapes.py --resume {run.path}` or leave it out")
        if len(run.tasks) != 1 or run.tasks[0] not in TASK_METRICS:
            raise RunError(f"{run.path}: trained tasks {', '.join(run.tasks)}; a baseline needs single-task runs "
                           f"(--tasks semantic, --tasks depth)")
    setup, differences = shared_setup(runs)
    if differences:
        raise RunError(f"the single-task runs differ in settings that change results:\n"
                       f"{describe_differences(differences)}\n"
                       f"a baseline serves one setup: give only the single-task runs made with the settings of "
                       f"the multi-task runs it is for, and leave the others out")
    by_task = {task: sorted((r for r in runs if r.tasks == (task,)), key=lambda r: r.seed) for task in TASK_METRICS}
    for task, task_runs in by_task.items():
        if not task_runs:
            raise RunError(f"no single-task {task} run among {', '.join(str(r.path) for r in runs)}; "
                           f"a baseline needs both --tasks semantic and --tasks depth runs")
        check_distinct_seeds(task_runs)
    baseline, std = {}, {}
    for task, task_runs in by_task.items():
        for metric in TASK_METRICS[task]:
            baseline[metric], std[metric] = mean_std([r.last10(metric) for r in task_runs])
            if baseline[metric] <= 0:  # Δm divides by it
                raise RunError(f"single-task {task} runs {', '.join(str(r.path) for r in task_runs)}: "
                               f"mean {metric} is {baseline[metric]}, not positive; they cannot serve as a baseline")
    baseline["source"] = {
        "kind": f"single-task runs, per run the mean of its test metrics over {last_epochs_phrase(runs)}, then the "
                "mean over seeds",
        "setup": setup,
        "runs": {task: [str(r.path) for r in rs] for task, rs in by_task.items()},
        "seeds": {task: [r.seed for r in rs] for task, rs in by_task.items()},
        "std": std,  # sample std (ddof = 1) over seeds; null with one seed
    }
    return baseline


def main(argv=None):
    p = argparse.ArgumentParser(description="Turn single-task runs (--tasks semantic and --tasks depth, any "
                                            "number of seeds) into the baseline JSON that --baseline reads.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished single-task run folders")
    p.add_argument("--out", required=True, metavar="FILE", help="baseline JSON to write")
    args = p.parse_args(argv)
    try:
        baseline = build_baseline([read_run(d) for d in args.run_dirs])
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, baseline)
    seeds = baseline["source"]["seeds"]
    for metric in METRIC_SIGNS:
        std = baseline["source"]["std"][metric]
        print(f"{metric:<8} {baseline[metric]:.6g}" + (f" ± {std:.2g}" if std is not None else " (n=1)"))
    print(f"{baseline['source']['kind']}: semantic seeds {seeds['semantic']}, depth seeds {seeds['depth']}; "
          f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
