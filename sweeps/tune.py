"""python -m sweeps tune SPACE.toml: a hyperparameter search with Optuna (docs/fair_comparisons.md,
"Tuning"), every trial an ordinary run folder of one sweep, run on any backend.

The study lives in <runs>/<sweep>/study.db (Optuna's RDB storage on SQLite). Only the tuner
opens it, under the sweep's lease, so it is safe on NFS; --status reads study.json, the snapshot
the tuner rewrites atomically after each change. Trial N is the run folder trial-NNNN, added to
the sweep's plan.json (plan.check_rerun's extend rule: one plan, one definition).

Bookkeeping, so that a tuner killed at any point (even by kill -9) continues where it was:
- ask: the trial's parameters are chosen inside study.ask, then its run name is stored as the
  user attribute "run"; a RUNNING trial without it was cut off inside ask and is told FAIL
  (marked "abandoned", not counted as a finished trial);
- a RUNNING trial with a run name is always completed, never asked again: its PlannedRun is
  rebuilt from its stored parameters (the plan gets it if the crash came before plan.json was
  written) and run, which resumes its folder, or skips it when finished;
- tell: from the run folder alone (summary.json's selection, the pruned mark, the exit status),
  so a crash between a run's end and its tell is told at the next start.
Trials run in batches of up to --parallel through backend.run; while a batch runs, `poll` (the
pruner's hook) is called every POLL_S seconds with the batch's ActiveTrials, and once more with
ended=True after the batch's runs exited, so the epochs they finished since are reported.
"""
import argparse
import hashlib
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runfolder import atomic, exit_codes, lease, state
from runfolder.files import METRICS, STUDY_DB, STUDY_JSON, SUMMARY
from runfolder.launcher_flags import owned_flag

from . import cli, plan, prune, runner

STUDY_NAME = "tune"
RUN_ATTR, ABANDONED_ATTR = "run", "abandoned"
POLL_S = 5.0
# A study is one --method and --weighting (and --seed, --tasks) given after --: the sweep's name
# says what its runs are; the tuner owns only where each trial's run folder is.
TUNER_OWNED = ("--out", "--name", "--resume")


class TuneError(ValueError):
    """A study that cannot run as asked; the message names the flag or file."""


class TrialBusy(RuntimeError):
    """A trial's run folder is owned by another live process."""


@dataclass(frozen=True)
class ActiveTrial:
    """A trial whose run is in the batch going now (what `poll` gets)."""
    number: int
    trial: object  # optuna.trial.Trial: report() and should_prune() for a pruner
    run: plan.PlannedRun
    run_dir: Path
    study: object  # optuna.Study


@dataclass(frozen=True)
class StudyResult:
    best_params: dict
    best_value: float | None
    direction: str
    best_run: Path | None
    trials_finished: int
    trials_failed: int
    trials_pruned: int
    run_seconds: float


@dataclass(frozen=True)
class Setup:
    """What a study is, checked once before anything starts."""
    sweep_dir: Path
    ranges: dict  # {flag: search_space.Range}
    base_flags: tuple  # ending with --select-by <objective>
    objective: str  # resolved (evaluation.selection)
    direction: str
    method: str
    weighting: str
    space: str
    seed: int
    definition: dict  # plan.json's defined_by: the flags after -- and the tuned space, fixed for the sweep


def trial_name(number):
    return f"trial-{number:04d}"


