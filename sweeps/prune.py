"""--prune for python -m sweeps tune: stop the trials whose validation objective lags, early.

The tuner calls a Pruner with its running trials every few seconds (run_study's poll). For each,
the Pruner reads the per-epoch validation objective that the run writes to metrics.jsonl
("val_objective", one row per finished epoch, "epoch" counted from 0), reports each new epoch to
Optuna (trial.report(value, epoch)) and asks the study's pruner (trial.should_prune()). A trial
to prune is stopped cleanly through its backend (backend.stop: SIGTERM locally, scancel on Slurm,
ray.cancel on Ray), waited for until its process has exited, and then marked:
<sweep>/<name>.pruned (runfolder/state.py, state PRUNED). The tuner tells the study
TrialState.PRUNED for a run in that state. The run keeps its checkpoint: removing the mark and
rerunning the sweep (or the tuner) resumes it.

The rules (make_pruner): median, Optuna's MedianPruner: a trial is pruned at an epoch when its
objective there is worse than the median of the completed trials' objectives at the same epoch;
hyperband, Optuna's HyperbandPruner (successive halving over brackets, epochs as the resource).
Neither judges the first epoch (epoch 0): under --select-by normalized_mean the first epoch is
every run's reference, the same value for all, so it tells nothing.
"""
import json
import math
import time
from pathlib import Path

from runfolder import lease, state
from runfolder.files import METRICS

from . import runner

RULES = ("median", "hyperband")
STARTUP_TRIALS = 2  # median: completed trials needed before any is pruned (Optuna's default, 5, suits larger studies)
WARMUP_EPOCHS = 1  # epochs never judged: the first (see the module's docstring)
EXIT_TIMEOUT_S = 600.0  # how long a stopped run may take to exit (a Slurm element leaves the queue within minutes)


def make_pruner(rule):
    """The Optuna pruner of --prune `rule` (RULES), or None without pruning; ValueError naming
    --prune for another rule."""
    if rule is None:
        return None
    import optuna  # here: the tuner's --help and --status load no Optuna

    if rule == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=WARMUP_EPOCHS)
    if rule == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=WARMUP_EPOCHS + 1)
    raise ValueError(f"--prune {rule}: unknown rule; expected one of {', '.join(RULES)}")


def validation_objectives(run_dir):
    """[(epoch, val_objective)] of the finished epochs in run_dir's metrics.jsonl, in order; rows
    without a finite objective (a torn last line of a running run, an epoch before the split had
    one) are left out."""
    try:
        lines = (Path(run_dir) / METRICS).read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        value = row.get("val_objective") if isinstance(row, dict) else None
        if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(row.get("epoch"), int):
            found.append((row["epoch"], float(value)))
    return found


class Pruner:
    """run_study's poll for --prune: call it with the running trials (objects with .trial, an
    optuna.Trial; .run, the PlannedRun; .run_dir)."""

    def __init__(self, sweep_dir, backend, rule, exit_timeout=EXIT_TIMEOUT_S, announce=runner.say):
        self.sweep_dir, self.backend, self.rule = Path(sweep_dir), backend, rule
        self.exit_timeout, self.announce = exit_timeout, announce
        self.reported = {}  # {trial number: epochs reported to the study}

    def __call__(self, active, ended=False):
        """ended: the batch's runs have exited; their last epochs are reported (later trials'
        medians need them), and nothing is stopped."""
        for trial in active:
            verdict = self.decide(trial.trial, trial.run_dir, judge=not ended)
            if verdict is not None:
                self.prune(trial.run.name, *verdict)

    def decide(self, trial, run_dir, judge=True):
        """Report run_dir's new epochs to `trial`; (epoch, objective) of the last one when
        `judge` and the study's pruner says to prune, else None."""
        if trial.number not in self.reported:  # after a tuner restart the study holds some epochs already
            stored = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
            self.reported[trial.number] = set(stored.intermediate_values)
        seen = self.reported[trial.number]
        new = [(epoch, value) for epoch, value in validation_objectives(run_dir) if epoch not in seen]
        for epoch, value in new:
            trial.report(value, epoch)
            seen.add(epoch)
        return new[-1] if judge and new and trial.should_prune() else None

    def prune(self, name, epoch, value):
        """Stop run `name` through the backend, wait for its process to exit, mark it pruned.
        A run that finished meanwhile stays finished (a result, told as complete)."""
        self.backend.stop(self.sweep_dir, name)
        run_dir = self.sweep_dir / name
        deadline = time.monotonic() + self.exit_timeout
        while lease.live_owner(run_dir) is not None:
            if time.monotonic() > deadline:
                raise runner.BackendError(f"{run_dir}: still running {self.exit_timeout:g} s after it was stopped to "
                                          "be pruned; stop it by hand, then rerun the tuner")
            time.sleep(0.2)
        if state.progress(run_dir) == state.FINISHED:
            return
        state.write_pruned(self.sweep_dir, name, f"--prune {self.rule}: epoch {epoch}, val_objective {value:.6g}")
        self.announce(f"{'pruned':<7} {name} (epoch {epoch}: val_objective {value:.6g})")
