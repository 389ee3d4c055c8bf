"""What a CPU cannot measure, in one run of at most --budget-s seconds (6 minutes) on one GPU.

    python3 -m scripts.gpu_report [--device cuda|cpu] [--quick] [--out DIR] [--budget-s 360]
        [--sections step memory throughput options estimate] [--recipe NAME]

Sections, each written to DIR (default runs/gpu-report) as <section>.md and <section>.json the
moment it finishes (atomic writes), and DIR/report.md rewritten after each, so a run cut short
still reports what it measured; a section that did not run says "not run: <why>".

1. step: scripts/bench_step.py for adam and adam_with_adatask at K = 2 (semantic + depth) and
   K = 3 (semantic + instance + depth): step time and peak memory (torch.cuda.max_memory_allocated
   on CUDA, the maximum RSS on CPU), with bench_step's bound on AdaTask's extra peak.
2. memory: where AdaTask's CUDA peak exceeds that bound, where the extra memory is: the
   allocations alive at each method's peak (replayed from torch.cuda.memory's allocation
   history), by the repository line that made them and by size class, AdaTask minus adam, and
   the allocator's statistics (pools, reserved, fragmentation). CUDA only.
3. throughput: 1, 2 and 4 runs of adam_with_adatask side by side on one device (separate
   processes started together after their warm-up), steps per second of each and in total.
4. options: --amp, --channels-last (and both), --compile against the default, as
   main_cityscapes.py applies them, interleaved in one process (compile in its own, against its
   own default; skipped on the CPU in --quick mode).
5. estimate: `python -m sweeps reproduce RECIPE --estimate --device DEV` (issue 25, item 5).

--quick: a tiny network (width 0.125) at 32x64 and a few steps, for the test on a CPU.
Every child process gets a time limit from the budget; one that runs past it is killed and its
section says so. Nothing here is timed against a threshold.

The device machine has its own Python and torch and reaches no package registry. The
repository needs a few packages beyond torch (numpy, tqdm, opencv-python-headless,
cityscapesscripts; torchjd for the torchjd-based methods, not for this report): build them as
wheels in the ignored folder wheels/ here with scripts/gpu_wheels.sh (for the device's Python
version), carry that folder to the device, and there
    python -m pip install --no-index --find-links wheels numpy tqdm opencv-python-headless cityscapesscripts
before `python -m scripts.gpu_report`. docs/gpu_report.md has the steps and the last report.
"""
import argparse
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from runfolder.atomic import write_text
from runfolder.exit_codes import EXIT_INTERRUPTED

REPO = Path(__file__).resolve().parent.parent
TITLES = {
    "step": "1. Step time and peak memory (bench_step)",
    "memory": "2. Where AdaTask's extra CUDA memory goes",
    "throughput": "3. Runs per GPU: throughput side by side",
    "options": "4. AMP, channels-last and compile",
    "estimate": "5. A recipe's cost: reproduce --estimate",
}
RUN_ORDER = ("step", "memory", "throughput", "estimate", "options")  # options last: compile takes what is left
# The most of --budget-s each may take (a guard against a hang: they usually take far less);
# options, last, takes whatever is left, compile included.
SHARES = {"step": 0.3, "memory": 0.2, "throughput": 0.25, "estimate": 0.15}
TASKS = {2: ["semantic", "depth"], 3: ["semantic", "instance", "depth"]}
METHODS = ["adam", "adam_with_adatask"]
RUNS_PER_GPU = (1, 2, 4)
OPTIONS = {"default": (), "amp": ("amp",), "channels_last": ("channels_last",),
           "amp + channels_last": ("amp", "channels_last"), "compile": ("compile",)}
MIB = 2**20
SIZE_CLASSES = ((1 * MIB, "< 1 MiB (small pool)"), (10 * MIB, "1–10 MiB"), (100 * MIB, "10–100 MiB"),
                (float("inf"), "≥ 100 MiB"))
NO_FRAME = "(no Python frame: the autograd engine's backward)"


class NotRun(Exception):
    """A section that cannot run here; the message says why."""


# ---- sizes and child processes -----------------------------------------------------------

def size_flags(args):
    """bench_step's size flags: the benchmark's full size, or tiny with --quick."""
    if args.quick:
        return ["--width-mult", "0.125", "--image-size", "32x64", "--batch-size", "2"]
    return ["--width-mult", "1.0", "--image-size", "128x256"]


