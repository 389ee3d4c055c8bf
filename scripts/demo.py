"""The README demo: adam and adam_with_adatask on a small SynthCity, against trivial predictors.

    .venv/bin/python -m scripts.demo [--update-results] [extra main_cityscapes.py flags]

Trains a narrow SegNet-MTAN with each method through main_cityscapes.py (the real CLI, so
each run folder is a normal one) into runs/demo/<method>/, then scores the trivial predictors
(the most frequent training class; the mean training depth) on the same test split and
writes the comparison to runs/demo/demo.md (and, with --update-results, to the committed
results/demo.md). Extra flags go to both runs.

Thread policy (measured by scripts/bench_threads.py): the two runs go side by side, each
with half the CPUs (one thread each on a 2-core machine); one run per core is what keeps a
shared machine fast, while two threads per run on a busy core slow each other down many
times over. An estimate of the time is printed up front, from timing a few training steps
now, on this machine as it is loaded now, and the time left after every epoch.

A rerun continues: finished runs are kept, interrupted ones resume from their checkpoint.
"""
import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from evaluation.console import duration, python_command, shown_path, time_left
from evaluation.run_record import read_metrics
from runfolder.exit_codes import EXIT_INTERRUPTED
from runfolder.files import CONFIG, SUMMARY, log_file
from runfolder.lease import PARENT_ENV

REPO = Path(__file__).resolve().parent.parent

METHODS = ("adam", "adam_with_adatask")
DEMO_FLAGS = [
    "--dataset", "synthcity", "--image-size", "64x128", "--synthcity-train", "256", "--synthcity-val", "128",
    "--arch", "mtan", "--width-mult", "0.25", "--epochs", "8", "--batch-size", "8", "--lr", "1e-3",
    "--num-workers", "0", "--seed", "0",
]
METRICS = ("miou", "pix_acc", "abs_err", "rel_err")
POLL_SECONDS = 1.0
TRIVIAL_ROW = "trivial (majority class, mean depth)"


class Stopped(Exception):
    """Ctrl-C or SIGTERM reached the demo."""


def thread_policy(cpus):
    """(runs side by side, torch threads per run)."""
    if cpus >= len(METHODS):
        return len(METHODS), cpus // len(METHODS)
    return 1, 1


def demo_settings(flags):
    """The few settings the estimate needs, read from the flags as main_cityscapes.py reads them."""
    p = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    for flag, kind in (("--epochs", int), ("--batch-size", int), ("--synthcity-train", int),
                       ("--synthcity-val", int), ("--width-mult", float), ("--image-size", str)):
        p.add_argument(flag, type=kind)
    known, _ = p.parse_known_args(flags)
    known.height, known.width = (int(v) for v in known.image_size.split("x"))
    return known


def busy_cpus_besides_us(seconds_spent_by_us, wall, busy_before, busy_after):
    """CPUs kept busy by other processes over a window, from two busy_cpu_seconds() readings."""
    return max(0.0, (busy_after - busy_before - seconds_spent_by_us) / wall)