def sampler_seed(seed, trials_so_far):
    """The TPE seed of a start of the tuner: from --seed and the trials the study already has, so
    that a restart does not repeat the first start's suggestions."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{trials_so_far}".encode()).digest()[:4], "big")


def flag_text(value):
    """A parameter as main_cityscapes.py reads it back exactly (repr keeps every digit of a float)."""
    return repr(value) if isinstance(value, float) else str(value)


def trial_run(number, params, base_flags):
    return plan.PlannedRun(trial_name(number), (*[token for flag, value in params.items()
                                                  for token in (f"--{flag}", flag_text(value))], *base_flags))


def _baseline_has_val(path):
    try:
        return isinstance(json.loads(Path(path).read_text()).get("val"), dict)
    except (OSError, ValueError, AttributeError) as e:
        raise TuneError(f"--baseline {path}: not a baseline JSON ({e}); expected the file python -m "
                        f"evaluation.baseline writes") from None


def resolve_objective(objective, values):
    """The resolved objective (evaluation.selection) of --objective, else of the base flags'
    --select-by, else auto; never one on the test split."""
    from evaluation import selection

    if objective is not None and "--select-by" in values:
        raise TuneError(f"--objective {objective} and --select-by {values['--select-by']} after --: give the "
                        f"objective once, as --objective")
    name = objective or values.get("--select-by") or selection.AUTO
    if name.startswith("test/"):
        raise TuneError(f"--objective {name}: the tuner never selects on the test split; give a validation "
                        f"objective, e.g. val/{name.removeprefix('test/')}, delta_m or normalized_mean")
    has_val = "--baseline" in values and _baseline_has_val(values["--baseline"])
    tasks = values["--tasks"].split() if values.get("--tasks") else None
    try:
        return selection.resolve(name, has_val, tasks)
    except ValueError as e:
        raise TuneError(f"--objective: {e}") from None


def check_run_flags(argv):
    """argv parses with main_cityscapes.py's parser and passes its value checks; else TuneError."""
    from experiment import flags as run_flags

    def refuse(message):
        raise TuneError(f"a trial's flags {' '.join(argv)}: {message}")

    parser = run_flags.build_parser()
    parser.error = refuse
    run_flags.check_values(parser, parser.parse_args(argv), refuse)


def prepare(sweep_dir, space, seed, objective, base_flags):
    """The Setup of a study; TuneError for base flags, an objective or a space that cannot tune."""
    from evaluation import selection

    from .search_space import SearchSpaceError

    values = plan.flag_values(base_flags)
    try:
        fraction = float(values.get("--val-fraction") or 0)
    except ValueError:
        raise TuneError(f"--val-fraction {values['--val-fraction']}: not a number") from None
    if fraction <= 0:
        raise TuneError("the flags after -- need --val-fraction F > 0 (e.g. --val-fraction 0.2): the tuner "
                        "selects on the validation split, never on the test split")
    if "--method" not in values:
        raise TuneError("the flags after -- need --method M (and --weighting W, default ew): they choose the "
                        "search space's tables")
    method, weighting = values["--method"], values.get("--weighting") or "ew"
    try:
        ranges = space.for_run(method, weighting)
    except SearchSpaceError as e:
        raise TuneError(str(e)) from None
    for flag in ranges:
        if f"--{flag}" in values:
            raise TuneError(f"--{flag} is tuned by {space.path} and also given after --; give it in one place")
    for flag in base_flags:
        if owned_flag(flag) in TUNER_OWNED:
            raise TuneError(f"{flag} after --: {owned_flag(flag)} is set by the tuner itself (trial-NNNN runs)")
    resolved = resolve_objective(objective, values)
    base = tuple(token for token in without_flag(base_flags, "--select-by")) + ("--select-by", resolved)
    sample = {flag: r.low if r.type != "choice" else r.choices[0] for flag, r in ranges.items()}
    check_run_flags(list(trial_run(0, sample, base).flags))
    definition = plan.defined_by(base, None, tune={"space": {flag: [r.type, r.low, r.high, list(r.choices)]
                                                             for flag, r in ranges.items()},
                                                   "seed": seed})
    return Setup(Path(sweep_dir), ranges, base, resolved, selection.direction(resolved), method, weighting,
                 str(space.path), seed, definition)


def without_flag(flags, name):
    """flags without `name` and its value(s)."""
    kept, skipping = [], False
    for token in flags:
        if token == name or token.startswith(f"{name}="):
            skipping = token == name
            continue
        if skipping and not token.startswith("--"):
            continue
        skipping = False
        kept.append(token)
    return kept