def step_counts(args):
    return (1, 2) if args.quick else (3, 10)  # (warm-up, timed)


def run_child(cmd, timeout):
    """stdout of `cmd` (from the repository root), killed with its children past `timeout` s."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise NotRun(f"cut short: ran past its {timeout:.0f} s of --budget-s") from None
    except BaseException:  # Ctrl-C or a stop: the child and its own children go too
        kill_group(proc)
        raise
    if proc.returncode:
        raise NotRun(f"failed (exit {proc.returncode}): {' '.join(err.strip().splitlines()[-3:])}")
    return out


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def child_cmd(args, mode, *extra):
    cmd = [sys.executable, "-m", "scripts.gpu_report", "--child", mode, "--device", args.device, *extra]
    return cmd + (["--quick"] if args.quick else [])


def bench_args(args, tasks, extra=()):
    """bench_step's parsed arguments for this report's size and device."""
    from scripts import bench_step
    warmup, steps = step_counts(args)
    return bench_step.parse_args([*size_flags(args), "--device", args.device, "--tasks", *tasks,
                                  "--warmup", str(warmup), "--steps", str(steps), *extra])


# ---- 1. step time and peak memory --------------------------------------------------------

def section_step(args, timeout, started):
    warmup, steps = step_counts(args)
    # A tiny network's peak RSS is torch's own footprint, and the memory processes cost most of
    # this section's time on a CPU: --quick on the CPU skips them (tests/test_bench_step.py runs them).
    no_memory = args.quick and args.device == "cpu"
    text, results = [], {}
    for k, tasks in TASKS.items():
        with tempfile.TemporaryDirectory(prefix="gpu_report-") as tmp:
            out = run_child([sys.executable, "-m", "scripts.bench_step", "--methods", *METHODS, "--tasks", *tasks,
                             "--device", args.device, "--warmup", str(warmup), "--steps", str(steps),
                             *size_flags(args), "--json", f"{tmp}/bench.json", *(["--no-memory"] if no_memory else [])],
                            timeout - (time.monotonic() - started))
            info = json.loads(Path(tmp, "bench.json").read_text())
        info.pop("raw_seconds", None)
        results[f"K={k}"] = info
        methods = info["methods"]
        if not no_memory:
            extra = methods["adam_with_adatask"]["peak_mib"] - methods["adam"]["peak_mib"]
            info["adatask_extra_mib"], info["exceeds_bound"] = extra, extra > info["memory_bound_mib"]["total"]
        text += [f"### K = {k}: {' + '.join(tasks)}", "", "```", out.strip(), "```", ""]
    if no_memory:
        text.append("Peak memory not measured: --quick on the CPU (a tiny network's peak RSS is torch's own).")
    return "\n".join(text), results


# ---- 2. the memory breakdown ----------------------------------------------------------------

def repo_frame(frames):
    """'path:line function' of the innermost frame in this repository's code, else NO_FRAME."""
    for frame in frames or ():
        path = REPO / frame.get("filename", "")  # a relative name is relative to the repository (python -m)
        if path.is_relative_to(REPO) and not {".venv", "site-packages"} & set(path.parts):
            return f"{path.relative_to(REPO)}:{frame.get('line')} {frame.get('name')}"
    return NO_FRAME


def live_at_peak(events):
    """(peak bytes, the allocation events alive at the peak) of one device's allocation trace
    (torch.cuda.memory._snapshot()['device_traces'][i]): allocated bytes rise at 'alloc' and fall
    at the free ('free_requested', or 'free_completed' where no request was recorded), as
    torch.cuda.memory_allocated does."""
    live, total, peak, at_peak = {}, 0, 0, {}
    for event in events:
        action = event.get("action")
        if action == "alloc":
            live[event["addr"]] = event
            total += event["size"]
            if total > peak:
                peak, at_peak = total, dict(live)
        elif action in ("free_requested", "free_completed") and event["addr"] in live:
            total -= live.pop(event["addr"])["size"]
    return peak, list(at_peak.values())


