"""Step time and peak memory of each --method on full-size SegNet-MTAN (forward, backward, step).

    python3 -m scripts.bench_step [--methods adam adam_with_adatask ...] [--steps N] [--warmup N]
        [--batch-size B] [--width-mult W] [--image-size HxW] [--tasks T ...] [--device D]
        [--threads T] [--no-memory] [--json OUT]
    python3 -m scripts.bench_step --compare-backward [same size flags]
    python3 -m scripts.bench_step --weighting-cost [--weightings ew pcgrad ...] [same size flags]

Every method gets its own copy of one initial model, its own optimizer and its own training
engine (optim.engine.TrainingEngine with `ew`, what main_cityscapes.py runs); the methods run
round-robin in one process, one step each per round on the same batch, so load from other
processes hits all of them alike. The batches are SynthCity samples of the benchmark's size,
generated into a temporary folder and read by the training dataset, so every task's target is
the one training sees. A step is `engine.train_step`: "forward" is the forward and the losses,
"step" the optimizer's `step()` (timed by its step hooks), "backward" the rest (zero_grad, the
one backward of the summed loss for a plain optimizer or the K per-task passes for AdaTask,
and the step's bookkeeping).
Times are medians [min–max] over the timed steps; the ratio to `adam` is of medians,
"paired" is the median of the per-round ratios, and the ratio of minima is the one least
disturbed by other processes on a shared machine (their load only ever adds time).

Peak memory comes from a fresh process per method running a few steps of that method only:
the maximum RSS on CPU (it only grows, so methods cannot share a process; glibc is told
to mmap every block above 64 KiB so the peak is reproducible), the peak of torch's CUDA
allocator on CUDA. It is printed with the bound from the issue: AdaTask may
exceed adam by 2(K-1) x 4 bytes per shared parameter (the extra per-task moments) plus one
set of gradients (4 bytes x all parameters).

--compare-backward times the ways to get per-task gradients: the K branch-only passes of
`optim.task_gradients`, one vmapped backward (`is_grads_batched`) of the stacked losses,
and one backward of the summed loss (the floor), and checks the vmapped gradients.

--weighting-cost times each --weighting method's own cost on real-size per-task gradients:
turning the K gradients into K contributions (Gram matrix, the method, the mixing; the
look-ahead forwards for HydaLearn, the extra forward for FAMO) beside one per-task backward
pass; then full training steps (engine.train_step) of ew, pcgrad, gdod and hydalearn under
adam and adam_with_adatask, interleaved.
"""
import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from data import synthcity
from data.cityscapes import CityscapesNpy
from data.source import parse_image_size
from models import build_model
from optim import OPTIMIZERS, build_optimizer, task_gradients
from optim.engine import TrainingEngine
from optim.multitask_step import gram_matrix
from optim.weighting import WEIGHTINGS, build_weighting
from optim.weighting.base import StepContext
from optim.weighting.lookahead import losses_after_fn
from tasks import DEFAULT_TASKS, TASKS, TaskSettings, build_tasks

NUM_CLASSES = 7
BATCHES = 2  # distinct batches of generated samples; the rounds cycle through them
LR = 1e-4  # the reference protocol's; the step costs the same for any value
MEMORY_STEPS = 3  # the first step allocates the optimizer state, the later ones show the steady peak
PHASES = ("forward", "backward", "step", "total")


# ---- setup ------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS), metavar="METHOD",
                   help=f"optimizers to time (default: all of {', '.join(OPTIMIZERS)})")
    p.add_argument("--steps", type=int, default=5, help="timed steps per method (at least 5 for the README)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per method first")
    p.add_argument("--batch-size", type=int, default=None, help="default 2 on CPU, 8 on CUDA")
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--image-size", default="128x256", metavar="HxW")
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=list(TASKS), metavar="TASK",
                   help=f"the tasks trained (default: {' '.join(DEFAULT_TASKS)})")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-method peak-memory processes")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    p.add_argument("--compare-backward", action="store_true",
                   help="time K branch-only passes vs one vmapped backward vs the summed backward instead")
    p.add_argument("--weighting-cost", action="store_true",
                   help="time each --weighting method's combination of real-size per-task gradients, and full "
                        "steps of --step-weightings under adam and adam_with_adatask")
    p.add_argument("--weightings", nargs="+", default=list(WEIGHTINGS), choices=list(WEIGHTINGS), metavar="NAME",
                   help="--weighting-cost: the methods whose combination cost is timed")
    p.add_argument("--step-weightings", nargs="+", default=["ew", "pcgrad", "gdod", "hydalearn"],
                   choices=list(WEIGHTINGS), metavar="NAME", help="--weighting-cost: the methods timed in full steps")
    p.add_argument("--memory-of", metavar="METHOD", help=argparse.SUPPRESS)  # the per-method child process
    p.add_argument("--data-root", help=argparse.SUPPRESS)  # the parent's generated samples, for the child
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    args.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if args.batch_size is None:
        args.batch_size = 8 if args.device.type == "cuda" else 2
    args.height, args.width = parse_image_size(args.image_size)
    args.tasks = build_tasks(args.tasks, TaskSettings(classes=NUM_CLASSES))
    return args


