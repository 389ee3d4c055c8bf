"""The demo's thread policy, measured: its two trainings run one after the other with torch's
default threads, one after the other with one thread, or side by side with one thread each,
on an idle machine and while another process keeps one core busy.

    .venv/bin/python -m scripts.bench_threads [--epochs 1] [--synthcity-train 256]

Each cell is the wall time of both trainings (the demo's flags, shortened), measured in this
one run; ratios are to the demo's policy under the same load. The busy core is a spinning
Python process started and stopped by this script.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data.datasets import DATASETS
from scripts.demo import DEMO_FLAGS, METHODS, demo_settings  # the flags the demo trains with

REPO = Path(__file__).resolve().parent.parent

POLICIES = {  # name → (side by side, --threads or None for torch's default)
    "one after the other, torch's default threads": (False, None),
    "one after the other, 1 thread": (False, 1),
    "side by side, 1 thread each (the demo)": (True, 1),
}
DEMO_POLICY = "side by side, 1 thread each (the demo)"


def trainings(out, side_by_side, threads, extra):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    commands = [[sys.executable, str(REPO / "main_cityscapes.py"), f"--method={m}", *DEMO_FLAGS, *extra,
                 "--out", str(out), "--name", m, *(["--threads", str(threads)] if threads else [])] for m in METHODS]
    start = time.perf_counter()
    if side_by_side:
        procs = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.DEVNULL) for c in commands]
        codes = [p.wait() for p in procs]
    else:
        codes = [subprocess.run(c, cwd=REPO, env=env, stdout=subprocess.DEVNULL, check=False).returncode
                 for c in commands]
    if any(codes):
        sys.exit(f"a training failed (exits {codes})")
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--synthcity-train", type=int, default=256)
    args = p.parse_args()
    extra = ["--epochs", str(args.epochs), "--synthcity-train", str(args.synthcity_train)]
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = demo_settings(DEMO_FLAGS + extra)  # generated once, outside the timings
        DATASETS["synthcity"].generate((data.height, data.width), data.synthcity_train, data.synthcity_val)
        for load in ("idle", "one core busy"):
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "idle" else None
            try:
                for i, (name, (side_by_side, threads)) in enumerate(POLICIES.items()):
                    seconds[load, name] = trainings(Path(tmp) / f"{load}-{i}".replace(" ", "-"), side_by_side,
                                                    threads, extra)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    print(f"both demo trainings, {args.epochs} epoch(s) of {args.synthcity_train} samples each; "
          f"{os.cpu_count()} CPUs; wall seconds and × the demo's policy under the same load\n")
    print("| policy | idle s | × | one core busy s | × |")
    print("|---|---|---|---|---|")
    for name in POLICIES:
        cells = []
        for load in ("idle", "one core busy"):
            cells += [f"{seconds[load, name]:.0f}", f"{seconds[load, name] / seconds[load, DEMO_POLICY]:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
