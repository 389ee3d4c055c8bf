"""python -m sweeps compare: the fair comparison in one command (docs/fair_comparisons.md, "Compare").

Four stages in one sweep folder <runs>/NAME, each resumable because its runs and studies are, so
rerunning the command after a kill continues where it stopped:
1. baselines: single-<task>-s<seed> for every task and re-run seed, with the first method and
   ew, on the validation split of the flags after --; then NAME/baseline.json
   (evaluation.baseline: their test and val metrics), which every later run gets as --baseline,
   so that --select-by auto chooses epochs and trials by Δm on val;
2. tuning: per method × weighting a study of --trials trials (sweeps.tune.run_study) in
   NAME/tune/<method>-<weighting>/, a sweep folder of its own, since a study's storage, snapshot
   and trial-NNNN runs are per folder; every trial trains with seed TUNING_SEED;
3. re-runs: each study's best flags with seeds 1..S (fresh: no trial used them), as
   <method>-<weighting>-s<seed>, on the same validation split;
4. the report: NAME/results/compare.md and .csv (evaluation/fair_table.py), printed.
The runs of stages 1 and 3 are NAME's plan.json, defined by the flags after -- and by the
comparison's own settings (methods, weightings, trials, seeds, space, sampler seed, objective):
a rerun with others is refused, as a sweep's is.
"""
import argparse
import json
import sys
from pathlib import Path

from runfolder import exit_codes, lease, state
from runfolder.launcher_flags import owned_flag
from tasks import DEFAULT_TASKS, TASKS, canonical

from . import cli, plan, runner, status, tune

TUNING_SEED = 0  # the seed of every trial; the re-runs take 1..S
BASELINE_FILE = "baseline.json"
STUDIES = "tune"  # NAME/tune/<method>-<weighting>/: one study's sweep folder
REPORT = "compare"  # NAME/results/compare.md and .csv
# Flags that the comparison sets for each run: given after --, they are refused, naming the option to use.
COMPARE_OWNED = {"--method": "--methods", "--weighting": "--weightings", "--seed": "--seeds",
                 "--baseline": "the baselines stage", "--select-by": "--objective", "--tasks": "--tasks"}


class StageFailed(RuntimeError):
    """A stage whose runs did not all finish; the message names them."""


def _names(text):
    names = [name for name in text.split(",") if name]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more names separated by commas, e.g. adam,adam_with_adatask")
    return names


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m sweeps compare", allow_abbrev=False,
        usage="python -m sweeps compare --sweep NAME --methods M,... [--weightings W,...] --trials N [--seeds S] "
              "--space SPACE.toml [options] [backend options] -- FLAGS ...\n"
              "       python -m sweeps compare --status --sweep NAME [--runs DIR]",
        description="A fair comparison: single-task baselines on the validation split, then every method x "
                    "weighting tuned with the same number of trials on it, then each best configuration re-run "
                    "with S fresh seeds, then a table of their test metrics at each run's validation-selected "
                    "epoch (and over the last N epochs) with Δm, Holm-corrected Welch tests against the first "
                    "method x weighting and the budget each used, in <runs>/NAME/results/compare.md. The flags "
                    "after -- need --val-fraction F > 0. Rerunning continues. Exit status: 0 the report is "
                    "written; 1 a stage's runs failed; 2 bad arguments; 75 the sweep is run by another process; "
                    "130 interrupted (rerun to continue).")
    g = p.add_argument_group("comparison")
    g.add_argument("--sweep", metavar="NAME", help="the comparison's sweep folder name, no / (required)")
    g.add_argument("--runs", default="runs", metavar="DIR", help="the folder of sweep folders (default: runs)")
    g.add_argument("--methods", type=_names, default=[], metavar="M,...",
                   help="optimizers, e.g. adam,adam_with_adatask; the first with the first weighting is the row "
                        "the others are tested against (required)")
    g.add_argument("--weightings", type=_names, default=["ew"], metavar="W,...",
                   help="task weightings, e.g. ew,pcgrad (default: ew)")
    g.add_argument("--trials", type=cli._positive, metavar="N", help="trials per method x weighting (required)")
    g.add_argument("--seeds", type=cli._positive, default=3, metavar="S",
                   help=f"re-runs of each best configuration, seeds 1..S; the trials use seed {TUNING_SEED} "
                        "(default: 3)")
    g.add_argument("--space", metavar="SPACE.toml", help="the search space (e.g. search_spaces/default.toml; required)")
    g.add_argument("--parallel", type=cli._positive, default=1, metavar="P",
                   help="runs at once: trials of a study, baselines, re-runs (default: 1, the only choice with "
                        "reproducible suggestions)")
    g.add_argument("--seed", type=int, default=0, metavar="S", help="the sampler's seed of every study (default: 0)")
    g.add_argument("--objective", metavar="NAME",
                   help="the validation objective of the trials and of every run's epoch: auto (Δm on val against "
                        "the baselines), delta_m, normalized_mean or val/<metric>; never test/... (default: auto)")
    g.add_argument("--tasks", type=str.split, default=None, metavar='"T ..."',
                   help=f'the tasks of the multi-task runs, from {", ".join(TASKS)} (default: '
                        f'"{" ".join(DEFAULT_TASKS)}"); a single-task baseline per task')
    g.add_argument("--status", action="store_true",
                   help="print the stages: the baselines and re-runs, each study's trials and best, the report; "
                        "start nothing")
    g.add_argument("run_flags", nargs="*", metavar="-- FLAGS",
                   help="after --: flags for every run of main_cityscapes.py, with --val-fraction F > 0 and e.g. "
                        f"--epochs; not {' '.join(COMPARE_OWNED)}, which the comparison sets")
    cli.add_backend_options(p)
    return p