def generate_samples(args, folder):
    """BATCHES batches of SynthCity samples of the benchmark's size in `folder`; its root."""
    return synthcity.generate(Path(folder) / "synthcity", n_train=BATCHES * args.batch_size, n_val=1,
                              height=args.height, width=args.width, seed=0, progress=False)


def load_batches(args):
    """The batches (image, [target per task]) on the device, as the training loop gives them to the engine."""
    data = CityscapesNpy(args.data_root, "train", args.tasks, in_memory=True)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size)
    return [(image.to(args.device), [targets[t.name].to(args.device) for t in args.tasks]) for image, targets in loader]


def initial_model(args):
    torch.manual_seed(0)
    return build_model("mtan", args.tasks, args.width_mult).to(args.device)


def task_losses(model, tasks, batch):
    image, targets = batch
    return torch.stack([task.loss(p, y) for task, p, y in zip(tasks, model(image), targets)])


def clock(device):
    """Wall-clock seconds once the device has finished the queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


# ---- one training step --------------------------------------------------------------

class Trainer:
    """One method's model copy, optimizer and training engine; `step` runs and times one
    `engine.train_step`, its phases through the forward callback and the optimizer's step hooks."""

    def __init__(self, method, model, tasks, weighting="ew"):
        self.model, self.tasks = model, tasks
        self.optimizer = build_optimizer(method, model.shared_parameters(), model.task_specific_parameters(), LR)
        self.engine = TrainingEngine(model, self.optimizer, build_weighting(weighting, len(tasks)),
                                     self.forward, [t.name for t in tasks])
        self.marks = {}
        self.optimizer.register_step_pre_hook(lambda *_: self.mark("step start"))
        self.optimizer.register_step_post_hook(lambda *_: self.mark("step end"))

    def mark(self, name):
        self.marks[name] = clock(self.device)

    def forward(self, batch):
        """The engine's compute_losses. Only a step's first call is its forward: a look-ahead
        (HydaLearn, FAMO) calls it again later, and that time counts as the rest of the step."""
        first = "forward start" not in self.marks
        if first:
            self.mark("forward start")
        image, targets = batch
        preds = self.model(image)
        losses = [task.loss(p, y) for task, p, y in zip(self.tasks, preds, targets)]
        if first:
            self.mark("forward end")
        return preds, losses

    def step(self, batch):
        self.device = batch[0].device
        self.marks.clear()
        self.engine.train_step(batch, epoch=2)
        self.mark("end")
        m = self.marks
        forward, step = m["forward end"] - m["forward start"], m["step end"] - m["step start"]
        # backward: everything else, the per-task passes and any look-ahead forwards
        total = m["end"] - m["forward start"]
        return {"forward": forward, "backward": total - forward - step, "step": step, "total": total}


def rotated(names, r):
    """Round r's order: rotated so that no entry always runs right after the same one."""
    shift = r % len(names)
    return names[shift:] + names[:shift]


def time_methods(args):
    """{method: {phase: [seconds per timed step]}}, methods interleaved round-robin."""
    model = initial_model(args)
    trainers = {m: Trainer(m, copy.deepcopy(model), args.tasks) for m in args.methods}
    del model
    batches = load_batches(args)
    times = {m: {phase: [] for phase in PHASES} for m in args.methods}
    for r in range(args.warmup + args.steps):
        batch = batches[r % len(batches)]
        for method in rotated(args.methods, r):
            measured = trainers[method].step(batch)
            if r >= args.warmup:
                for phase, seconds in measured.items():
                    times[method][phase].append(seconds)
        print(f"round {r + 1}/{args.warmup + args.steps}" + (" (warm-up)" if r < args.warmup else ""),
              file=sys.stderr, flush=True)
    return times


# ---- peak memory, one process per method --------------------------------------------