def run_seconds(run_dir):
    """The summed "seconds" of a run's epochs in metrics.jsonl (0 before its first epoch)."""
    try:
        lines = (Path(run_dir) / METRICS).read_text().splitlines()
    except OSError:
        return 0.0
    total = 0.0
    for line in lines:
        try:
            total += float(json.loads(line).get("seconds", 0))
        except (ValueError, AttributeError, TypeError):
            continue  # a torn last line while the run writes
    return total


class Study:
    """The tuner's side of one study: its storage, its asks and tells, and study.json."""

    def __init__(self, setup, trials, parallel, backend, opts, poll=None, pruner=None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the tuner prints its own lines
        self.optuna, self.setup, self.trials, self.parallel = optuna, setup, trials, parallel
        self.backend, self.opts, self.poll = backend, opts, poll
        self.storage = optuna.storages.RDBStorage(f"sqlite:///{setup.sweep_dir / STUDY_DB}")
        self.study = optuna.create_study(storage=self.storage, study_name=STUDY_NAME, direction=setup.direction,
                                         load_if_exists=True, pruner=pruner)
        if self.study.direction.name.lower() != setup.direction:
            raise TuneError(f"{setup.sweep_dir / STUDY_DB}: a study that {self.study.direction.name.lower()}s, "
                            f"but --objective {setup.objective} is to {setup.direction}; use another --sweep")
        self.study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(setup.seed, len(self.study.trials)))

    def close(self):
        self.storage.engine.dispose()

    def frozen(self):
        return self.study.get_trials(deepcopy=False)

    def counted(self):
        """The finished trials that count towards --trials (not those abandoned inside ask)."""
        return [t for t in self.frozen() if t.state.is_finished() and not t.user_attrs.get(ABANDONED_ATTR)]

    def live(self, number):
        """The optuna Trial of a RUNNING trial (a pruner reports to it)."""
        return self.optuna.trial.Trial(self.study, self.study.trials[number]._trial_id)

    def abandon_cut_asks(self):
        for t in self.frozen():
            if t.state == self.optuna.trial.TrialState.RUNNING and RUN_ATTR not in t.user_attrs:
                self.live(t.number).set_user_attr(ABANDONED_ATTR, True)
                self.study.tell(t.number, state=self.optuna.trial.TrialState.FAIL)
                runner.say(f"{'abandon':<7} trial {t.number} (the tuner stopped while choosing its parameters)")

    def ask(self):
        trial = self.study.ask({flag: r.distribution() for flag, r in self.setup.ranges.items()})
        trial.set_user_attr(RUN_ATTR, trial_name(trial.number))  # last: its parameters are all stored
        return trial.number

    def batch(self):
        """Up to --parallel trials to run now: the RUNNING ones first (resumed), then new asks while
        the finished and running trials are fewer than --trials."""
        running = [t.number for t in self.frozen() if t.state == self.optuna.trial.TrialState.RUNNING]
        chosen = running[:self.parallel]
        while len(chosen) < self.parallel and len(self.counted()) + len(running) < self.trials:
            number = self.ask()
            running.append(number)
            chosen.append(number)
        return chosen

    def planned(self, numbers):
        """The PlannedRuns of trials `numbers`, added to plan.json (extend) when not there yet."""
        params = {t.number: t.params for t in self.frozen()}
        runs = [trial_run(n, {flag: params[n][flag] for flag in self.setup.ranges}, self.setup.base_flags)
                for n in numbers]
        existing = plan.check_rerun(self.setup.sweep_dir, runs, self.setup.definition, extend=True)
        known = {r.name: r for r in existing}
        for run in runs:
            if known[run.name].flags != run.flags:
                raise TuneError(f"{self.setup.sweep_dir / 'plan.json'}: {run.name}'s flags differ from its "
                                f"trial's parameters in {STUDY_DB}; the two files are not of one study")
        plan.write_plan(self.setup.sweep_dir, existing, self.opts.backend, vars(self.opts), self.setup.definition)
        return runs

    def run_batch(self, numbers):
        runs = self.planned(numbers)
        self.write_snapshot()
        active = [ActiveTrial(n, self.live(n), r, self.setup.sweep_dir / r.name, self.study)
                  for n, r in zip(numbers, runs)]
        done = threading.Event()

        def watch():  # its error ends it, and is raised here once the batch has ended (result())
            while not done.wait(POLL_S):
                self.poll(active)

        with ThreadPoolExecutor(1, thread_name_prefix="poll") as pool:
            watcher = pool.submit(watch) if self.poll else None
            try:
                statuses = self.backend.run(self.setup.sweep_dir, runs, self.opts)
            finally:
                done.set()
            if watcher:
                watcher.result()
        if self.poll:  # the epochs a run finished after the last poll
            self.poll(active, ended=True)
        for trial in active:
            self.tell(trial, statuses.get(trial.run.name))
        self.write_snapshot()

    def tell(self, trial, status):
        """Tell the study how trial's run ended, read from its run folder."""
        TrialState = self.optuna.trial.TrialState
        name, sweep_dir = trial.run.name, self.setup.sweep_dir
        if status == exit_codes.EXIT_BUSY:
            raise TrialBusy(f"{name} is run by another process (see {sweep_dir / name}.log); rerun when it ends")
        if state.progress(trial.run_dir) == state.FINISHED:
            selection = json.loads((trial.run_dir / SUMMARY).read_text()).get("selection") or {}
            if selection.get("by") == self.setup.objective and isinstance(selection.get("value"), (int, float)):
                self.study.tell(trial.number, float(selection["value"]), skip_if_finished=True)
                runner.say(f"{'tell':<7} {name}: {self.setup.objective} = {selection['value']:.6g}")
                return
            runner.say(f"{'FAILED':<7} {name}: summary.json has no selection by {self.setup.objective} "
                       f"({selection or 'none'})")
        elif state.run_state(sweep_dir, name).state == state.PRUNED:
            self.study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
            return
        self.study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)

    def snapshot(self):
        """study.json's content: every trial, the best so far and the budget used."""
        trials = [{"number": t.number, "params": t.params, "state": t.state.name.lower(), "value": t.value,
                   "run": t.user_attrs.get(RUN_ATTR),
                   "seconds": run_seconds(self.setup.sweep_dir / t.user_attrs[RUN_ATTR])
                   if RUN_ATTR in t.user_attrs else 0.0} for t in self.frozen()]
        complete = [t for t in trials if t["state"] == "complete"]
        best = None
        if complete:
            b = self.study.best_trial
            best = {"number": b.number, "params": b.params, "value": b.value, "run": b.user_attrs.get(RUN_ATTR)}
        s = self.setup
        return {"space": s.space, "method": s.method, "weighting": s.weighting, "objective": s.objective,
                "direction": s.direction, "seed": s.seed, "trials": trials, "best": best,
                "budget": {"trials_wanted": self.trials, "trials_finished": len(self.counted()),
                           "run_seconds": sum(t["seconds"] for t in trials)}}

    def write_snapshot(self):
        atomic.write_text(self.setup.sweep_dir / STUDY_JSON, json.dumps(self.snapshot(), indent=2) + "\n")

    def run(self):
        self.abandon_cut_asks()
        self.write_snapshot()
        while True:
            numbers = self.batch()
            if not numbers:
                break
            self.run_batch(numbers)
        return self.result()

    def result(self):
        snapshot = self.snapshot()
        states = [t["state"] for t in snapshot["trials"]]
        best = snapshot["best"]
        return StudyResult(best["params"] if best else {}, best["value"] if best else None, self.setup.direction,
                           self.setup.sweep_dir / best["run"] if best else None, len(self.counted()),
                           states.count("fail") - sum(bool(t.user_attrs.get(ABANDONED_ATTR)) for t in self.frozen()),
                           states.count("pruned"), snapshot["budget"]["run_seconds"])


