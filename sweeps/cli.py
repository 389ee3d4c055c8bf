"""scripts/sweep.sh: plan a sweep, run it on one backend (this machine, Slurm or Ray), then
aggregate its tables; or --status of a sweep.

The plan goes to <runs>/<sweep>/plan.json before any run starts. A backend is the module
sweeps.<module> with run(sweep_dir, runs, opts) -> {name: exit status}, or None when it
submitted the runs without waiting for them. It is imported only when chosen: the cluster
backends need the packages of requirements-cluster.txt.
"""
import argparse
import contextlib
import importlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from runfolder import exit_codes, lease, state
from runfolder.launcher_flags import OWNED_FLAGS
from tasks import DEFAULT_TASKS, TASKS

from . import plan, runner, status

BACKEND_MODULES = {"local": "local", "slurm": "slurm", "ray": "ray_backend"}
OPTIONAL_PACKAGES = {"slurm": "submitit", "ray": "ray"}  # in requirements-cluster.txt
# Options that only one backend reads: with another backend they are refused, not ignored.
BACKEND_OF = {"gpus": "local", "jobs": "local", "slurm_partition": "slurm", "slurm_time": "slurm",
              "slurm_mem": "slurm", "slurm_cpus_per_run": "slurm", "slurm_array_parallelism": "slurm",
              "slurm_packing": "slurm", "ray_address": "ray", "cpus_per_run": "ray"}
RESULTS = "results"  # as evaluation.aggregate's default (not imported: it loads scipy and matplotlib)
AFTER_DASHES = "flags for main_cityscapes.py go after --; see --help"


def _seeds(text):
    seeds = text.split()
    for seed in seeds:
        if not seed.isdigit():
            raise argparse.ArgumentTypeError(f"{seed} is not a non-negative integer")
    return [int(seed) for seed in seeds]


def _positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return int(text)


def build_parser():
    p = argparse.ArgumentParser(
        prog="scripts/sweep.sh", allow_abbrev=False,
        usage='scripts/sweep.sh [run] --sweep NAME --methods "M ..." [options] [-- FLAGS ...]\n'
              "       scripts/sweep.sh --status --sweep NAME [--runs DIR]   (or: status --sweep NAME)\n"
              "       scripts/sweep.sh reproduce RECIPE [options] [-- FLAGS ...]   (see reproduce --help)\n"
              "       scripts/sweep.sh tune SPACE.toml --sweep NAME --trials N [options] -- FLAGS ...   (see tune --help)\n"
              "       scripts/sweep.sh compare --sweep NAME --methods M,... --trials N --space SPACE.toml [options] "
              "-- FLAGS ...   (see compare --help)",
        description="Seed sweeps: every method x weighting x seed as one run of main_cityscapes.py, on this "
                    "machine, on Slurm or on Ray, then the tables. Run <method>-<weighting>-s<seed> goes to "
                    "<runs>/NAME/, its output to <name>.log and its exit status to <name>.exit beside it. "
                    "Finished runs are skipped and unfinished ones resumed with the same flags, so rerunning "
                    "the command completes a sweep. Exit status: 0 every run finished; 1 a run failed (after "
                    "the others ran); 75 some runs are running in another process (rerun when they end); "
                    "2 bad arguments; 130 interrupted (rerun to resume).")
    g = p.add_argument_group("plan (written to <runs>/NAME/plan.json before any run starts)")
    g.add_argument("--sweep", metavar="NAME", help="the sweep's folder name, no / (required)")
    g.add_argument("--methods", type=str.split, default=[], metavar='"M ..."',
                   help='optimizers, e.g. "adam adam_with_adatask" (required)')
    g.add_argument("--weightings", type=str.split, default=["ew"], metavar='"W ..."',
                   help='task weightings, e.g. "ew pcgrad" (default: ew)')
    g.add_argument("--seeds", type=_seeds, default=[0, 1, 2], metavar='"S ..."', help="seeds (default: 0 1 2)")
    g.add_argument("--tasks", type=str.split, default=None, metavar='"T ..."',
                   help=f'the tasks every run trains, from {", ".join(TASKS)}, e.g. "semantic instance depth" '
                        f'(default: main_cityscapes.py\'s, "{" ".join(DEFAULT_TASKS)}")')
    g.add_argument("--extend", action="store_true",
                   help="add this command's new runs (more seeds, methods or weightings, the same flags after --) to "
                        "the sweep's plan and run what is unfinished; without it a command must plan the sweep's "
                        "runs as plan.json holds them, and a run whose flags would change is refused")
    g.add_argument("--single-task", action="store_true",
                   help="add a baseline single-<task>-s<seed> per task of --tasks and "
                        "seed, with the first method and weighting ew")
    g.add_argument("--runs", default="runs", metavar="DIR", help="the folder of sweep folders (default: runs)")
    g.add_argument("--results", default=None, metavar="DIR",
                   help=f"where the tables go: DIR/NAME.md, .csv and _curves.png (default: <runs>/NAME/{RESULTS}, "
                        "inside the sweep's folder)")
    g.add_argument("run_flags", nargs="*", metavar="-- FLAGS",
                   help="after --: flags for every run of main_cityscapes.py, e.g. --epochs 20 --device cpu; not "
                        f"{' '.join(OWNED_FLAGS)}, which the sweep sets")

    add_backend_options(p)

    g = p.add_argument_group("status")
    g.add_argument("--status", action="store_true",
                   help="print each run's state (finished, running, failed, pending), epoch and last test "
                        "metrics from <runs>/NAME; start nothing")
    return p