def group_bytes(allocations):
    """{repository line: bytes} and {size class: [count, bytes]} of allocations."""
    by_line, by_size = {}, {label: [0, 0] for _, label in SIZE_CLASSES}
    for event in allocations:
        key = repo_frame(event.get("frames"))
        by_line[key] = by_line.get(key, 0) + event["size"]
        label = next(label for limit, label in SIZE_CLASSES if event["size"] < limit)
        by_size[label][0] += 1
        by_size[label][1] += event["size"]
    return by_line, by_size


STATS = {"allocated_bytes.all.peak": "allocated, peak", "reserved_bytes.all.peak": "reserved (segments), peak",
         "allocated_bytes.large_pool.peak": "large pool (≥ 1 MiB blocks) allocated, peak",
         "allocated_bytes.small_pool.peak": "small pool allocated, peak",
         "inactive_split_bytes.all.peak": "inactive split blocks (fragmentation), peak",
         "segment.all.peak": "segments, peak (count)", "num_alloc_retries": "allocation retries (count)"}


def memory_trace(args):
    """Child: --memory-of's steps under torch.cuda.memory's allocation history; the breakdown as JSON."""
    import torch

    from scripts import bench_step
    with tempfile.TemporaryDirectory(prefix="gpu_report-") as tmp:
        bench = bench_args(args, args.tasks, ["--memory-of", args.method])
        bench.data_root = bench_step.generate_samples(bench, tmp)
        torch.cuda.memory._record_memory_history(enabled="all", context="alloc", stacks="python",
                                                 max_entries=2_000_000)
        peak_mib = bench_step.peak_memory_mib(bench)
        snapshot = torch.cuda.memory._snapshot()
        torch.cuda.memory._record_memory_history(enabled=None)
    device = bench.device.index or 0
    peak, allocations = live_at_peak(snapshot["device_traces"][device])
    by_line, by_size = group_bytes(allocations)
    stats = torch.cuda.memory_stats(bench.device)
    return {"max_memory_allocated_mib": peak_mib, "replayed_peak_mib": peak / MIB, "by_line": by_line,
            "by_size": by_size, "stats": {key: stats.get(key, 0) for key in STATS}}


def breakdown_table(base, ada, k, bound):
    extra = ada["max_memory_allocated_mib"] - base["max_memory_allocated_mib"]
    title = (f"### K = {k}: adam_with_adatask {ada['max_memory_allocated_mib']:.0f} MiB, adam "
             f"{base['max_memory_allocated_mib']:.0f} MiB: {extra:+.0f} MiB (bound {bound:.0f} MiB)")
    replayed = (f"Replayed from the allocation history, the peaks are {ada['replayed_peak_mib']:.0f} and "
                f"{base['replayed_peak_mib']:.0f} MiB. Allocations alive at each peak, by the repository line "
                "that made them (the largest differences first):")
    lines = [title, "", replayed, "",
             "| allocated at | adam MiB | adam_with_adatask MiB | difference MiB |", "|---|---|---|---|"]
    keys = set(base["by_line"]) | set(ada["by_line"])
    diff = {key: ada["by_line"].get(key, 0) - base["by_line"].get(key, 0) for key in keys}
    ranked = sorted(keys, key=lambda key: -abs(diff[key]))
    shown, rest = ranked[:12], ranked[12:]
    for key in shown:
        lines.append(f"| `{key}` | {base['by_line'].get(key, 0) / MIB:.1f} | {ada['by_line'].get(key, 0) / MIB:.1f} "
                     f"| {diff[key] / MIB:+.1f} |")
    if rest:
        lines.append(f"| {len(rest)} other lines | {sum(base['by_line'].get(k_, 0) for k_ in rest) / MIB:.1f} | "
                     f"{sum(ada['by_line'].get(k_, 0) for k_ in rest) / MIB:.1f} | "
                     f"{sum(diff[k_] for k_ in rest) / MIB:+.1f} |")
    lines += ["", "| size class | adam blocks | adam MiB | adam_with_adatask blocks | adam_with_adatask MiB "
              + "| difference MiB |", "|---|---|---|---|---|---|"]
    for label in base["by_size"]:
        (bn, bb), (an, ab) = base["by_size"][label], ada["by_size"][label]
        lines.append(f"| {label} | {bn} | {bb / MIB:.1f} | {an} | {ab / MIB:.1f} | {(ab - bb) / MIB:+.1f} |")
    lines += ["", "| allocator statistic | adam | adam_with_adatask | difference |", "|---|---|---|---|"]
    for key, label in STATS.items():
        b, a = base["stats"][key], ada["stats"][key]
        scale, unit = (MIB, " MiB") if key.endswith("bytes.all.peak") or "_bytes." in key else (1, "")
        lines.append(f"| {label} | {b / scale:.0f}{unit} | {a / scale:.0f}{unit} | {(a - b) / scale:+.0f}{unit} |")
    return lines + [""]


