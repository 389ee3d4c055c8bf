"""How far the demo's float32 results drift when the CPU's instruction set changes, measured on
this one machine by forcing lower instruction sets (docs/reproducibility.md).

    nice -n 10 .venv/bin/python -m scripts.isa_drift [--out runs/isa_drift] [--settings NAME,...]
                                                     [extra main_cityscapes.py flags]

Trains scripts/demo.py's two runs (its flags, one seed; extra flags such as --epochs 2 go to
every run) under each setting below, in subprocesses, at most as many threads at once as
there are CPUs, into OUT/<setting>/<method>/. Then prints each run's final test metrics, its
difference to the same method under torch's own choice, that difference as a ratio of the
value, and the largest drift beside the gap between the two methods.

A setting forces the instruction set of ATen's vectorised kernels (ATEN_CPU_CAPABILITY), of
oneDNN's convolutions (ONEDNN_MAX_CPU_ISA) and of MKL's matrix products
(MKL_ENABLE_INSTRUCTIONS); another CPU runs other kernels of the same libraries, so the
drift between settings is the size of the drift between machines with the same torch build.
The thread-count setting checks the other half of the claim: the same machine and ISA with
two threads per run instead of one.

A rerun keeps the finished runs and resumes the interrupted ones; Ctrl-C stops the runs at
their last finished epoch and says so in one line.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from evaluation.console import duration, shown_path
from runfolder.exit_codes import EXIT_INTERRUPTED
from runfolder.files import CONFIG, SUMMARY, log_file
from scripts.demo import DEMO_FLAGS, METHODS, METRICS

REPO = Path(__file__).resolve().parent.parent
REFERENCE = "torch-choice"
LOWEST = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
# name: (environment, torch threads per run)
SETTINGS = {
    REFERENCE: ({}, 1),
    "aten-default": ({"ATEN_CPU_CAPABILITY": "default"}, 1),
    "all-lowest": (LOWEST, 1),
    "two-threads": ({}, 2),
}
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS")
PROBE = """import torch
conv = torch.nn.Conv2d(8, 8, 3)
conv(torch.randn(2, 8, 32, 32, requires_grad=True)).sum().backward()
print("aten", torch.backends.cpu.get_cpu_capability())
"""


def environment(setting):
    """This process's environment without any inherited ISA or thread setting, plus the setting's."""
    env = {k: v for k, v in os.environ.items() if k not in ISA_ENV}
    return {**env, **SETTINGS[setting][0]}


def instruction_sets(setting):
    """What ATen and oneDNN report under the setting (MKL reports nothing of the kind)."""
    out = subprocess.run([sys.executable, "-c", PROBE], env={**environment(setting), "ONEDNN_VERBOSE": "1"},
                         capture_output=True, text=True, check=True).stdout
    aten = next(line.split()[1] for line in out.splitlines() if line.startswith("aten "))
    onednn = next((line.split("isa:")[1] for line in out.splitlines() if "isa:" in line), "not used")
    return f"ATen {aten}, oneDNN {onednn}"


def command(out, setting, method, extra):
    run, threads = out / setting / method, SETTINGS[setting][1]
    tail = [*DEMO_FLAGS, *extra, "--threads", str(threads)]
    if (run / CONFIG).exists():  # the flags again, so that a rerun with other flags is refused
        return [sys.executable, str(REPO / "main_cityscapes.py"), "--resume", str(run), *tail]
    return [sys.executable, str(REPO / "main_cityscapes.py"), f"--method={method}", *tail,
            "--out", str(out / setting), "--name", method]


def busy(running):
    """Threads the running runs use."""
    return sum(SETTINGS[setting][1] for setting, _ in running)


def train(out, settings, extra):
    """Every unfinished run, as many at once as their threads fit on the CPUs."""
    pending = [(s, m) for s in settings for m in METHODS if not (out / s / m / SUMMARY).exists()]
    cpus, running = os.cpu_count() or 1, {}
    try:
        supervise(out, extra, pending, running, cpus)
    except KeyboardInterrupt:
        stop(running)
        raise


def stop(running):
    """Ctrl-C in a terminal has reached the runs already; a signal to this process alone has not."""
    for proc, log, _ in running.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc, log, _ in running.values():
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def supervise(out, extra, pending, running, cpus):
    while pending or running:
        while pending and (not running or busy(running) + SETTINGS[pending[0][0]][1] <= cpus):
            setting, method = pending.pop(0)
            (out / setting).mkdir(parents=True, exist_ok=True)
            log = open(log_file(out / setting, method), "a")  # noqa: SIM115 -- closed when the run ends
            print(f"{setting} {method}: training (log {shown_path(log.name)})", flush=True)
            running[setting, method] = (subprocess.Popen(command(out, setting, method, extra), env=environment(setting),
                                                         stdout=log, stderr=subprocess.STDOUT), log, time.time())
        time.sleep(1.0)
        for key, (proc, log, started) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[key]
            if proc.returncode != 0:
                sys.exit(f"{key[0]} {key[1]} failed (exit {proc.returncode}); its log: {shown_path(log.name)}")
            print(f"{key[0]} {key[1]}: done in {duration(time.time() - started)}", flush=True)


def final_metrics(out, setting, method):
    return json.loads((out / setting / method / SUMMARY).read_text())["final"]


def drift_table(out, settings):
    """Markdown: per setting and method the metrics, their difference to the reference and its ratio."""
    header = "| setting | method | " + " | ".join(METRICS) + " | " + " | ".join(f"Δ {k}" for k in METRICS) + \
             " | " + " | ".join(f"Δ/value {k}" for k in METRICS) + " |"
    lines = [header, "|" + "---|" * (2 + 3 * len(METRICS))]
    for setting in settings:
        for method in METHODS:
            ref, got = final_metrics(out, REFERENCE, method), final_metrics(out, setting, method)
            diff = [got[k] - ref[k] for k in METRICS]
            lines.append(f"| {setting} | {method} | " + " | ".join(f"{got[k]:.4f}" for k in METRICS) + " | "
                         + " | ".join(f"{d:+.4f}" for d in diff) + " | "
                         + " | ".join(f"{d / ref[k]:+.1%}" for d, k in zip(diff, METRICS)) + " |")
    return "\n".join(lines)


def gap_versus_drift(out, settings):
    """Per metric: the gap between the two methods under the reference, and the largest drift
    that an instruction set alone caused (the settings with the reference's thread count)."""
    settings = [s for s in settings if SETTINGS[s][1] == SETTINGS[REFERENCE][1]]
    ref = {m: final_metrics(out, REFERENCE, m) for m in METHODS}
    lines = ["| metric | gap between the methods | largest drift of one run across instruction sets | drift / gap |", "|---|---|---|---|"]
    for k in METRICS:
        gap = abs(ref[METHODS[1]][k] - ref[METHODS[0]][k])
        drift = max(abs(final_metrics(out, s, m)[k] - ref[m][k]) for s in settings for m in METHODS)
        lines.append(f"| {k} | {gap:.4f} | {drift:.4f} | {drift / gap:.2f} |" if gap else
                     f"| {k} | 0 | {drift:.4f} | - |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/isa_drift", help="parent folder of the runs (default runs/isa_drift)")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated settings to run, of {', '.join(SETTINGS)} (default all)")
    args, extra = parser.parse_known_args()
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {', '.join(unknown)}; expected some of {', '.join(SETTINGS)}")
    if REFERENCE not in settings:
        settings.insert(0, REFERENCE)  # the differences are to it
    out = Path(args.out)
    try:
        for setting in settings:
            env, threads = SETTINGS[setting]
            shown = " ".join(f"{k}={v}" for k, v in env.items()) or "(nothing forced)"
            print(f"{setting}: {shown}, {threads} thread{'s' * (threads > 1)}: {instruction_sets(setting)}",
                  flush=True)
        start = time.time()
        train(out, settings, extra)
    except KeyboardInterrupt:
        print("\nstopped; the runs keep their last finished epoch; the same command continues them", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    print(f"\ntrained in {duration(time.time() - start)}; flags: {' '.join(DEMO_FLAGS + extra)}\n")
    print(drift_table(out, settings))
    if any(SETTINGS[s][1] == SETTINGS[REFERENCE][1] for s in settings[1:]):
        print("\n" + gap_versus_drift(out, settings[1:]))


if __name__ == "__main__":
    main()