def add_backend_options(p):
    """The options of every backend, and of each: `run` and `reproduce` share them."""
    g = p.add_argument_group("every backend")
    g.add_argument("--backend", choices=list(BACKEND_MODULES), default="local",
                   help="local: this machine; slurm: a Slurm job array (submitit); ray: Ray tasks (default: local)")
    g.add_argument("--python", default=sys.executable, metavar="PATH",
                   help="the interpreter of the runs and of the aggregation (default: the sweep's own)")
    g.add_argument("--runs-per-gpu", type=_positive, default=1, metavar="K",
                   help="K runs share one GPU at a time; they must fit in its memory together (default: 1)")
    g.add_argument("--gpus-per-run", type=_positive, default=1, metavar="G",
                   help="G > 1: each run is one torchrun of G processes, one per GPU (python -m "
                        "torch.distributed.run --standalone --nproc-per-node G main_cityscapes.py ...; the "
                        "run's --batch-size is split over them); local: G ids of --gpus per run, e.g. --gpus "
                        '"0 1 2 3" --gpus-per-run 2 gives CUDA_VISIBLE_DEVICES=0,1 and 2,3, and without --gpus '
                        "G processes on the CPU (gloo; for testing); slurm and ray: G GPUs per run, G times the "
                        "CPUs, or G CPU processes for --device cpu. Not with --runs-per-gpu (default: 1)")
    g.add_argument("--dry-run", action="store_true", help="write plan.json and show what would run; start nothing")
    g.add_argument("--wait", action="store_true",
                   help="slurm: stay until every run has ended, then aggregate (default: return once "
                        "submitted; local and ray always wait: a Ray sweep's tasks end with the sweep)")

    g = p.add_argument_group("local backend")
    g.add_argument("--gpus", type=str.split, default=[], metavar='"ID ..."',
                   help='GPU ids, e.g. "0 1": --runs-per-gpu runs on each at a time, each with '
                        "CUDA_VISIBLE_DEVICES=<id>; with --gpus-per-run G, one run on each G of them at a time "
                        "(default: none set)")
    g.add_argument("--jobs", type=_positive, default=1, metavar="N",
                   help="without --gpus: N runs side by side on this machine's CPUs (default: 1)")

    g = p.add_argument_group("slurm backend")
    g.add_argument("--slurm-partition", metavar="NAME", help="the partition to submit to (default: the cluster's)")
    g.add_argument("--slurm-time", type=_positive, default=240, metavar="MIN",
                   help="time limit of each job in minutes; a run cut short resumes when resubmitted (default: 240)")
    g.add_argument("--slurm-mem", metavar="SIZE",
                   help="memory of each job, e.g. 16G (default: the cluster's; a job without it may hold a whole node)")
    g.add_argument("--slurm-cpus-per-run", type=_positive, default=2, metavar="N",
                   help="CPUs per run, per process with --gpus-per-run (default: 2)")
    g.add_argument("--slurm-array-parallelism", type=_positive, default=None, metavar="N",
                   help="at most N jobs of the array at once (default: no limit)")
    g.add_argument("--slurm-packing", choices=("shards", "inside"), default="shards",
                   help="how --runs-per-gpu runs share a GPU: shards, one job per run on a GRES shard (the cluster "
                        "must have shards); inside, one job per GPU running them side by side (default: shards)")

    g = p.add_argument_group("ray backend")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="a running Ray cluster, e.g. auto or HOST:6379 (default: start Ray on this machine for the "
                        "sweep)")
    g.add_argument("--cpus-per-run", type=_positive, default=1, metavar="N",
                   help="CPUs Ray reserves for each run, per process with --gpus-per-run (default: 1)")


