"""How a run stops: divergence, Ctrl-C, SIGTERM, a full disk, a read-only folder. Each ends in
one clear line, a distinct exit code, the exact command that continues, and nothing lost."""
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import torch
from run_helpers import REPO, run_argv, start_run, tiny_release, wait_for

import main_cityscapes
from experiment import loop

# main_cityscapes.main() run in this process seeds the global RNGs: given back after each test
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("seeded_and_restored")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_release(tmp_path_factory, "stops", seed=4)


def argv(data, out, name, *extra, epochs=2):
    return run_argv(data, out, name, *extra, epochs=epochs)


def start(data, out, name, *extra, epochs=50):
    return start_run(argv(data, out, name, *extra, epochs=epochs), env=dict(os.environ, OMP_NUM_THREADS="1"),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_weights_that_turn_nan_on_the_last_step_stop_the_run_keeping_the_last_good_epoch(data, tmp_path, monkeypatch,
                                                                                          capsys):
    """Finite losses, NaN weights: caught once per epoch, before the epoch is written."""
    train_epoch = loop.train_epoch

    def poisoned(exp, epoch, writer):
        result = train_epoch(exp, epoch, writer)
        if epoch == 1:
            with torch.no_grad():
                next(exp.model.parameters()).fill_(float("nan"))
        return result

    monkeypatch.setattr(loop, "train_epoch", poisoned)
    run = tmp_path / "run"
    assert main_cityscapes.main(argv(data, tmp_path, "run", epochs=3)) == 3
    err = capsys.readouterr().err
    assert "weights became NaN or infinite in epoch 2" in err and "Traceback" not in err
    assert f"--resume {run}" in err and "Lower --lr" in err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("flags", [["--method=sgd", "--lr", "10"], ["--method=sgd", "--lr", "3"]])
def test_sgd_with_a_huge_lr_stops_with_exit_3(data, tmp_path, capsys, flags):
    assert main_cityscapes.main(argv(data, tmp_path, "run", *flags, epochs=3)) == 3
    err = capsys.readouterr().err
    assert "non-finite" in err or "became NaN" in err
    assert "Traceback" not in err and "JSON compliant" not in err
    assert not (tmp_path / "run" / "summary.json").exists()


# Ctrl-C in a terminal signals the whole process group: the run and its loader workers.
@pytest.mark.parametrize("sig, code, workers, group", [(signal.SIGINT, 130, "0", False), (signal.SIGTERM, 143, "0", False),
                                                       (signal.SIGTERM, 143, "2", False), (signal.SIGINT, 130, "2", True)])
def test_a_signal_ends_the_run_with_one_line_and_the_command_that_continues(data, tmp_path, sig, code, workers, group):
    run = tmp_path / "run"
    proc = start(data, tmp_path, "run", "--num-workers", workers)
    try:
        wait_for(run / "checkpoint.pt", proc)
        time.sleep(0.5)  # inside the next epoch, with its workers running
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        proc.wait(timeout=60)
        exited = time.monotonic()
        _, err = proc.communicate(timeout=30)  # returns once every writer of the pipes is gone
        lingered = time.monotonic() - exited
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    [line] = [line for line in err.splitlines() if line.strip()]
    assert line.startswith(f"stopped by {signal.Signals(sig).name}; the last good checkpoint is {run}")
    command = line.split("continue with: ")[1]
    assert command.endswith(f"main_cityscapes.py --resume {run}")
    assert lingered < 1, f"loader workers kept the pipes open {lingered:.1f} s after the run exited"
    assert not list(run.glob("*.tmp"))
    # the command continues the run
    done = subprocess.run(command.split() + ["--epochs", "2"], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"), check=False)
    assert done.returncode == 0, done.stderr
    assert (run / "summary.json").exists()


# A Ray worker blocks SIGINT in the processes it starts, and a shell's background job ignores
# it; a Ctrl-C to the run's process group must stop the run all the same.
INHERITED = {"blocked": "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})",
             "ignored": "signal.signal(signal.SIGINT, signal.SIG_IGN)"}


@pytest.mark.parametrize("inherited", sorted(INHERITED))
def test_a_run_started_with_sigint_blocked_or_ignored_still_stops_on_it(data, tmp_path, inherited):
    launcher = f"import os, signal, sys; {INHERITED[inherited]}; os.execv(sys.executable, sys.argv[1:])"
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", launcher, sys.executable, str(REPO / "main_cityscapes.py"),
                             *argv(data, tmp_path, "run", epochs=50)], cwd=REPO,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(run / "checkpoint.pt", proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "stopped by SIGINT" in err and "Traceback" not in err, err


@contextmanager
def mounted_tmpfs(path, options):
    """A small file system of our own; needs root (CI runs as root)."""
    path.mkdir()
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run as root to mount the tmpfs of the full-disk and read-only tests")
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"mount -t tmpfs failed: {result.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_stops_with_exit_74_and_leaves_no_temporary_file(data, tmp_path, capsys):
    with mounted_tmpfs(tmp_path / "small", "size=2m") as out:
        code = main_cityscapes.main(argv(data, out, "run"))
        err = capsys.readouterr().err
        assert code == 74, err
        assert "cannot write" in err and "checkpoint.pt" in err and "Traceback" not in err
        assert "--resume" in err
        assert not list((out / "run").glob("*.tmp"))


def test_a_read_only_out_stops_with_exit_74_naming_the_folder(data, tmp_path, capsys):
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as out:
        code = main_cityscapes.main(argv(data, out, "run"))
        err = capsys.readouterr().err
        assert code == 74, err
        assert f"cannot create the run folder {out / 'run'}" in err and "Read-only" in err
        assert "Traceback" not in err


class SignalMidWrite:
    """A file that sends SIGINT to this process on its first write, as a Ctrl-C in the middle
    of torch.save would."""

    def __init__(self, f):
        self.f, self.sent = f, False

    def write(self, data):
        if not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_signal_during_a_checkpoint_write_stops_the_run_after_the_write(tmp_path, monkeypatch):
    """torch's zip writer turned the handler's exception into "unexpected pos", reported as a
    full disk: the signal now waits until the checkpoint is complete, then stops the run."""
    from evaluation import run_record

    save = torch.save
    monkeypatch.setattr(run_record.torch, "save", lambda state, f: save(state, SignalMidWrite(f)))
    previous = main_cityscapes.raise_on_signals()
    try:
        with pytest.raises(main_cityscapes.Interrupted, match="SIGINT"):
            run_record.save_checkpoint(tmp_path, {"weights": torch.arange(100_000.0), "epoch": 3})
    finally:
        main_cityscapes.restore_signals(previous)
    state = torch.load(tmp_path / run_record.CHECKPOINT, weights_only=True)
    assert state["epoch"] == 3 and torch.equal(state["weights"], torch.arange(100_000.0))
    assert not list(tmp_path.glob("*.tmp"))