def bound_mib(args, tasks):
    """bench_step's bound on AdaTask's extra peak, from the model built on the CPU (this process
    stays off the GPU)."""
    from scripts import bench_step
    cpu = argparse.Namespace(**{**vars(args), "device": "cpu"})
    return bench_step.memory_bound_mib(bench_step.initial_model(bench_args(cpu, tasks)))["total"]


def section_memory(args, timeout, started, step_results):
    if args.device == "cpu":
        raise NotRun("the breakdown reads torch.cuda's allocator, on CUDA only (on the CPU section 1 "
                     "measures the maximum RSS)")
    text, results = [], {}
    for k, tasks in TASKS.items():
        step = (step_results or {}).get(f"K={k}")
        if step is not None and step.get("exceeds_bound") is False:
            within = (f"AdaTask's peak is {step['adatask_extra_mib']:+.0f} MiB above adam's, within the bound of "
                      f"{step['memory_bound_mib']['total']:.0f} MiB: no breakdown.")
            text += [f"### K = {k}", "", within, ""]
            continue
        traces = {}
        for method in METHODS:
            with tempfile.TemporaryDirectory(prefix="gpu_report-") as tmp:
                run_child(child_cmd(args, "memory-trace", "--method", method, "--tasks", *tasks, "--result",
                                    f"{tmp}/trace.json"), timeout - (time.monotonic() - started))
                traces[method] = json.loads(Path(tmp, "trace.json").read_text())
        bound = step["memory_bound_mib"]["total"] if step is not None else bound_mib(args, tasks)
        results[f"K={k}"] = traces
        text += breakdown_table(traces["adam"], traces["adam_with_adatask"], k, bound)
    text.append(f"`{NO_FRAME}`: allocations made while no Python code of this repository was on the stack, "
                "which is where the autograd engine runs the backward passes on CUDA.")
    return "\n".join(text), results


# ---- 3. runs per GPU --------------------------------------------------------------------------

def throughput_child(args):
    """Child: warm up, say 'ready', then for each 'go SECONDS' on stdin step for that long and
    print the steps and seconds as JSON; end at the end of stdin."""
    from scripts import bench_step
    with tempfile.TemporaryDirectory(prefix="gpu_report-") as tmp:
        bench = bench_args(args, args.tasks)
        bench.data_root = bench_step.generate_samples(bench, tmp)
        trainer = bench_step.Trainer(args.method, bench_step.initial_model(bench), bench.tasks)
        batches = bench_step.load_batches(bench)
    for r in range(bench.warmup):
        trainer.step(batches[r % len(batches)])
    print("ready", flush=True)
    for line in sys.stdin:
        seconds = float(line.split()[1])
        steps, start = 0, bench_step.clock(bench.device)
        while bench_step.clock(bench.device) - start < seconds:
            trainer.step(batches[steps % len(batches)])
            steps += 1
        elapsed = bench_step.clock(bench.device) - start
        print(json.dumps({"steps": steps, "seconds": elapsed, "batch": bench.batch_size}), flush=True)


def side_by_side(args, window, deadline):
    """{n: [{steps, seconds, batch} of each run]} of n = 1, 2, 4 runs stepping together for
    `window` seconds. The largest n processes start, load and warm up once; each measurement
    gives the first n of them the same window while the others wait idle, on stdin."""
    procs = [subprocess.Popen(child_cmd(args, "throughput", "--method", "adam_with_adatask", "--tasks", *TASKS[2]),
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              start_new_session=True) for _ in range(max(RUNS_PER_GPU))]
    try:
        for proc in procs:
            if read_line(proc, deadline).strip() != "ready":
                raise NotRun(f"a run failed before its first window (exit {proc.wait()})")
        results = {}
        for n in RUNS_PER_GPU:
            if time.monotonic() + window > deadline:
                raise NotRun(f"cut short: no time left for the {window:.0f} s window of {n} runs side by side")
            for proc in procs[:n]:
                proc.stdin.write(f"go {window}\n")
                proc.stdin.flush()
            results[n] = [json.loads(read_line(proc, deadline)) for proc in procs[:n]]
        return results
    finally:
        for proc in procs:
            kill_group(proc)