def device_of(run_flags):
    """The --device the runs get (the last one given, as argparse takes it), None without one."""
    device = None
    for flag, value in zip(run_flags, [*run_flags[1:], None]):
        if flag == "--device":
            device = value
        elif flag.startswith("--device="):
            device = flag.partition("=")[2]
    return device


def run_threads(args):
    """Torch threads per run: 1 where runs share a CPU (each would otherwise start one thread
    per core), else None (torch's default)."""
    shared = {"local": args.jobs > 1 or len(args.gpus) // args.gpus_per_run * args.runs_per_gpu > 1,
              "slurm": args.slurm_packing == "inside",
              "ray": True}[args.backend]
    return 1 if shared else None


def split_at_dashes(parser, argv):
    """(args, the run flags after --), the backend options checked; bad arguments exit 2 with a
    message (a flag of main_cityscapes.py before -- is named as such)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    args, unknown = parser.parse_known_args(argv[:cut])
    if unknown or args.run_flags:
        stray = (unknown or args.run_flags)[0]
        parser.error(f"unknown {'option' if stray.startswith('-') else 'argument'} {stray} ({AFTER_DASHES})")
    check_backend_options(parser, args)
    return args, argv[cut + 1:]


def parse(parser, argv):
    """split_at_dashes, and a valid --sweep NAME."""
    args, run_flags = split_at_dashes(parser, argv)
    if not args.sweep or "/" in args.sweep or args.sweep in (".", ".."):
        parser.error("--sweep NAME is required (a folder name, no /)")
    return args, run_flags


def check_backend_options(parser, args):
    """Exit 2 with a message on backend options that contradict each other or the backend."""
    for dest, backend in BACKEND_OF.items():
        if getattr(args, dest) != parser.get_default(dest) and args.backend != backend:
            parser.error(f"--{dest.replace('_', '-')} is an option of --backend {backend}")
    if len(set(args.gpus)) < len(args.gpus):
        parser.error(f"--gpus {' '.join(args.gpus)}: an id given twice (use --runs-per-gpu)")
    if args.backend == "local" and args.gpus and args.jobs > 1:
        parser.error("--jobs is for machines without --gpus; with --gpus use --runs-per-gpu K")
    if args.backend == "local" and not args.gpus and args.runs_per_gpu > 1:
        parser.error("--runs-per-gpu needs --gpus on the local backend (on CPUs use --jobs N)")
    if args.gpus_per_run > 1 and args.runs_per_gpu > 1:
        parser.error(f"--gpus-per-run {args.gpus_per_run} and --runs-per-gpu {args.runs_per_gpu} cannot be combined: "
                     "a run of several GPUs has each of them to itself (give one or the other)")
    if len(args.gpus) % args.gpus_per_run:
        parser.error(f"--gpus {' '.join(args.gpus)}: {len(args.gpus)} ids, not a multiple of --gpus-per-run "
                     f"{args.gpus_per_run} (each run takes {args.gpus_per_run} of them)")


def backend_options(args, run_flags):
    """The options every backend's run() reads."""
    return argparse.Namespace(
        sweep=args.sweep, runs=args.runs, results=args.results, backend=args.backend, python=args.python,
        runs_per_gpu=args.runs_per_gpu, gpus_per_run=args.gpus_per_run, gpus=args.gpus, jobs=args.jobs,
        threads=run_threads(args),
        cpu_only=device_of(run_flags) == "cpu", slurm_partition=args.slurm_partition, slurm_time=args.slurm_time,
        slurm_mem=args.slurm_mem, slurm_cpus_per_run=args.slurm_cpus_per_run,
        slurm_array_parallelism=args.slurm_array_parallelism, slurm_packing=args.slurm_packing,
        dry_run=args.dry_run, wait=args.wait, ray_address=args.ray_address, cpus_per_run=args.cpus_per_run,
        recipe=None, synthetic=False)


def results_dir(sweep_dir, opts):
    """Where the tables go: --results DIR, else the sweep's own folder (the checkout stays clean)."""
    return Path(opts.results) if opts.results is not None else Path(sweep_dir) / RESULTS


