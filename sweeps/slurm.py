"""The Slurm backend: a sweep's runs as one job array, submitted through submitit.

Each array element starts or resumes its runs on its node with sweeps.runner.run_one, so the
sweep folder, the repository, the interpreter and the data must be on a file system that every
node sees. submitit keeps its scripts, logs and results in <sweep>/.slurm/, beside
submissions.jsonl: one line per submission, naming each element's runs.

Packing K runs per GPU (--runs-per-gpu K): with "shards" every run is its own element asking
--gres=shard:1, and the cluster's shard count per GPU (set by its admin) decides how many share a
GPU; with "inside" an element holds a whole GPU (--gres=gpu:1) and runs K runs side by side, one
torch thread each. K = 1 asks a whole GPU per run; runs on --device cpu ask for no GPU at all.
CPUs and memory are per run: an element of K runs asks K times as much.

A run of several GPUs (--gpus-per-run G > 1, never with --runs-per-gpu > 1) is one element
asking --gres=gpu:G and G times --slurm-cpus-per-run, whose run is one torchrun of G processes on
the element's node (memory stays per run: --slurm-mem is the whole run's); on --device cpu it
asks no GPU and its G processes share the element's CPUs.

Runs already finished are not submitted, nor are runs whose element of an earlier submission is
still queued or running: without --wait they count as running (exit status 75), like a run whose
folder another live process owns; --wait waits for them too.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from runfolder import exit_codes, state

from . import runner

FOLDER = ".slurm"
SUBMISSIONS = "submissions.jsonl"
# An element that reaches --slurm-time is requeued by submitit at most this many times, so runs
# longer than the time limit continue in the next allocation.
MAX_TIME_LIMIT_REQUEUES = 10
QUEUE_POLL_S = 30.0  # how often a --wait asks squeue when no element has just returned
MEMORY = re.compile(r"(\d+)([KMGT]?)", re.IGNORECASE)


class SlurmError(runner.BackendError):
    """Nothing was submitted; the message says why and what to do."""


class ArrayTask:
    """What every array element does: run its runs side by side on the node Slurm gave it.

    Preemption and time limits requeue an element, which is safe because each run continues from
    its own folder's last checkpoint. Slurm itself requeues a preempted element, or one whose node
    failed (sbatch --requeue). submitit requeues one that reaches its time limit: it sends SIGUSR2
    90 s before the limit and calls checkpoint(), which has no state to save beyond the run folders
    and so resubmits the same call.
    """

    processes = 1  # for an ArrayTask pickled before --gpus-per-run, requeued since

    def __init__(self, sweep_dir, python=None, threads=None, cwd=None, processes=1):
        self.sweep_dir, self.python, self.threads = Path(sweep_dir), python, threads
        self.cwd = cwd  # where relative paths in the runs' flags are read: the submitting directory
        self.processes = processes  # of each run: more than 1 is a torchrun (--gpus-per-run)

    def __call__(self, runs):
        # The GPU (or shard) Slurm gave this element, for every run in it, also named in the logs.
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
        env = {"CUDA_VISIBLE_DEVICES": gpu} if gpu else None

        def one(run):
            return run.name, runner.run_one(self.sweep_dir, run, self.python, self.threads, env, cwd=self.cwd,
                                            processes=self.processes)

        with ThreadPoolExecutor(len(runs)) as pool:
            return dict(pool.map(one, runs))

    def checkpoint(self, runs):
        # Imported here, on the node: this module loads without submitit (dry runs).
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, runs)


def runs_per_element(opts):
    """K with --slurm-packing inside on GPUs, else 1."""
    return opts.runs_per_gpu if opts.slurm_packing == "inside" and not opts.cpu_only else 1


def groups(runs, opts):
    """The runs of each array element, in plan order."""
    k = runs_per_element(opts)
    return [runs[i:i + k] for i in range(0, len(runs), k)]


def run_threads(opts):
    """Torch threads per run: --threads, else one each when runs share an element."""
    return opts.threads or (1 if runs_per_element(opts) > 1 else None)


def scaled_memory(memory, factor):
    """sbatch's --mem value times factor: "8G" x 2 is "16G"."""
    match = MEMORY.fullmatch(memory.strip())
    if not match:
        raise SlurmError(f"--slurm-mem {memory}: expected a whole number and a unit K, M, G or T, e.g. 8G")
    return f"{int(match[1]) * factor}{match[2].upper()}"