def study_dirs(sweep_dir, methods, weightings):
    return {(m, w): Path(sweep_dir) / STUDIES / f"{m}-{w}" for m in methods for w in weightings}


def without_tuned(space, method, weighting, flags):
    """flags without those that the study of (method, weighting) tunes: given after --, such a
    flag sets the single-task baselines' value (e.g. their --lr), and each method's is tuned."""
    for flag in space.for_run(method, weighting):
        flags = tune.without_flag(flags, f"--{flag}")
    return tuple(flags)


class Comparison:
    """The stages of one comparison, from the parsed arguments."""

    def __init__(self, sweep_dir, args, base_flags, space, opts):
        self.sweep_dir, self.args, self.base, self.space, self.opts = Path(sweep_dir), args, tuple(base_flags), space, opts
        self.tasks = canonical(args.tasks or DEFAULT_TASKS)
        self.task_flags = ("--tasks", *args.tasks) if args.tasks else ()
        self.seeds = tuple(range(1, args.seeds + 1))
        self.baseline = self.sweep_dir / BASELINE_FILE
        self.definition = plan.defined_by(self.base, args.tasks, compare={
            "methods": args.methods, "weightings": args.weightings, "trials": args.trials, "seeds": list(self.seeds),
            "space": str(space.path), "sampler_seed": args.seed, "objective": args.objective})
        self.backend = cli.backend_module(opts.backend)

    def run_stage(self, stage, runs):
        """Run `runs` of NAME's plan to their end; StageFailed naming those that did not finish."""
        planned = plan.check_rerun(self.sweep_dir, runs, self.definition, extend=True)
        plan.write_plan(self.sweep_dir, planned, self.opts.backend, vars(self.opts), self.definition)
        runner.say(f"{'stage':<7} {stage}: {len(runs)} runs in {self.sweep_dir}")
        statuses = self.backend.run(self.sweep_dir, runs, self.opts)
        failed = [r.name for r in runs if state.progress(self.sweep_dir / r.name) != state.FINISHED]
        if failed:
            busy = [name for name in failed if statuses.get(name) == exit_codes.EXIT_BUSY]
            raise StageFailed(f"{stage}: {len(failed)} runs did not finish: {' '.join(failed)}"
                              + (f" ({' '.join(busy)} run by another process)" if busy else "")
                              + f"; see their <name>.log in {self.sweep_dir}, then rerun to continue")

    def single_task_runs(self):
        return [plan.PlannedRun(f"single-{task}-s{seed}", (
            "--method", self.args.methods[0], "--weighting", "ew", "--seed", str(seed), "--tasks", task, *self.base))
            for seed in self.seeds for task in self.tasks]

    def baselines(self):
        """Stage 1: the single-task runs, then baseline.json from them."""
        from evaluation.baseline import build_baseline
        from evaluation.run_record import read_run, write_json
        from experiment.flags import setting_definitions

        runs = self.single_task_runs()
        self.run_stage("baselines", runs)
        write_json(self.baseline, build_baseline([read_run(self.sweep_dir / r.name, setting_definitions())
                                                  for r in runs], self.tasks))
        return [r.name for r in runs]

    def run_flags(self, method, weighting, seed):
        return ("--method", method, "--weighting", weighting, "--seed", str(seed), *self.task_flags, *self.base,
                "--baseline", str(self.baseline))

    def method_flags(self, method, weighting, seed):
        return without_tuned(self.space, method, weighting, self.run_flags(method, weighting, seed))

    def tuning(self):
        """Stage 2: {(method, weighting): StudyResult}, one study after the other."""
        results = {}
        for (method, weighting), study_dir in study_dirs(self.sweep_dir, self.args.methods,
                                                          self.args.weightings).items():
            runner.say(f"{'stage':<7} tuning {method} + {weighting}: {self.args.trials} trials in {study_dir}")
            result = tune.run_study(study_dir, self.space, self.args.trials, self.args.parallel, self.args.seed,
                                    self.args.objective, self.method_flags(method, weighting, TUNING_SEED), self.opts)
            if result.best_run is None:
                raise StageFailed(f"tuning {method} + {weighting}: none of its {result.trials_finished} trials "
                                  f"completed; see the trials' logs in {study_dir}")
            results[(method, weighting)] = result
        return results

    def reruns(self, results):
        """Stage 3: each study's best flags with the re-run seeds; [Compared] for the report."""
        from evaluation.fair_table import Compared

        # as each study resolved it: the same flags but the method's, which the objective does not read
        objective = tune.resolve_objective(self.args.objective, plan.flag_values(
            (*self.task_flags, *self.base, "--baseline", str(self.baseline))))
        compared, runs = [], []
        for (method, weighting), result in results.items():
            tuned = {f"--{flag}": tune.flag_text(value) for flag, value in result.best_params.items()}
            mine = [plan.PlannedRun(f"{method}-{weighting}-s{seed}", (
                *self.method_flags(method, weighting, seed), *(t for pair in tuned.items() for t in pair),
                "--select-by", objective)) for seed in self.seeds]
            runs += mine
            compared.append(Compared(method, weighting, tuned, tuple(r.name for r in mine), result.trials_finished,
                                     result.run_seconds))
        self.run_stage("re-runs", runs)
        return compared

    def run(self):
        from evaluation.fair_table import Protocol, fair_table

        single = self.baselines()
        compared = self.reruns(self.tuning())
        protocol = Protocol(self.args.trials, self.seeds, f"Optuna's TPE sampler, seed {self.args.seed}; every "
                                                          f"trial trains with seed {TUNING_SEED}")
        paths = fair_table(self.sweep_dir, compared, single, protocol, self.sweep_dir / cli.RESULTS, REPORT)
        print(paths["md"].read_text())
        print("written: " + ", ".join(str(p) for p in paths.values()))
        return exit_codes.EXIT_OK