def report_commands(sweep_dir, opts):
    """The commands (the arguments after the interpreter) that make the sweep's tables: the
    aggregate table, then, for a recipe (opts.recipe), its comparison with the paper; --results
    always, so that the folder named to the user is the one written."""
    results = str(results_dir(sweep_dir, opts))
    commands = [["-m", "evaluation.aggregate", str(sweep_dir), "--results", results]]
    if opts.recipe:
        commands.append(["-m", "evaluation.comparison", str(opts.recipe), str(sweep_dir), "--results", results,
                         *(["--synthetic"] if opts.synthetic else [])])
    return commands


def aggregate(sweep_dir, opts):
    """Run report_commands; True when all of them succeeded."""
    path = os.pathsep.join(filter(None, [str(runner.REPO), os.environ.get("PYTHONPATH")]))
    codes = [subprocess.run([opts.python, *command], env={**os.environ, "PYTHONPATH": path}, check=False).returncode
             for command in report_commands(sweep_dir, opts)]  # every report, even after one failed
    return not any(codes)


def conclude(sweep_dir, runs, statuses, opts):
    """Aggregate and say how the sweep ended; returns the sweep's exit status."""
    running = [r.name for r in runs if statuses.get(r.name) == exit_codes.EXIT_BUSY]
    pruned = [r.name for r in runs if r.name not in running and state.read_pruned(sweep_dir, r.name) is not None
              and state.progress(sweep_dir / r.name) != state.FINISHED]
    failed = [r.name for r in runs if r.name not in running and r.name not in pruned
              and (state.progress(sweep_dir / r.name) != state.FINISHED or statuses.get(r.name, 0) != 0)]
    if not aggregate(sweep_dir, opts):
        print("sweep: the aggregation failed", file=sys.stderr)
        failed.append("(aggregation)")
    if pruned:  # stopped early on purpose (a tuner's --prune): not failed, and not in the tables
        print(f"sweep: {len(pruned)} pruned, not aggregated: {' '.join(pruned)}; remove <name>.pruned to resume one",
              file=sys.stderr)
    if running:
        print(f"sweep: {len(running)} still running in other processes: {' '.join(running)}; rerun when they end",
              file=sys.stderr)
    if failed:
        print(f"sweep: {len(failed)} failed: {' '.join(failed)}", file=sys.stderr)
        return exit_codes.EXIT_FAILED
    if running:
        return exit_codes.EXIT_BUSY
    print(f"sweep {opts.sweep}: all {len(runs) - len(pruned)} runs{' not pruned' if pruned else ''} finished; tables in {results_dir(sweep_dir, opts) / opts.sweep}.md")
    return 0


def sweep(sweep_dir, runs, opts, backend, definition):
    """Write the plan, run it on the backend, conclude; returns the exit status."""
    plan.write_plan(sweep_dir, runs, opts.backend, vars(opts), definition)
    print(f"sweep {opts.sweep}: {len(runs)} runs in {sweep_dir} ({opts.backend})", flush=True)
    statuses = backend.run(sweep_dir, runs, opts)
    if opts.dry_run:
        return 0
    if statuses is None:
        follow = shlex.join(["scripts/sweep.sh", "--status", "--sweep", opts.sweep, "--runs", opts.runs])
        tables = "\n".join(shlex.join(["python", *command]) for command in report_commands(sweep_dir, opts))
        print(f"sweep {opts.sweep}: submitted; follow it with: {follow}\ntables once every run has ended:\n{tables}")
        return 0
    return conclude(sweep_dir, runs, statuses, opts)


def parallel_as_jobs(parser, args, chooser, ahead):
    """For a command that chooses its runs as it goes (tune, compare), --parallel P is the
    number of runs at once: --jobs is refused for it, and so is --dry-run (`ahead`: why nothing
    can be shown ahead). On the local backend without --gpus, P becomes its --jobs."""
    if args.dry_run:
        parser.error(f"--dry-run: {ahead}; there is nothing to show ahead")
    if args.jobs != parser.get_default("jobs"):
        parser.error(f"--jobs: {chooser} runs --parallel P at once; give --parallel")
    if args.backend == "local" and not args.gpus:
        args.jobs = args.parallel