def read_line(proc, deadline):
    ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
    if not ready:
        raise NotRun("cut short: ran past its share of --budget-s")
    return proc.stdout.readline()


def section_throughput(args, timeout, started):
    window = 1.0 if args.quick else 15.0
    deadline = started + timeout
    results, lines = {}, []
    for n, runs in side_by_side(args, window, deadline).items():
        rates = [run["steps"] / run["seconds"] for run in runs]
        results[n] = {"runs": runs, "steps_per_s": rates, "total_steps_per_s": sum(rates)}
    one = results[1]["total_steps_per_s"]
    batch = results[1]["runs"][0]["batch"]
    lines += [f"adam_with_adatask, semantic + depth, batch {batch}: {max(RUNS_PER_GPU)} processes on one "
              + f"{args.device} device, loaded and warmed up; then the first n of them step for the same "
              + f"{window:.0f} s window together, for each n (the others wait idle, holding their memory).", "",
              "| runs side by side | steps/s of each | total steps/s | total samples/s | × one run |",
              "|---|---|---|---|---|"]
    for n, row in results.items():
        each = ", ".join(f"{rate:.2f}" for rate in row["steps_per_s"])
        lines.append(f"| {n} | {each} | {row['total_steps_per_s']:.2f} | {row['total_steps_per_s'] * batch:.1f} "
                     f"| {row['total_steps_per_s'] / one:.2f} |")
    return "\n".join(lines), results


# ---- 4. AMP, channels-last, compile ---------------------------------------------------------

def option_trainer(method, model, tasks, flags):
    """bench_step's Trainer with main_cityscapes.py's performance options (experiment/setup.py):
    a channels-last model and input, the forward and losses under bf16 autocast, a compiled model."""
    import torch

    from scripts import bench_step

    class OptionTrainer(bench_step.Trainer):
        def forward(self, batch):
            image, targets = batch
            if "channels_last" in flags:
                image = image.contiguous(memory_format=torch.channels_last)
            with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled="amp" in flags):
                return super().forward((image, targets))

    if "channels_last" in flags:
        model = model.to(memory_format=torch.channels_last)
    trainer = OptionTrainer(method, model, tasks)
    if "compile" in flags:
        trainer.model = torch.compile(model)  # the engine keeps the module itself, as the experiment does
    return trainer


def options_child(args):
    """Child: each --configs option set's step times, interleaved round-robin."""
    import copy

    from scripts import bench_step
    with tempfile.TemporaryDirectory(prefix="gpu_report-") as tmp:
        bench = bench_args(args, TASKS[2])
        bench.data_root = bench_step.generate_samples(bench, tmp)
        model = bench_step.initial_model(bench)
        trainers = {c: option_trainer("adam_with_adatask", copy.deepcopy(model), bench.tasks, OPTIONS[c])
                    for c in args.configs}
        batches = bench_step.load_batches(bench)
    times = {c: [] for c in args.configs}
    for r in range(bench.warmup + bench.steps):
        for config in bench_step.rotated(list(args.configs), r):
            seconds = trainers[config].step(batches[r % len(batches)])["total"]
            if r >= bench.warmup:
                times[config].append(seconds)
    return {"batch": bench.batch_size, "steps": bench.steps, "warmup": bench.warmup, "seconds": times}


def options_lines(args, runs, compile_note):
    lines = [f"adam_with_adatask, semantic + depth, batch {runs[0]['batch']}: full training steps "
             + "(engine.train_step) with the options of main_cityscapes.py; each run interleaves its option sets "
             + "round-robin after the warm-up; median [min–max] seconds per step, × the default of the same run.", "",
             "| options | step s | × default |", "|---|---|---|"]
    for run in runs:
        base = statistics.median(run["seconds"]["default"])
        for config, seconds in run["seconds"].items():
            if config == "default" and run is not runs[0]:
                continue
            median = statistics.median(seconds)
            lines.append(f"| {config} | {median:.4f} [{min(seconds):.4f}–{max(seconds):.4f}] | {median / base:.2f} |")
    return lines + (["", f"compile: {compile_note}"] if compile_note else [])