def busy_cpu_seconds():
    """CPU seconds all processes have spent busy (not idle, not waiting for I/O): /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def estimate(settings, threads, parallel, data_missing):
    """Seconds the demo should take: a few timed steps of each method here and now, scaled
    to the run's steps, plus the test passes and the data generation, and slowed by the
    share of the CPUs that other processes keep busy, plus a run's start (its imports, timed
    here as this process makes the same ones)."""
    started = time.perf_counter()
    import torch

    from data import synthcity
    from models import build_model
    from optim import build_optimizer
    from optim.engine import TrainingEngine
    from optim.weighting import build_weighting
    from tasks import DEFAULT_TASKS, build_tasks

    startup = time.perf_counter() - started
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    sample = synthcity.render_sample(0, "train", 0, settings.height, settings.width)
    render = (time.perf_counter() - t0) * (settings.synthcity_train + settings.synthcity_val) if data_missing else 0.0
    tasks = build_tasks(DEFAULT_TASKS)  # what the demo's runs train

    def batch_of(array):  # one rendered sample, repeated to a batch
        return torch.stack([torch.as_tensor(array)] * settings.batch_size)

    batch = (batch_of(sample["image"]).permute(0, 3, 1, 2), [batch_of(t.to_tensor(t.target(sample))) for t in tasks])
    before, cpu_start, start = busy_cpu_seconds(), time.process_time(), time.perf_counter()
    step_seconds = {}
    for method in METHODS:
        model = build_model("mtan", tasks, settings.width_mult)

        def predict_and_losses(batch, model=model):
            image, targets = batch
            preds = model(image)
            return preds, [task.loss(p, y) for task, p, y in zip(tasks, preds, targets)]

        engine = TrainingEngine(model, build_optimizer(method, model.shared_parameters(),
                                                       model.task_specific_parameters(), 1e-3),
                                build_weighting("ew", len(tasks)), predict_and_losses, DEFAULT_TASKS)
        times = []
        for _ in range(4):  # the first is a warm-up
            t0 = time.perf_counter()
            engine.train_step(batch, epoch=0)
            times.append(time.perf_counter() - t0)
        step_seconds[method] = sorted(times[1:])[1]
        with torch.no_grad():
            t0 = time.perf_counter()
            model.eval()(batch[0])
            forward = time.perf_counter() - t0
    wall = time.perf_counter() - start
    others = busy_cpus_besides_us(time.process_time() - cpu_start, wall, before, busy_cpu_seconds())
    cpus = os.cpu_count() or 1
    demand = others + parallel * threads  # threads that want a CPU while the runs train
    slowdown = max(1.0, demand / cpus)
    steps = math.ceil(settings.synthcity_train / settings.batch_size) * settings.epochs
    tests = math.ceil(settings.synthcity_val / settings.batch_size) * settings.epochs * forward
    per_run = {m: startup + (steps * s + tests) * slowdown for m, s in step_seconds.items()}
    training = max(per_run.values()) if parallel > 1 else sum(per_run.values())
    return render + training, per_run, others


def run_commands(out, threads, extra):
    """Per method: (command, how it starts). A finished run is kept; an unfinished one resumes."""
    commands = {}
    for method in METHODS:
        run = out / method
        environment = ["--threads", str(threads)]
        if (run / SUMMARY).exists():
            commands[method] = (None, "finished")
        elif (run / CONFIG).exists():
            # the flags again, so that a rerun with other flags is refused rather than mixed
            commands[method] = (["--resume", shown_path(run), *DEMO_FLAGS, *extra, *environment], "resumes")
        else:
            commands[method] = ([f"--method={method}", *DEMO_FLAGS, *extra, *environment, "--out", shown_path(out),
                                 "--name", method], "starts")
    return commands


def progress_line(method, row, epochs, left):
    test = row["test"]
    return (f"{method:<18} epoch {row['epoch'] + 1}/{epochs}  test mIoU {test['miou']:.4f} PixAcc "
            f"{test['pix_acc']:.4f} AbsErr {test['abs_err']:.4f}  ({duration(row['seconds'])}/epoch)  "
            f"demo: ~{duration(left)} left")


def train(out, commands, parallel, estimated, epochs):
    """Run the methods' commands, `parallel` at a time, printing each finished epoch."""
    env = {**os.environ, PARENT_ENV: str(os.getpid())}  # the runs stop if the demo is killed
    env.pop("OMP_NUM_THREADS", None)  # --threads says it
    pending = [m for m in METHODS if commands[m][0] is not None]
    running, seen = {}, {m: len(read_metrics(out / m)) for m in METHODS}
    try:
        supervise(out, commands, parallel, estimated, epochs, env, pending, running, seen)
    except Stopped:
        stop(running)
        raise


def supervise(out, commands, parallel, estimated, epochs, env, pending, running, seen):
    while pending or running:
        while pending and len(running) < parallel:
            method = pending.pop(0)
            log = open(log_file(out, method), "a")  # noqa: SIM115 -- closed when the run ends
            proc = subprocess.Popen([sys.executable, str(REPO / "main_cityscapes.py"), *commands[method][0]],
                                    cwd=Path.cwd(), env=env, stdout=log, stderr=subprocess.STDOUT)
            running[method] = (proc, log)
        time.sleep(POLL_SECONDS)
        rows = {m: read_metrics(out / m) for m in METHODS}
        for method in METHODS:
            for row in rows[method][seen[method]:]:
                print(progress_line(method, row, epochs, demo_left(out, rows, parallel, estimated, epochs)), flush=True)
            seen[method] = len(rows[method])
        for method, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[method]
            if proc.returncode != 0:
                stop(running)
                last = log_file(out, method).read_text().strip().splitlines()[-1:] or ["(no output)"]
                sys.exit(f"{method} failed (exit {proc.returncode}): {last[0]}\n"
                         f"its log: {shown_path(log_file(out, method))}")


def demo_left(out, rows, parallel, estimated, epochs):
    """Seconds left: each run's epochs to go at its own recent pace (the estimate before its first)."""
    left = []
    for method in METHODS:
        if (out / method / SUMMARY).exists():
            left.append(0.0)
        elif rows[method]:
            left.append(time_left(rows[method], epochs))
        else:
            left.append(estimated[method])
    return max(left) if parallel > 1 else sum(left)


