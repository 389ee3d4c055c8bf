"""reproduce RECIPE --estimate: what a recipe's plan costs, before it runs.

Each distinct configuration of the plan (a run's flags without its seed) is built as
main_cityscapes.py builds it (experiment.setup.Experiment), on a small SynthCity of the run's
image size in a temporary folder, and times one warm-up and N training steps (median) and one
evaluation batch on the device the flags choose. A run then costs
    epochs x (ceil(train samples / batch) x step + ceil(test samples / batch) x eval batch)
seconds; the plan's device-hours are the sum over its runs (x GPUs per run), and its wall time
the longest-processing-time-first schedule of the runs on the backend's parallel slots. The
sample counts are the recipe's (protocol.train_samples, protocol.test_samples) for its release,
or a generated dataset's flags. What the estimate leaves out: start-up, data loading stalls,
slow-down of runs sharing a device (scripts/gpu_report.py measures that), queueing.
"""
import heapq
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .plan import flag_values

UNTIMED_FLAGS = ("--seed", "--recipe")  # flags that do not change a step's cost
DATA_FLAGS = ("--dataset", "--data-path", "--image-size")  # replaced by the timing's own small data


def without(flags, names):
    """`flags` (a run's argv) without the flags in `names` and their values."""
    kept, skipping = [], False
    for token in flags:
        if token.startswith("--"):
            skipping = token.split("=", 1)[0] in names
        if not skipping:
            kept.append(token)
    return kept


def distinct_configurations(runs):
    """{the flags without the seed: [run names]} in plan order: runs that differ only in their
    seed cost the same, so each configuration is timed once."""
    configurations = {}
    for run in runs:
        configurations.setdefault(tuple(without(run.flags, UNTIMED_FLAGS)), []).append(run.name)
    return configurations


def run_seconds(epochs, train_samples, test_samples, batch_size, step_s, eval_batch_s):
    """A run's seconds: every epoch's training steps and its evaluation batches."""
    return epochs * (math.ceil(train_samples / batch_size) * step_s + math.ceil(test_samples / batch_size) * eval_batch_s)


def makespan(durations, slots):
    """Wall time of `durations` on `slots` parallel slots, each run to the slot free first,
    longest first (LPT: within 4/3 of the optimum)."""
    free = [0.0] * max(1, min(slots, len(durations)))
    for duration in sorted(durations, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free) if durations else 0.0