def run_study(sweep_dir, space, trials, parallel, seed, objective, base_flags, backend_options, poll=None,
              pruner=None):
    """Run the study in sweep_dir until `trials` trials have finished, at most `parallel` at once
    (docs/fair_comparisons.md, "Tuning"); the arguments as `python -m sweeps tune` gives them, the
    backend's options as sweeps.cli.backend_options makes them. Returns a StudyResult."""
    setup = prepare(sweep_dir, space, seed, objective, base_flags)
    opts = argparse.Namespace(**{**vars(backend_options), "wait": True})  # the tuner needs every run's end
    backend = cli.backend_module(opts.backend)
    owner = lease.acquire(setup.sweep_dir, create=True)  # RunBusy: another tuner or sweep has this folder
    try:
        plan.check_rerun(setup.sweep_dir, [], setup.definition, extend=True)
        study = Study(setup, trials, parallel, backend, opts, poll, pruner)
        try:
            return study.run()
        finally:
            study.close()
    except plan.PlanError as e:
        raise TuneError(str(e)) from None
    finally:
        owner.release()


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m sweeps tune", allow_abbrev=False,
        usage="python -m sweeps tune SPACE.toml --sweep NAME --trials N [--parallel P] [--seed S] "
              "[--objective NAME] [backend options] -- FLAGS ...\n"
              "       python -m sweeps tune --status --sweep NAME [--runs DIR]",
        description="Tune the flags of SPACE.toml for the --method and --weighting given after -- with Optuna's "
                    "TPE sampler: N trials, each a run folder trial-NNNN of the sweep <runs>/NAME, at most P at "
                    "once on the chosen backend. The study is stored in <runs>/NAME/study.db; rerunning the "
                    "command continues it. The value of a trial is its validation objective at its selected epoch "
                    "(summary.json's selection); the flags after -- need --val-fraction F > 0. Exit status: 0 "
                    "the study has N finished trials, one of them complete; 1 none complete; 2 bad arguments; 75 "
                    "the sweep or a trial is owned by another process; 130 interrupted (rerun to continue).")
    p.add_argument("space", nargs="?", metavar="SPACE.toml", help="the search space (e.g. search_spaces/default.toml)")
    g = p.add_argument_group("study")
    g.add_argument("--sweep", metavar="NAME", help="the study's sweep folder name, no / (required)")
    g.add_argument("--runs", default="runs", metavar="DIR", help="the folder of sweep folders (default: runs)")
    g.add_argument("--trials", type=cli._positive, metavar="N", help="finished trials wanted (required)")
    g.add_argument("--parallel", type=cli._positive, default=1, metavar="P",
                   help="trials run at once, in batches of up to P (default: 1, the only reproducible choice)")
    g.add_argument("--seed", type=int, default=0, metavar="S", help="the sampler's seed (default: 0)")
    g.add_argument("--objective", metavar="NAME",
                   help="the validation objective, passed to every run as --select-by: auto, delta_m, "
                        "normalized_mean or val/<metric>; never test/... (default: --select-by after --, else auto)")
    g.add_argument("--prune", choices=prune.RULES, default=None,
                   help="stop trials early whose validation objective lags (median: below the completed trials' "
                        "median at the same epoch; hyperband: successive halving), read per epoch from their "
                        "metrics.jsonl; a pruned trial keeps its run folder, marked <name>.pruned (default: none)")
    g.add_argument("--status", action="store_true",
                   help="print the trials, the best so far and the budget used from <runs>/NAME/study.json; "
                        "start nothing")
    g.add_argument("run_flags", nargs="*", metavar="-- FLAGS",
                   help="after --: flags for every trial of main_cityscapes.py, with --method, --val-fraction and "
                        f"e.g. --epochs; not {' '.join(TUNER_OWNED)}")
    cli.add_backend_options(p)
    return p