def stop(running):
    """Ctrl-C in a terminal has reached the runs already; a signal to the demo alone has not."""
    for proc, log in running.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc, log in running.values():
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def table(rows, trivial):
    """The methods' rows in METHODS' (alphabetical) order, never sorted by a metric: one seed
    ranks nothing. "vs trivial": each metric minus the trivial predictors' (TRIVIAL_ROW, last)."""
    lines = ["| predictor | mIoU ↑ | PixAcc ↑ | AbsErr ↓ | RelErr ↓ | vs trivial: mIoU, PixAcc, AbsErr, RelErr |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " | "
              + ", ".join(f"{m[k] - trivial[k]:+.4f}" for k in METRICS) + " |" for name, m in rows]
    lines.append(f"| {TRIVIAL_ROW} | " + " | ".join(f"{trivial[k]:.4f}" for k in METRICS) + " | 0 |")
    return "\n".join(lines)


def report(out, flags, seconds):
    """The table of the finished runs; `seconds`: how long this call trained, None where every
    run had finished before it."""
    from evaluation.trivial import trivial_metrics

    rows = [(m, json.loads((out / m / SUMMARY).read_text())["final"]) for m in METHODS]
    data_root = json.loads((out / METHODS[0] / CONFIG).read_text())["data"]["root"]
    trivial = trivial_metrics(data_root, num_classes=7)
    timing = {m: sum(r["seconds"] for r in read_metrics(out / m)) for m in METHODS}
    return "\n".join([
        "# Demo: SynthCity, final test metrics", "",
        "Made by `.venv/bin/python -m scripts.demo` (" + " ".join(flags) + ").", "",
        table(rows, trivial), "",
        ("One seed on one machine: the rows are in alphabetical order, not ranked; how far a rerun on another CPU "
         "moves them: docs/reproducibility.md."),
        "Training time per run: " + ", ".join(f"{m} {duration(s)}" for m, s in timing.items())
        + (f"; this call of the demo took {duration(seconds)}." if seconds is not None
           else "; the runs had finished before this call."),
        f"Trivial predictors: class {trivial['majority_class']} everywhere, depth {trivial['mean_depth']:.4f} everywhere.",
    ])


def raise_stopped(signum, frame):
    raise Stopped(signal.Signals(signum).name)


def main():
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs", help="the demo's runs go to OUT/demo/ (default runs)")
    parser.add_argument("--update-results", action="store_true",
                        help="also write the committed results/demo.md (maintainers)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: the policy above)")
    args, extra = parser.parse_known_args()
    out = Path(args.out) / "demo"
    out.mkdir(parents=True, exist_ok=True)
    cpus = os.cpu_count() or 1
    parallel, threads = thread_policy(cpus)
    threads = args.threads or threads
    flags = DEMO_FLAGS + extra
    commands = run_commands(out, threads, extra)
    for method, (command, how) in commands.items():
        print(f"{method}: {how}" + (f": {python_command(shown_path(REPO / 'main_cityscapes.py'), *command)}" if command else
                                    f" ({shown_path(out / method)})"), flush=True)
    start = time.perf_counter()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, raise_stopped)
    settings = demo_settings(flags)
    trains = any(command for command, _ in commands.values())
    try:
        if trains:
            from data import synthcity
            from data.datasets import DATASETS

            name = synthcity.cache_name(settings.synthcity_train, settings.synthcity_val, settings.height,
                                        settings.width, 0)
            data_missing = not (DATASETS["synthcity"].default_root / name / "synthcity.json").exists()
            total, per_run, others = estimate(settings, threads, parallel, data_missing)
            print(f"{parallel} run{'s' * (parallel > 1)} at a time, {threads} thread{'s' * (threads > 1)} each, "
                  f"on {cpus} CPUs"
                  + (f" ({others:.1f} busy with other work)" if others >= 0.5 else "")
                  + f"; expected time: about {duration(total)} (from a few steps timed now). Logs: "
                  f"{shown_path(log_file(out, '<method>'))}", flush=True)
            train(out, commands, parallel, per_run, settings.epochs)
    except Stopped as e:
        print(f"\nstopped by {e}; the runs keep their last finished epoch; continue with: "
              f"{python_command('-m', 'scripts.demo', *sys.argv[1:])}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    text = report(out, flags, time.perf_counter() - start if trains else None)
    (out / "demo.md").write_text(text + "\n")
    if args.update_results:
        (REPO / "results" / "demo.md").write_text(text + "\n")
    print("\n" + text)
    print(f"\nrun folders and this table (demo.md) in {shown_path(out)}; curves: "
          f"{shown_path(Path(sys.executable).parent / 'tensorboard')} --logdir {shown_path(out)}")


if __name__ == "__main__":
    main()