def section_options(args, timeout, started, write):
    eager = ["default", "amp", "channels_last", "amp + channels_last"]
    runs = []
    with tempfile.TemporaryDirectory(prefix="gpu_report-") as tmp:
        run_child(child_cmd(args, "options", "--configs", *eager, "--result", f"{tmp}/r.json"),
                  timeout - (time.monotonic() - started))
        runs.append(json.loads(Path(tmp, "r.json").read_text()))
    if args.quick and args.device == "cpu":
        note = "skipped: --quick on the CPU (compiling takes minutes and a C++ compiler)"
        return "\n".join(options_lines(args, runs, note)), {"runs": runs, "compile": note}
    write("\n".join(options_lines(args, runs, "running (its own process, against its own default)")),
          {"runs": runs})
    note = None
    try:
        with tempfile.TemporaryDirectory(prefix="gpu_report-") as tmp:
            run_child(child_cmd(args, "options", "--configs", "default", "compile", "--result", f"{tmp}/r.json"),
                      timeout - (time.monotonic() - started))
            runs.append(json.loads(Path(tmp, "r.json").read_text()))
        note = "its first (warm-up) steps compile; the step time is after them"
    except NotRun as e:
        note = f"not run: {e} (main_cityscapes.py's first compiled epoch took ~2.5 min on an H100: give --budget-s more)"
    return "\n".join(options_lines(args, runs, note)), {"runs": runs, "compile": note}


# ---- 5. a recipe's estimate --------------------------------------------------------------------

def pick_recipe(args):
    if args.recipe:
        return args.recipe
    recipes = sorted((REPO / "recipes").glob("*.toml")) + sorted((REPO / "recipes").glob("*.y*ml"))
    if not recipes:
        raise NotRun("no recipe in recipes/")
    adatask = [r for r in recipes if "adatask" in r.stem]
    return (adatask or recipes)[0].stem


def section_estimate(args, timeout, started):
    recipe = pick_recipe(args)
    # reproduce takes the runs' flags, --device included, after --; --gpus makes its wall time one GPU's
    cmd = [sys.executable, "-m", "sweeps", "reproduce", recipe, "--estimate"]
    if args.device.startswith("cuda"):
        cmd += ["--gpus", args.device.partition(":")[2] or "0"]
    if args.quick:
        cmd += ["--estimate-steps", "1", "--", "--device", args.device, "--width-mult", "0.125"]
    else:
        cmd += ["--", "--device", args.device]
    out = run_child(cmd, timeout - (time.monotonic() - started))
    shown = " ".join(["python", *cmd[1:]])
    return f"`{shown}`:\n\n```\n{out.strip()}\n```", {"recipe": recipe, "command": cmd[1:], "output": out}


# ---- the report ----------------------------------------------------------------------------------

def device_line(args):
    if args.device == "cpu":
        return "device: CPU. **Not run on a GPU yet**: these numbers say nothing about one."
    smi = shutil.which("nvidia-smi")
    name = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True, check=False).stdout.strip() if smi else "unknown GPU"
    return f"device: {args.device} ({name or 'unknown GPU'})"


def header(args):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=False)
    return (f"# GPU report\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit "
            f"{commit.stdout.strip() or 'unknown'}, torch {version('torch')}, {os.cpu_count()} CPUs; "
            f"{device_line(args)}\n\n`python -m scripts.gpu_report {' '.join(args.argv)}`; "
            f"{'--quick (tiny network, 32x64, a few steps)' if args.quick else 'full size (SegNet-MTAN width 1, 128x256)'}"
            f", budget {args.budget_s:.0f} s.\n")


def write_not_run(out, name, why):
    """A section that did not run still has its files, saying why."""
    write_text(out / f"{name}.json", json.dumps({"not_run": why}))
    write_text(out / f"{name}.md", f"not run: {why}\n")


def write_report(out, head, status):
    parts = [head]
    for name, title in TITLES.items():
        section = out / f"{name}.md"
        body = section.read_text().strip() if status.get(name) == "done" and section.exists() \
            else f"not run: {status.get(name, 'pending: the run had not reached it when this report was written (cut short, or still running)')}"
        parts += [f"## {title}", "", body, ""]
    write_text(out / "report.md", "\n".join(parts))


