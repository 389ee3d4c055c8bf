"""The local backend: the runs side by side on this machine, each a subprocess of this process.

Slots: --gpus "0 1" with --runs-per-gpu K gives K slots per GPU, each run in one with
CUDA_VISIBLE_DEVICES=<its GPU>; without --gpus, --jobs N slots that set no GPU. With
--gpus-per-run G > 1 each run is one torchrun of G processes: --gpus "0 1 2 3" splits into the
groups 0,1 and 2,3, one slot each (CUDA_VISIBLE_DEVICES="0,1"); without --gpus each of the --jobs
slots runs G processes on the CPU (gloo), which tests a multi-process run on any machine. Each run goes
to the next free slot, in plan order. One thread per slot waits on its run, so that if this
process dies, even by kill -9, no new run starts (the threads die with it) and the runs, which
watch its pid (MTL_PARENT_PID), stop within 2 s.
"""
import queue
import shlex
import signal
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor

from runfolder import state

from . import runner


def gpu_groups(gpus, per_run):
    """--gpus split into the CUDA_VISIBLE_DEVICES of runs of per_run GPUs each: ["0,1", "2,3"]
    for "0 1 2 3" and 2 (the command line refuses a count that per_run does not divide)."""
    if len(gpus) % per_run:
        raise ValueError(f"--gpus {' '.join(gpus)}: {len(gpus)} ids, not a multiple of --gpus-per-run {per_run}")
    return [",".join(gpus[i:i + per_run]) for i in range(0, len(gpus), per_run)]


def slot_gpus(opts):
    """The CUDA_VISIBLE_DEVICES of each slot, None where it sets none. The GPUs (or groups of
    --gpus-per-run GPUs) alternate, so that fewer runs than slots spread over every GPU."""
    if opts.gpus:
        return [group for _ in range(opts.runs_per_gpu) for group in gpu_groups(opts.gpus, opts.gpus_per_run)]
    return [None] * opts.jobs


def describe(opts):
    slots = len(slot_gpus(opts))
    at_once = f"{slots} run{'s' if slots > 1 else ''} at a time"
    if opts.gpus and opts.gpus_per_run > 1:
        return f"{at_once}, each a torchrun on {opts.gpus_per_run} GPUs: {' '.join(slot_gpus(opts))}"
    if opts.gpus:
        return f"{at_once}, {opts.runs_per_gpu} per GPU on GPUs {' '.join(opts.gpus)}"
    if opts.gpus_per_run > 1:
        return f"{at_once}, each a torchrun of {opts.gpus_per_run} processes on the CPU"
    return at_once


def show(sweep_dir, runs, opts):
    """--dry-run: each run's verb and command line."""
    for run in runs:
        if state.progress(sweep_dir / run.name) == state.FINISHED:
            print(f"{'skip':<7} {run.name} (finished)")
        else:
            verb, argv = runner.command(sweep_dir, run, opts.python, opts.threads, opts.gpus_per_run)
            print(f"{verb:<7} {run.name}: {shlex.join(argv)}")


def run(sweep_dir, runs, opts):
    """Every run to its end, at most one per slot at a time; returns {name: exit status} (None
    for a dry run). On Ctrl-C or SIGTERM (runner.Interrupted) the runs get the signal and are
    waited for, then the interrupt goes on."""
    print(f"local: {describe(opts)}", flush=True)
    if opts.dry_run:
        show(sweep_dir, runs, opts)
        return None
    waiting = queue.SimpleQueue()
    for planned in runs:
        waiting.put(planned)
    statuses = {}

    def serve(gpu):
        env = {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else None
        while True:
            try:
                planned = waiting.get_nowait()
                statuses[planned.name] = runner.run_one(sweep_dir, planned, opts.python, opts.threads, env,
                                                        processes=opts.gpus_per_run)
            except (queue.Empty, runner.Stopped):
                return

    # Waited for through futures, not Thread.join: a join that a signal interrupts marks its
    # thread as ended while it still runs (CPython's bpo-45274 fix), so it cannot be redone.
    with ThreadPoolExecutor(len(slot_gpus(opts)), thread_name_prefix="slot") as pool:
        slots = []
        try:
            for gpu in slot_gpus(opts):
                slots.append(pool.submit(serve, gpu))
            futures.wait(slots)
        except KeyboardInterrupt as interrupt:
            runner.stop_runs(getattr(interrupt, "signum", signal.SIGINT))
            futures.wait(slots)
            raise
    for slot in slots:
        slot.result()  # a slot's own error (an unwritable log, say), with its traceback
    return statuses


def stop(sweep_dir, name):
    """Stop run `name` alone, cleanly (SIGTERM: it keeps its checkpoint, and its end is no
    failure); the sweep's other runs go on. True when the run was going in this process."""
    return runner.stop_run(name)