def peak_memory_mib(args):
    """Peak memory of MEMORY_STEPS steps of `args.memory_of` in this (fresh) process."""
    if args.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(args.device)
    trainer = Trainer(args.memory_of, initial_model(args), args.tasks)
    batches = load_batches(args)
    for r in range(MEMORY_STEPS):
        trainer.step(batches[r % len(batches)])
    if args.device.type == "cuda":
        return torch.cuda.max_memory_allocated(args.device) / 2**20
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 2**10  # bytes on macOS, KiB on Linux


def measure_memory(args, method):
    cmd = [sys.executable, "-m", "scripts.bench_step", "--memory-of", method, "--batch-size", str(args.batch_size),
           "--width-mult", str(args.width_mult), "--image-size", args.image_size, "--device", str(args.device),
           "--tasks", *(t.name for t in args.tasks), "--data-root", str(args.data_root)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    # glibc otherwise keeps freed blocks of its heap arenas resident, and the peak RSS
    # of one method then varies by ±100 MiB between runs; with every block above
    # 64 KiB mmapped, a free returns it at once and the peak is reproducible to 1 MiB.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return float(out.split()[-1])


def memory_bound_mib(model):
    """The issue's bound on AdaTask's peak above adam's: extra moments plus one set of gradients."""
    counts = model.parameter_counts()
    extra_moments = 2 * (len(model.tasks) - 1) * 4 * counts["shared"]
    return {"moments": extra_moments / 2**20, "gradients": 4 * counts["total"] / 2**20,
            "total": (extra_moments + 4 * counts["total"]) / 2**20}


# ---- report ---------------------------------------------------------------------------

def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(times, memory):
    results = {}
    for method, phases in times.items():
        row = {phase: spread(values) for phase, values in phases.items()}
        if "adam" in times:
            row["ratio_to_adam"] = row["total"]["median"] / statistics.median(times["adam"]["total"])
            row["paired_ratio_to_adam"] = spread([t / a for t, a in zip(phases["total"], times["adam"]["total"])])
        if method in memory:
            row["peak_mib"] = memory[method]
            if "adam" in memory:
                row["peak_above_adam_mib"] = memory[method] - memory["adam"]
        results[method] = row
    return results


def fmt_spread(s):
    return f"{s['median']:.3f} [{s['min']:.3f}–{s['max']:.3f}]"


def markdown_table(results):
    lines = ["| method | forward s | backward s | step s | total s | × adam | peak MiB | peak − adam MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for method, row in results.items():
        cells = [fmt_spread(row[phase]) for phase in PHASES]
        cells.append(f"{row['ratio_to_adam']:.2f}" if "ratio_to_adam" in row else "–")
        cells.append(f"{row['peak_mib']:.0f}" if "peak_mib" in row else "–")
        cells.append(f"{row['peak_above_adam_mib']:+.0f}" if "peak_above_adam_mib" in row else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_lines(results):
    if "adam" not in results:
        return []
    adam = results["adam"]
    lines = []
    for method, row in results.items():
        if method == "adam":
            continue
        phase_ratios = ", ".join(f"{p} {row[p]['median'] / adam[p]['median']:.2f}×" for p in PHASES[:3])
        paired = row["paired_ratio_to_adam"]
        fastest = row["total"]["min"] / adam["total"]["min"]
        lines.append(f"{method} / adam: total {row['ratio_to_adam']:.2f}× (paired per round "
                     f"{paired['median']:.2f}× [{paired['min']:.2f}–{paired['max']:.2f}], of minima "
                     f"{fastest:.2f}×); medians of {phase_ratios}")
    return lines


def memory_lines(memory, bound):
    """Each AdaTask method's peak above its own base optimizer's, next to the bound."""
    lines = []
    for method, peak in memory.items():
        base = method.removesuffix("_with_adatask")
        if base != method and base in memory:
            lines.append(f"{method} peak above {base}: {peak - memory[base]:+.0f} MiB (bound {bound:.0f} MiB)")
    return lines


def header(args, model):
    counts = model.parameter_counts()
    return (f"SegNet-MTAN width {args.width_mult}, tasks {' + '.join(t.name for t in args.tasks)}, "
            f"{NUM_CLASSES} classes, {counts['total']:,} parameters "
            f"({counts['shared']:,} shared), {args.height}x{args.width}, batch {args.batch_size}, "
            f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


def benchmark(args):
    model = initial_model(args)
    info = {"header": header(args, model), "memory_bound_mib": memory_bound_mib(model),
            "parameter_counts": model.parameter_counts()}
    del model
    # Memory first: a child inherits its parent's maximum RSS through fork and exec, so
    # the children must start while this process is still small.
    memory = {} if args.no_memory else {m: measure_memory(args, m) for m in args.methods}
    times = time_methods(args)
    info["methods"] = summarise(times, memory)
    info["raw_seconds"] = times

    bound = info["memory_bound_mib"]
    print(info["header"])
    print(f"{args.steps} timed steps per method after {args.warmup} warm-up, interleaved; median [min–max]")
    print()
    print(markdown_table(info["methods"]))
    print()
    for line in ratio_lines(info["methods"]):
        print(line)
    print(f"bound on an AdaTask peak above adam's: {bound['total']:.0f} MiB "
          f"= 2(K-1)x4 B x shared ({bound['moments']:.0f} MiB) + 4 B x all parameters ({bound['gradients']:.0f} MiB)")
    for line in memory_lines(memory, bound["total"]):
        print(line)
    return info


# ---- --compare-backward -----------------------------------------------------------------

def vmapped_task_gradients(losses, params, retain_graph=False):
    """All K per-task gradients in one backward: row k of the identity picks task k's loss.
    The batched backward starts at the stack, so every task's row also flows (as zeros)
    through every other task's branch."""
    eye = torch.eye(len(losses), dtype=losses.dtype, device=losses.device)
    return torch.autograd.grad([losses], params, grad_outputs=[eye], retain_graph=retain_graph,
                               is_grads_batched=True, allow_unused=True)


def check_vmapped(model, tasks, batch):
    """Run the vmapped backward once; the largest difference to task_gradients, or the error,
    and the warnings it raises (a batching rule that falls back to a loop says so)."""
    shared, own = model.shared_parameters(), model.task_specific_parameters()
    losses = task_losses(model, tasks, batch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            batched = vmapped_task_gradients(losses, shared, retain_graph=True)
        except Exception as error:  # noqa: BLE001 -- any failure means the path is unusable here: report it
            return {"works": False, "error": f"{type(error).__name__}: {error}".strip()}
    reference = task_gradients(losses, shared, own)
    model.zero_grad(set_to_none=True)
    diff = 0.0
    for i, rows in enumerate(batched):
        for k, grads in enumerate(reference):
            expected = torch.zeros_like(rows[k]) if grads[i] is None else grads[i]
            diff = max(diff, ((rows[k] - expected).abs().max() / expected.abs().max().clamp(min=1e-30)).item())
    return {"works": True, "max_rel_diff": diff, "warnings": sorted({str(w.message).split("\n")[0] for w in caught})}


def compare_backward(args):
    model = initial_model(args)
    shared, own = model.shared_parameters(), model.task_specific_parameters()
    ways = {
        "summed loss, one backward (floor)": lambda losses: losses.sum().backward(),
        "K branch-only passes (task_gradients)": lambda losses: task_gradients(losses, shared, own),
        # Also the task-specific gradients, which the K passes yield too.
        "one vmapped backward (is_grads_batched)": lambda losses: vmapped_task_gradients(
            losses, shared + [p for params in own for p in params]),
    }
    batches = load_batches(args)
    check = check_vmapped(model, args.tasks, batches[0])
    if not check["works"]:
        del ways["one vmapped backward (is_grads_batched)"]
    times = {name: [] for name in ways}
    for r in range(args.warmup + args.steps):
        batch = batches[r % len(batches)]
        for name in rotated(list(ways), r):
            losses = task_losses(model, args.tasks, batch)
            t0 = clock(args.device)
            ways[name](losses)
            seconds = clock(args.device) - t0
            model.zero_grad(set_to_none=True)
            if r >= args.warmup:
                times[name].append(seconds)
        print(f"round {r + 1}/{args.warmup + args.steps}", file=sys.stderr, flush=True)

    floor = statistics.median(times["summed loss, one backward (floor)"])
    info = {"header": header(args, model), "vmapped": check, "seconds": {n: spread(t) for n, t in times.items()}}
    print(info["header"])
    print(f"backward only, {args.steps} timed rounds after {args.warmup} warm-up, interleaved; median [min–max]")
    print()
    print("| per-task gradients | backward s | × summed |")
    print("|---|---|---|")
    for name, s in info["seconds"].items():
        print(f"| {name} | {fmt_spread(s)} | {s['median'] / floor:.2f} |")
    print()
    if check["works"]:
        print(f"vmapped backward works; largest relative difference to task_gradients {check['max_rel_diff']:.1e}")
        for message in check["warnings"]:
            print(f"  warning: {message}")
    else:
        print(f"vmapped backward fails on this model: {check['error']}")
    return info


# ---- --weighting-cost -------------------------------------------------------------------

def combination_seconds(name, model, tasks, batch, grads, losses):
    """One step's cost of a method given the per-task gradients: what it adds to a step."""
    method = build_weighting(name, len(tasks))
    ctx = StepContext(losses=losses, epoch=2, step=0, lr=LR, losses_after=losses_after_fn(
        model, lambda: task_losses(model, tasks, batch), model.shared_parameters()))
    t0 = clock(batch[0].device)
    if method.needs_grads:
        ctx.gram, ctx.grads = gram_matrix(grads), grads
        method.contributions(ctx)
    else:
        method.weights(ctx)
    method.after_step(ctx)  # FAMO's extra forward; a no-op for the others
    return clock(batch[0].device) - t0


def float32_gram_seconds(grads):
    """The Gram matrix as it was computed before it was accumulated in float64: each
    parameter's K×K block multiplied in the gradients' dtype, then converted. Timed only,
    against gram_matrix, for the cost of float64 accumulation."""
    t0 = clock(grads[0][0].device)
    for per_task in zip(*grads):
        flat = torch.stack([g.reshape(-1) for g in per_task if g is not None])
        (flat @ flat.T).double()
    return clock(grads[0][0].device) - t0


def weighting_costs(args, model):
    """{method: [seconds]} beside the per-task backward pass, interleaved over rounds."""
    gram_rows = ["Gram matrix, float32 products (before)", "Gram matrix, float64 accumulation (now)"]
    times = {name: [] for name in ["one per-task backward pass"] + gram_rows + args.weightings}
    batches = load_batches(args)
    for r in range(args.warmup + args.steps):
        batch = batches[r % len(batches)]
        losses = task_losses(model, args.tasks, batch)
        t0 = clock(args.device)
        grads = task_gradients(losses, model.shared_parameters(), model.task_specific_parameters())
        backward = (clock(args.device) - t0) / len(args.tasks)
        model.zero_grad(set_to_none=True)
        t0 = clock(args.device)
        gram_matrix(grads)
        float64_gram = clock(args.device) - t0
        if r >= args.warmup:
            times["one per-task backward pass"].append(backward)
            times[gram_rows[0]].append(float32_gram_seconds(grads))
            times[gram_rows[1]].append(float64_gram)
        for name in rotated(args.weightings, r):
            seconds = combination_seconds(name, model, args.tasks, batch, grads, losses.detach())
            if r >= args.warmup:
                times[name].append(seconds)
        print(f"cost round {r + 1}/{args.warmup + args.steps}", file=sys.stderr, flush=True)
    return times


def full_steps(args, model):
    """{"method + weighting": [seconds per full step]}, interleaved round-robin."""
    runs = {f"{method} + {name}": Trainer(method, copy.deepcopy(model), args.tasks, name)
            for method in ("adam", "adam_with_adatask") for name in args.step_weightings}
    times = {key: [] for key in runs}
    batches = load_batches(args)
    for r in range(args.warmup + args.steps):
        batch = batches[r % len(batches)]
        for key in rotated(list(runs), r):
            seconds = runs[key].step(batch)["total"]
            if r >= args.warmup:
                times[key].append(seconds)
        print(f"step round {r + 1}/{args.warmup + args.steps}", file=sys.stderr, flush=True)
    return times


def weighting_cost(args):
    model = initial_model(args)
    costs, steps = weighting_costs(args, model), full_steps(args, model)
    backward = statistics.median(costs["one per-task backward pass"])
    info = {"header": header(args, model), "costs": {n: spread(t) for n, t in costs.items()},
            "steps": {n: spread(t) for n, t in steps.items()}}
    print(info["header"])
    print(f"{args.steps} timed rounds after {args.warmup} warm-up, interleaved; median [min–max]")
    print()
    print("| --weighting | combining the K gradients s | × one per-task backward |")
    print("|---|---|---|")
    for name, s in info["costs"].items():
        print(f"| {name} | {fmt_spread(s)} | {s['median'] / backward:.3f} |")
    print()
    reference = statistics.median(steps["adam + ew"])
    print("| method + weighting | full step s | × adam + ew |")
    print("|---|---|---|")
    for name, s in info["steps"].items():
        print(f"| {name} | {fmt_spread(s)} | {s['median'] / reference:.2f} |")
    return info


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        print(peak_memory_mib(args))
        return None
    with tempfile.TemporaryDirectory(prefix="bench_step-") as folder:
        args.data_root = generate_samples(args, folder)
        if args.compare_backward:
            info = compare_backward(args)
        elif args.weighting_cost:
            info = weighting_cost(args)
        else:
            info = benchmark(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)
    return info


if __name__ == "__main__":
    main()