def status_lines(snapshot):
    """The lines --status prints from study.json."""
    budget, best = snapshot["budget"], snapshot["best"]
    lines = [(f"study {snapshot['method']} + {snapshot['weighting']} ({snapshot['space']}): "
              f"{budget['trials_finished']}/{budget['trials_wanted']} trials finished, "
              f"{budget['run_seconds']:.0f} s of runs; {snapshot['direction']} {snapshot['objective']}"),
             "best: " + (f"{best['run']} {best['value']:.6g} {_params(best['params'])}" if best else "none yet")]
    for t in snapshot["trials"]:
        value = f"{t['value']:.6g}" if t["value"] is not None else "-"
        lines.append(f"{t['run'] or '-':<11} {t['state']:<9} {value:>10}  {t['seconds']:>7.0f} s  {_params(t['params'])}")
    return lines


def _params(params):
    return " ".join(f"--{flag} {flag_text(value)}" for flag, value in params.items())


def show_status(sweep_dir):
    path = sweep_dir / STUDY_JSON
    try:
        snapshot = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"tune: {path}: no study; start one with python -m sweeps tune SPACE.toml --sweep {sweep_dir.name} "
              f"...", file=sys.stderr)
        return exit_codes.EXIT_BAD_INPUT
    except (OSError, ValueError) as e:
        print(f"tune: {path}: unreadable ({e}); the tuner rewrites it at its next start", file=sys.stderr)
        return exit_codes.EXIT_BAD_INPUT
    print("\n".join(status_lines(snapshot)))
    return exit_codes.EXIT_OK


