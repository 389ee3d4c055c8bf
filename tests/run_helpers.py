"""Setup shared by the tests that train tiny runs to stop, kill and resume them (test_resume.py,
test_stops.py): their data, their command line, a run in a subprocess, waiting for its files."""
import subprocess
import sys
import time
from pathlib import Path

from data import synthcity

REPO = Path(__file__).resolve().parent.parent


def tiny_release(tmp_path_factory, name, seed):
    """SynthCity at 32x64 with 48 training images, 12 steps of 4 per epoch: enough to stop a run
    in the middle of one; 8 test images."""
    return synthcity.generate(tmp_path_factory.mktemp(name) / "d", n_train=48, n_val=8, height=32, width=64,
                              seed=seed, progress=False)


def run_argv(data, out, name, *extra, epochs):
    """main_cityscapes.py's flags for a tiny CPU run on `data` into out/name, loading in its own process."""
    return ["--data-path", str(data), "--epochs", str(epochs), "--batch-size", "4", "--width-mult", "0.125",
            "--num-workers", "0", "--device", "cpu", "--out", str(out), "--name", name, *extra]


def start_run(args, **popen):
    """main_cityscapes.py with `args` in a subprocess of this interpreter, from the repository root."""
    return subprocess.Popen([sys.executable, str(REPO / "main_cityscapes.py"), *args], cwd=REPO, **popen)


def wait_for(path, proc, timeout=120):
    """Until `path` exists; fails if the run ends first or the timeout passes."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
