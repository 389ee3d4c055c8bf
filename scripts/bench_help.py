"""Wall time of `main_cityscapes.py --help`, beside `python -c "import torch"`.

    python3 -m scripts.bench_help [-n N] [--python PY] [--repo DIR]

After one warm-up of each, runs the two commands N times, interleaved, so that load from
other processes on a shared machine hits both alike; prints each run's wall time, the
medians, their ratio (the --help time is at least torch's import while the parser needs
torch-backed registries) and the number of lines --help prints. --repo times another
checkout (e.g. an older commit, to compare).
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def wall(command, cwd):
    """(seconds, stdout) of one run; a failing command stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=5, help="timed runs of each command (default 5)")
    p.add_argument("--python", default=sys.executable, help="interpreter (default: this one)")
    p.add_argument("--repo", type=Path, default=REPO, help="checkout holding main_cityscapes.py (default: this one)")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("-n: at least 1")
    commands = {"--help": [args.python, "main_cityscapes.py", "--help"],
                "import torch": [args.python, "-c", "import torch"]}
    # the warm-up fills the file system cache (and writes .pyc files, unless PYTHONDONTWRITEBYTECODE)
    help_text = wall(commands["--help"], args.repo)[1]
    wall(commands["import torch"], args.repo)
    times = {name: [] for name in commands}
    for _ in range(args.n):
        for name, command in commands.items():
            times[name].append(wall(command, args.repo)[0])
    print(f"{'run':>4} {'--help s':>10} {'import torch s':>15}")
    for i, (h, t) in enumerate(zip(times["--help"], times["import torch"]), 1):
        print(f"{i:>4} {h:>10.2f} {t:>15.2f}")
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'med':>4} {median['--help']:>10.2f} {median['import torch']:>15.2f}")
    print(f"--help / import torch (medians): {median['--help'] / median['import torch']:.2f}")
    print(f"--help prints {len(help_text.splitlines())} lines")
    return median


if __name__ == "__main__":
    main()