def show_status(sweep_dir):
    """The stages as the files tell them: NAME's runs (baselines, re-runs), each study, the report."""
    if (Path(sweep_dir) / plan.PLAN).exists():
        print("\n".join(status.report(sweep_dir)))
    else:
        print(f"compare {Path(sweep_dir).name}: no runs planned yet ({sweep_dir})")
    print(f"baseline.json: {'written' if (Path(sweep_dir) / BASELINE_FILE).exists() else 'not yet'}")
    studies = sorted((Path(sweep_dir) / STUDIES).glob("*/" + tune.STUDY_JSON))
    for path in studies:
        print("\n".join(tune.status_lines(json.loads(path.read_text()))[:2]))
    report = Path(sweep_dir) / cli.RESULTS / f"{REPORT}.md"
    print(f"report: {report if report.exists() else 'not yet'}")
    return exit_codes.EXIT_OK


def check_arguments(parser, args, run_flags):
    """Exit 2 naming the option for arguments a comparison cannot run; --parallel becomes the
    local backend's --jobs."""
    for option in ("methods", "trials", "space"):
        if not getattr(args, option):
            parser.error(f"--{option} is required")
    for option in ("methods", "weightings"):
        names = getattr(args, option)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            parser.error(f"--{option}: {' '.join(twice)} given twice; each at most once")
    for flag in run_flags:
        name, owned = flag.partition("=")[0], owned_flag(flag)
        if name in COMPARE_OWNED:
            parser.error(f"{name} after --: the comparison sets it for each run; use {COMPARE_OWNED[name]}")
        if owned:
            parser.error(f"{flag} after --: {owned} is set by the comparison itself")
    cli.parallel_as_jobs(parser, args, "the comparison", "the re-runs depend on the studies' results")
    unknown = cli.unknown_names(args.methods, args.weightings)
    if unknown:
        parser.error(unknown)
    if args.tasks:
        try:
            canonical(args.tasks)
        except ValueError as e:
            parser.error(f"--tasks {' '.join(args.tasks)}: {e}")