@contextlib.contextmanager
def interrupt_on_signals():
    """Within the block, SIGINT and SIGTERM raise runner.Interrupted in the main thread, once: the
    backend stops its runs, which then stop cleanly on the one signal forwarded to them. The
    previous handlers come back after the block, for a caller that goes on (a test, a notebook)."""
    received = []

    def handler(signum, frame):
        if not received:
            received.append(signum)
            raise runner.Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def unknown_names(methods, weightings):
    """A message naming the --methods and --weightings that main_cityscapes.py does not have, or
    None. The registries are imported here only (they need torch): --help and --status stay fast."""
    from optim import OPTIMIZERS
    from optim.weighting import WEIGHTINGS

    problems = [f"{option} {name}: unknown; valid names: {', '.join(registry)}"
                for option, names, registry in (("--methods", methods, OPTIMIZERS), ("--weightings", weightings,
                                                                                     WEIGHTINGS))
                for name in names if name not in registry]
    return "; ".join(problems) or None


SUBCOMMANDS = ("run", "status", "reproduce", "tune", "compare")


def main(argv=None):
    """python -m sweeps [run|status|reproduce|tune|compare] ...; the bare form is `run`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    if command in ("reproduce", "tune", "compare"):  # imported when chosen: --help stays fast
        return importlib.import_module(f"{__package__}.{command}").main(argv[1:])
    if command == "status":
        return run_main(["--status", *argv[1:]])
    return run_main(argv[1:] if command == "run" else argv)


def run_main(argv):
    parser = build_parser()
    args, run_flags = parse(parser, argv)
    # Absolute: a backend may run the runs elsewhere than in this working directory.
    sweep_dir = (Path(args.runs) / args.sweep).absolute()
    if args.status:
        return status.main(sweep_dir)
    try:
        lease.lease_timeout()  # every run would fail on a bad MTL_LEASE_TIMEOUT: refused before the plan
        runs = plan.build_plan(args.methods, args.weightings, args.seeds, args.single_task, args.tasks, run_flags)
    except (plan.PlanError, ValueError) as e:
        parser.error(str(e))
    unknown = unknown_names(args.methods, args.weightings)
    if unknown:
        parser.error(unknown)
    return start(sweep_dir, runs, plan.defined_by(run_flags, args.tasks), backend_options(args, run_flags),
                 args.extend)


def backend_module(name):
    """The module sweeps.<module> of --backend `name`; runner.BackendError when it needs a
    package of requirements-cluster.txt that is not installed."""
    try:
        return importlib.import_module(f"{__package__}.{BACKEND_MODULES[name]}")
    except ModuleNotFoundError as e:
        package = OPTIONAL_PACKAGES.get(name)
        if (e.name or "").split(".")[0] != package:
            raise
        raise runner.BackendError(f"--backend {name} needs the Python package {package}, which is not installed: "
                                  f"pip install -r {runner.REPO / 'requirements-cluster.txt'}") from None


def start(sweep_dir, runs, definition, opts, extend):
    """Run a planned sweep on opts.backend under the sweep's lease: the checks against its
    plan.json, the runs, the tables; returns the exit status."""
    try:
        backend = backend_module(opts.backend)
    except runner.BackendError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return exit_codes.EXIT_BAD_INPUT
    try:  # one launcher per sweep: a second one would start its runs again and write their .exit files
        launcher = lease.acquire(sweep_dir, create=True)
    except lease.RunBusy as e:
        print(f"sweep: another launcher runs this sweep; {e}", file=sys.stderr)
        return exit_codes.EXIT_BUSY
    except OSError as e:
        print(f"sweep: cannot make or own the sweep folder {sweep_dir} ({e.filename}: {e.strerror}); --runs must be "
              f"a writable folder", file=sys.stderr)
        return exit_codes.EXIT_WRITE
    try:
        return launch(sweep_dir, plan.check_rerun(sweep_dir, runs, definition, extend), opts, backend,
                      definition)
    except plan.PlanError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return exit_codes.EXIT_BAD_INPUT
    finally:
        launcher.release()


def launch(sweep_dir, runs, opts, backend, definition):
    """Run the sweep on its backend; the exit status, with the launcher's failures as one line."""
    with interrupt_on_signals():
        try:
            return sweep(sweep_dir, runs, opts, backend, definition)
        except (plan.PlanError, runner.BackendError) as e:
            print(f"sweep: {e}", file=sys.stderr)
            return exit_codes.EXIT_BAD_INPUT
        except runner.Interrupted:
            print("sweep: interrupted; rerun the same command to resume", file=sys.stderr)
            return exit_codes.EXIT_INTERRUPTED