def main(argv=None):
    parser = build_parser()
    args, run_flags = cli.parse(parser, list(sys.argv[1:] if argv is None else argv))
    sweep_dir = (Path(args.runs) / args.sweep).absolute()
    if args.status:
        return show_status(sweep_dir)
    if args.space is None or args.trials is None:
        parser.error("SPACE.toml and --trials N are required (or --status)")
    cli.parallel_as_jobs(parser, args, "the tuner", "a study chooses each trial from the ones before")
    from .search_space import SearchSpaceError, load_space

    try:
        lease.lease_timeout()  # every run would fail on a bad MTL_LEASE_TIMEOUT
    except ValueError as e:
        parser.error(str(e))
    with cli.interrupt_on_signals():  # the study's runs stop cleanly on Ctrl-C
        try:
            space = load_space(args.space)
            opts = cli.backend_options(argparse.Namespace(**vars(args), results=None), run_flags)
            poll = prune.Pruner(sweep_dir, cli.backend_module(opts.backend), args.prune) if args.prune else None
            result = run_study(sweep_dir, space, args.trials, args.parallel, args.seed, args.objective, run_flags, opts,
                               poll=poll, pruner=prune.make_pruner(args.prune))
        except (TuneError, SearchSpaceError) as e:
            print(f"tune: {e}", file=sys.stderr)
            return exit_codes.EXIT_BAD_INPUT
        except (lease.RunBusy, TrialBusy) as e:
            print(f"tune: {e}", file=sys.stderr)
            return exit_codes.EXIT_BUSY
        except runner.BackendError as e:
            print(f"tune: {e}", file=sys.stderr)
            return exit_codes.EXIT_BAD_INPUT
        except runner.Interrupted:
            print("tune: interrupted; rerun the same command to continue the study", file=sys.stderr)
            return exit_codes.EXIT_INTERRUPTED
    if result.best_run is None:
        print(f"tune {args.sweep}: {result.trials_finished} trials finished, none complete; see the trials' logs in "
              f"{sweep_dir}", file=sys.stderr)
        return exit_codes.EXIT_FAILED
    print(f"tune {args.sweep}: {result.trials_finished} trials finished ({result.trials_failed} failed, "
          f"{result.trials_pruned} pruned), {result.run_seconds:.0f} s of runs; best {result.best_value:.6g} "
          f"({result.best_run.name}): {_params(result.best_params)}")
    return exit_codes.EXIT_OK