def job_name(opts):
    return f"sweep-{opts.sweep}"


def sbatch_parameters(opts, elements):
    """The SlurmExecutor parameters of the array (sbatch's own names) for `elements` elements."""
    k, per_run = runs_per_element(opts), opts.gpus_per_run
    if per_run > 1 and opts.runs_per_gpu > 1:
        raise SlurmError(f"--gpus-per-run {per_run} and --runs-per-gpu {opts.runs_per_gpu} cannot be combined")
    params = {"job_name": job_name(opts), "time": opts.slurm_time,
              "cpus_per_task": opts.slurm_cpus_per_run * k * per_run,
              "array_parallelism": opts.slurm_array_parallelism or elements,
              "additional_parameters": {"requeue": True}}  # see ArrayTask
    if opts.slurm_partition:
        params["partition"] = opts.slurm_partition
    if opts.slurm_mem:
        params["mem"] = scaled_memory(opts.slurm_mem, k)
    if not opts.cpu_only:
        params["gres"] = "shard:1" if opts.slurm_packing == "shards" and opts.runs_per_gpu > 1 else f"gpu:{per_run}"
    return params


def sbatch_flags(params, elements):
    """The sbatch options that `params` become in submitit's script, as "--name=value"."""
    flags = {k: v for k, v in params.items() if k not in ("array_parallelism", "additional_parameters")}
    flags |= params.get("additional_parameters", {})
    if elements > 1:  # submitit submits a single element as a plain job
        flags["array"] = f"0-{elements - 1}%{min(elements, params['array_parallelism'])}"
    return [f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')}={v}" for k, v in sorted(flags.items())]


# ------------------------------------------------------------------ the queue


def queued_jobs(name):
    """The ids of this user's queued or running jobs called `name`, one per array element ("12_3")."""
    squeue = shutil.which("squeue")
    if squeue is None:
        raise SlurmError("Slurm's squeue is not on PATH: run the sweep on a login node of the cluster")
    done = subprocess.run([squeue, "--me", f"--name={name}", "--noheader", "--array", "--format=%i"], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise SlurmError(f"squeue failed (exit {done.returncode}): {done.stderr.strip()}")
    return set(done.stdout.split())


def read_submissions(sweep_dir):
    """{element id: [run names]} of every earlier submission of this sweep."""
    path = Path(sweep_dir) / FOLDER / SUBMISSIONS
    elements = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                elements |= json.loads(line)["elements"]
    return elements


def still_queued(sweep_dir, job, names):
    """{element id: run names} of earlier submissions' elements (jobs called `job`), still queued or
    running, that hold any of names."""
    earlier = read_submissions(sweep_dir)
    if not earlier:
        return {}
    queued = queued_jobs(job)
    return {element_id: runs for element_id, runs in earlier.items() if element_id in queued and names & set(runs)}


def stop(sweep_dir, name):
    """Stop run `name` through Slurm: scancel of the queued or running element that holds it.
    Slurm sends the element's processes SIGTERM (SIGKILL only after the cluster's KillWait), on
    which the run stops cleanly keeping its checkpoint. An element of several runs
    (--slurm-packing inside) stops them all; the others resume when the sweep is submitted again.
    True when an element was cancelled."""
    elements = [element_id for element_id, names in read_submissions(sweep_dir).items() if name in names]
    queued = queued_jobs(job_name_of(sweep_dir)) if elements else set()
    going = [element_id for element_id in elements if element_id in queued]
    if not going:
        return False
    done = subprocess.run([shutil.which("scancel") or "scancel", *going], capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise SlurmError(f"scancel {' '.join(going)} failed (exit {done.returncode}): {done.stderr.strip()}")
    return True


def job_name_of(sweep_dir):
    """The Slurm job name of the sweep in sweep_dir (job_name: sweep-<its folder name>)."""
    return f"sweep-{Path(sweep_dir).name}"


def record_submission(sweep_dir, job_id, elements):
    with open(Path(sweep_dir) / FOLDER / SUBMISSIONS, "a") as f:
        f.write(json.dumps({"job": job_id, "submitted": datetime.now().isoformat(timespec="seconds"),
                            "elements": elements}) + "\n")


def element_jobs(sweep_dir, element_ids):
    """submitit's handle of each element: where its result is, once it has returned."""
    from submitit import SlurmJob

    return {element_id: SlurmJob(folder=Path(sweep_dir) / FOLDER, job_id=element_id) for element_id in element_ids}


def wait_for(jobs, name):
    """Return once no element of jobs (Slurm jobs called `name`) is queued or running. An element that returns writes its
    result, which is checked every second; squeue confirms it is gone (not completing, nor requeued)
    and finds elements that ended without a result, at most every QUEUE_POLL_S seconds otherwise."""
    pending, reported = set(jobs), set()
    next_ask, soon = 0.0, 1.0
    while pending:
        ended = {e for e in pending if jobs[e].paths.result_pickle.exists()} - reported
        if ended:
            reported |= ended
            next_ask, soon = time.monotonic(), 1.0
        if time.monotonic() >= next_ask:
            try:
                pending &= queued_jobs(name)
            except SlurmError as e:  # a busy controller times out now and then: ask again later
                print(f"warning: {e}; still waiting", file=sys.stderr, flush=True)
            if pending & reported:  # completing, or requeued: ask again soon, then less often
                next_ask, soon = time.monotonic() + soon, min(soon * 2, QUEUE_POLL_S)
            else:
                next_ask = time.monotonic() + QUEUE_POLL_S
        if pending:
            time.sleep(1)


def statuses(sweep_dir, jobs, elements):
    """{run name: exit status} of ended elements: what each element returned, else what its runs left."""
    from submitit.core.utils import UncompletedJobError

    found = {}
    for element_id, names in elements.items():
        job = jobs[element_id]
        if job.paths.result_pickle.exists():
            try:
                found |= job.result()
                continue
            except UncompletedJobError as e:  # the element failed: its runs' own files still tell
                print(f"warning: Slurm element {element_id} failed: {e}", file=sys.stderr)
        for name in names:
            found[name] = status_from_files(sweep_dir, name, element_id)
    return found


def status_from_files(sweep_dir, name, element_id):
    """The run's exit status once its element ended: 0 when finished, else its <name>.exit; an
    element that ended (cancelled, node lost) before its run wrote one counts as failed."""
    if state.progress(Path(sweep_dir) / name) == state.FINISHED:
        return exit_codes.EXIT_OK
    status = state.read_exit(sweep_dir, name)
    if status is not None:
        return status
    print(f"{'FAILED':<7} {name} (its Slurm element {element_id} ended without an exit status; see "
          f"{Path(sweep_dir) / FOLDER}/{element_id}_0_log.err)", flush=True)
    return exit_codes.EXIT_FAILED


# ------------------------------------------------------------------ the backend


def run(sweep_dir, runs, opts):
    """Submit the unfinished runs as one job array: {run name: exit status} with opts.wait, else None
    right after submitting (and after a dry run)."""
    sweep_dir = Path(sweep_dir).absolute()
    todo = [r for r in runs if state.progress(sweep_dir / r.name) != state.FINISHED]
    busy = {} if not todo else still_queued(sweep_dir, job_name(opts), {r.name for r in todo})
    busy_names = {name for names in busy.values() for name in names}
    todo = [r for r in todo if r.name not in busy_names]
    python, threads, processes = opts.python, run_threads(opts), opts.gpus_per_run
    plan = groups(todo, opts)
    params = sbatch_parameters(opts, len(plan)) if plan else None
    print(f"sweep {opts.sweep}: {count(len(runs), 'run')}, {len(runs) - len(todo) - len(busy_names)} finished, "
          f"{len(busy_names)} queued or running in Slurm, {len(todo)} to submit", flush=True)
    if opts.dry_run:
        show(sweep_dir, plan, params, python, threads, processes)
        return None
    submitted = submit(sweep_dir, plan, params, python, threads, processes) if plan else {}
    if submitted:
        job = next(iter(submitted)).split("_")[0]
        print(f"submitted Slurm job {job}: {count(len(plan), 'element')}, {count(len(todo), 'run')}; logs in "
              f"{sweep_dir / FOLDER}", flush=True)
    if not opts.wait:
        if submitted:
            return None
        return {r.name: exit_codes.EXIT_OK if r.name not in busy_names else exit_codes.EXIT_BUSY for r in runs}
    waiting = submitted | busy
    if not waiting:
        return {r.name: 0 for r in runs}
    print(f"waiting for {count(len(waiting), 'Slurm element')} (Ctrl-C stops waiting; the jobs go on)", flush=True)
    jobs = element_jobs(sweep_dir, waiting)
    wait_for(jobs, job_name(opts))
    ended = statuses(sweep_dir, jobs, waiting)
    return {r.name: ended.get(r.name, 0) for r in runs}


def count(n, noun):
    return f"{n} {noun}{'s' if n != 1 else ''}"


def show(sweep_dir, plan, params, python, threads, processes=1):
    """A dry run: the sbatch options and each element's runs; nothing is submitted."""
    if not plan:
        print("dry run: nothing to submit")
        return
    print(f"dry run: would submit 1 Slurm job of {count(len(plan), 'element')} (sbatch options, then each element's runs):")
    for flag in sbatch_flags(params, len(plan)):
        print(f"  {flag}")
    for i, group in enumerate(plan):
        commands = [runner.command(sweep_dir, run, python, threads, processes) for run in group]
        print(f"  element {i}: " + "; ".join(f"{verb} {run.name}" for run, (verb, _) in zip(group, commands)))
        for _, argv in commands:
            print(f"    {shlex.join(argv)}")


def submit(sweep_dir, plan, params, python, threads, processes=1):
    """The job array of `plan`; {element id: run names} (recorded in submissions.jsonl)."""
    try:
        from submitit import SlurmExecutor
        from submitit.core.utils import FailedSubmissionError, UncompletedJobError
    except ImportError:
        raise SlurmError("the Slurm backend needs submitit: pip install -r requirements-cluster.txt") from None
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise SlurmError("Slurm's sbatch and srun are not on PATH: run the sweep on a login node of the cluster")
    folder = sweep_dir / FOLDER
    executor = SlurmExecutor(folder=folder, max_num_timeout=MAX_TIME_LIMIT_REQUEUES)
    # The elements unpickle ArrayTask from this repository, wherever sbatch was called from.
    pythonpath = f"export PYTHONPATH={shlex.quote(str(runner.REPO))}${{PYTHONPATH:+:$PYTHONPATH}}"
    executor.update_parameters(**params, setup=[pythonpath])
    try:
        jobs = executor.map_array(ArrayTask(sweep_dir, python, threads, os.getcwd(), processes), plan)
    except (UncompletedJobError, FailedSubmissionError) as e:  # with sbatch's message
        hint = (" (does this cluster have GPU shards? else use --slurm-packing inside)"
                if "shard" in params.get("gres", "") and "gres" in str(e).lower() else "")
        raise SlurmError(f"sbatch refused the job array: {e}{hint}") from None
    elements = {job.job_id: [run.name for run in group] for job, group in zip(jobs, plan)}
    record_submission(sweep_dir, jobs[0].job_id.split("_")[0], elements)
    return elements