def main(argv=None):
    parser = build_parser()
    args, run_flags = cli.parse(parser, list(sys.argv[1:] if argv is None else argv))
    sweep_dir = (Path(args.runs) / args.sweep).absolute()
    if args.status:
        return show_status(sweep_dir)
    check_arguments(parser, args, run_flags)
    from evaluation.run_record import RunError

    from .search_space import SearchSpaceError, load_space

    try:
        lease.lease_timeout()  # every run would fail on a bad MTL_LEASE_TIMEOUT
        space = load_space(args.space)
        # the studies' checks before any run: the space, the objective, a trial's flags; without the
        # baselines' file yet, an objective that needs it is checked as one that does not
        objective = args.objective if args.objective not in (None, "auto", "delta_m") else "normalized_mean"
        for (method, weighting), study_dir in study_dirs(sweep_dir, args.methods, args.weightings).items():
            tune.prepare(study_dir, space, args.seed, objective,
                         without_tuned(space, method, weighting, ("--method", method, "--weighting", weighting,
                                                                  *run_flags)))
    except (ValueError, SearchSpaceError) as e:  # TuneError is a ValueError
        parser.error(str(e))
    opts = cli.backend_options(argparse.Namespace(**vars(args), results=None), run_flags)
    opts.wait = True  # every stage needs the runs of the one before
    try:
        owner = lease.acquire(sweep_dir, create=True)
    except lease.RunBusy as e:
        print(f"compare: another process runs this comparison; {e}", file=sys.stderr)
        return exit_codes.EXIT_BUSY
    try:
        with cli.interrupt_on_signals():
            return Comparison(sweep_dir, args, run_flags, space, opts).run()
    except (plan.PlanError, tune.TuneError, runner.BackendError, RunError) as e:
        print(f"compare: {e}", file=sys.stderr)
        return exit_codes.EXIT_BAD_INPUT
    except (StageFailed, tune.TrialBusy) as e:
        print(f"compare: {e}", file=sys.stderr)
        return exit_codes.EXIT_BUSY if isinstance(e, tune.TrialBusy) else exit_codes.EXIT_FAILED
    except lease.RunBusy as e:
        print(f"compare: {e}", file=sys.stderr)
        return exit_codes.EXIT_BUSY
    except runner.Interrupted:
        print("compare: interrupted; rerun the same command to continue", file=sys.stderr)
        return exit_codes.EXIT_INTERRUPTED
    finally:
        owner.release()