def check_device(args):
    """Exit with one line where --device names a CUDA device torch cannot see (checked in a child:
    this process stays off the GPU)."""
    if args.device == "cpu":
        return
    index = args.device.partition(":")[2] or "0"
    found = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                           capture_output=True, text=True, check=False).stdout.strip()
    if not found.isdigit() or int(index) >= int(found):
        sys.exit(f"gpu_report: --device {args.device}: torch sees {found or 'no'} CUDA device(s) here "
                 f"(--device cpu --quick shows the report's format)")


def run_report(args):
    check_device(args)
    # a stop (SIGTERM) unwinds like Ctrl-C, so the running section's processes are killed too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in TITLES:  # a section of an earlier report must not pass for this one's
        for suffix in (".md", ".json"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)
    head = header(args)
    started_all = time.monotonic()
    status = {name: "not selected (--sections)" for name in TITLES if name not in args.sections}
    for name, why in status.items():
        write_not_run(out, name, why)
    write_report(out, head, status)
    step_results = None

    def write(name, text, results):
        write_text(out / f"{name}.json", json.dumps(results, indent=1, default=str))
        write_text(out / f"{name}.md", text + "\n")

    def partial_options(text, results):  # the eager options' rows, before compile runs
        write("options", text, results)
        status["options"] = "done"
        write_report(out, head, status)

    for name in RUN_ORDER:
        if name not in args.sections:
            continue
        left = args.budget_s - (time.monotonic() - started_all)
        timeout = left if name == "options" else min(left, SHARES[name] * args.budget_s)
        if left < (5 if args.quick else 20):
            status[name] = f"--budget-s {args.budget_s:.0f} spent before it started"
            write_not_run(out, name, status[name])
            write_report(out, head, status)
            continue
        started = time.monotonic()
        print(f"gpu_report: {name} (at most {timeout:.0f} s)", file=sys.stderr, flush=True)
        try:
            if name == "step":
                text, results = section_step(args, timeout, started)
                step_results = results
            elif name == "memory":
                text, results = section_memory(args, timeout, started, step_results)
            elif name == "throughput":
                text, results = section_throughput(args, timeout, started)
            elif name == "estimate":
                text, results = section_estimate(args, timeout, started)
            else:
                text, results = section_options(args, timeout, started, partial_options)
        except NotRun as why:
            if status.get(name) != "done":  # a partial options section stays
                status[name] = str(why)
                write_not_run(out, name, status[name])
            write_report(out, head, status)
            continue
        write(name, f"{text}\n\n({time.monotonic() - started:.0f} s)", results)
        status[name] = "done"
        write_report(out, head, status)
    print(f"gpu_report: {out / 'report.md'} ({time.monotonic() - started_all:.0f} s)", file=sys.stderr)
    return out / "report.md"


def parse_args(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda", *(f"cuda:{i}" for i in range(16))],
                   metavar="DEVICE", help="cuda (default), cuda:N or cpu")
    p.add_argument("--quick", action="store_true", help="tiny network and images, a few steps (the CPU test)")
    p.add_argument("--out", default="runs/gpu-report", metavar="DIR", help="the report's folder (default: %(default)s)")
    p.add_argument("--budget-s", type=float, default=360.0, metavar="S",
                   help="the whole report's time; each section's processes are killed past their share "
                        "(default: %(default)s)")
    p.add_argument("--sections", nargs="+", choices=list(TITLES), default=list(TITLES), metavar="NAME",
                   help=f"the sections to run, of {', '.join(TITLES)} (default: all)")
    p.add_argument("--recipe", metavar="NAME", help="section 5's recipe (default: the AdaTask one in recipes/)")
    # a child process of a section
    p.add_argument("--child", choices=("memory-trace", "throughput", "options"), help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--tasks", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--configs", nargs="+", choices=list(OPTIONS), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child is None:
        return run_report(args)
    if args.child == "throughput":
        return throughput_child(args)
    result = {"memory-trace": memory_trace, "options": options_child}[args.child](args)
    write_text(args.result, json.dumps(result))
    return None


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: the report so far is on the console; its children got the signal too
        print("stopped by SIGINT", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