def parallel_slots(opts, runs):
    """(how many runs the backend runs at once, how that was decided)."""
    if opts.backend == "local":
        if opts.gpus:
            slots = len(opts.gpus) // opts.gpus_per_run * opts.runs_per_gpu
            return slots, f"--gpus {' '.join(opts.gpus)}, {opts.runs_per_gpu} run(s) per GPU"
        return opts.jobs, f"--jobs {opts.jobs}"
    if opts.backend == "slurm":
        if opts.slurm_array_parallelism:
            return opts.slurm_array_parallelism, f"--slurm-array-parallelism {opts.slurm_array_parallelism}"
        return len(runs), "every job of the array at once (no --slurm-array-parallelism; queueing not counted)"
    cpus = os.cpu_count() or 1
    slots = max(1, cpus // (opts.cpus_per_run * opts.gpus_per_run))
    return slots, f"{cpus} CPUs of this machine / --cpus-per-run {opts.cpus_per_run} (a Ray cluster has its own)"


def time_configuration(flags, steps, image_size):
    """{"step_s", "eval_batch_s", "args"} of one configuration: its Experiment on a small
    SynthCity of `image_size` (HxW) in a temporary folder, one warm-up step, then `steps` timed."""
    import torch

    from data import synthcity
    from data.source import parse_image_size
    from experiment.flags import build_parser
    from experiment.loop import evaluate
    from experiment.setup import Experiment

    height, width = parse_image_size(image_size)
    args = build_parser().parse_args([*without(flags, (*UNTIMED_FLAGS, *DATA_FLAGS)), "--epochs", "1"])
    with tempfile.TemporaryDirectory(prefix="estimate-") as folder:
        data = synthcity.generate(Path(folder) / "data", n_train=(steps + 1) * args.batch_size, n_val=args.batch_size,
                                  height=height, width=width, seed=0, progress=False)
        args = build_parser().parse_args([*without(flags, (*UNTIMED_FLAGS, *DATA_FLAGS)), "--data-path", str(data),
                                          "--out", str(Path(folder) / "runs"), "--name", "estimate",
                                          "--num-workers", "0"])
        exp = Experiment(args)

        def clock():
            if exp.device.type == "cuda":
                torch.cuda.synchronize(exp.device)
            return time.perf_counter()

        exp.model.train()
        loader = exp.loader(exp.train_set, 0, shuffle=True)
        extras = exp.extra_batches(0, len(loader))
        times = []
        for batch in loader:
            start = clock()
            exp.engine.train_step(exp.to_device(batch), 0, next(extras) if extras else ())
            times.append(clock() - start)
        start = clock()
        evaluate(exp)
        eval_batch_s = clock() - start
        exp.ownership.release()  # the temporary run folder's lease (main_cityscapes.py releases its own)
    return {"step_s": statistics.median(times[1:]), "eval_batch_s": eval_batch_s, "args": args}


def sample_counts(recipe, flags, args):
    """(train samples, test samples) a run of `flags` (parsed: `args`) sees: a generated
    dataset's flags, else the recipe's release (protocol.train_samples and .test_samples)."""
    if flag_values(flags).get("--dataset") == "synthcity":
        return args.synthcity_train, args.synthcity_val
    protocol = recipe.protocol
    if not all(isinstance(protocol.get(key), int) for key in ("train_samples", "test_samples")):
        raise ValueError(f"{recipe.path}: [protocol] needs train_samples and test_samples (integers: the release's "
                         f"split sizes) for --estimate")
    return protocol["train_samples"], protocol["test_samples"]


def print_estimate(recipe, runs, opts, steps):
    """Time every distinct configuration, then print the table and the totals; exit status 0."""
    configurations = distinct_configurations(runs)
    print(f"reproduce {recipe.name} --estimate: {len(runs)} runs, {len(configurations)} distinct configurations; "
          f"timing each (1 warm-up + {steps} steps) ...", flush=True)
    seconds, lines = {}, []
    for flags, names in configurations.items():
        image_size = flag_values(flags).get("--image-size") or str(recipe.protocol.get("image_size", "128x256"))
        timing = time_configuration(flags, steps, image_size)
        args = timing["args"]
        train, test = sample_counts(recipe, flags, args)
        per_run = run_seconds(args.epochs, train, test, args.batch_size, timing["step_s"], timing["eval_batch_s"])
        for name in names:
            seconds[name] = per_run
        label = f"{args.method} + {args.weighting} ({' '.join(args.tasks)})"
        lines.append(f"| {label} | {len(names)} | {timing['step_s']:.3f} | {timing['eval_batch_s']:.3f} | "
                     f"{args.epochs} | {per_run / 3600:.2f} |")
        print(f"  timed {label}: {timing['step_s']:.3f} s a step", file=sys.stderr, flush=True)
    slots, why = parallel_slots(opts, runs)
    device_hours = sum(seconds.values()) * opts.gpus_per_run / 3600
    wall = makespan(list(seconds.values()), slots) / 3600
    print("| configuration | runs | step s | eval batch s | epochs | hours per run |")
    print("|---|---|---|---|---|---|")
    print("\n".join(lines))
    print(f"total: {device_hours:.1f} device-hours; wall time {wall:.1f} h with {slots} runs at once ({why}; "
          f"{opts.backend} backend)")
    print("not counted: start-up, data loading stalls, slow-down of runs sharing a device, queueing")
    return 0
