"""runfolder.lease: one owner per run folder (flock + heartbeat lease), and runs that end
within 2 s of their launcher's death."""
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runfolder import exit_codes, lease
from runfolder.files import LEASE, LEASE_LOG, LOCK

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

# Acquire and release the folder in argv[1]; exit 75 with the message when it is busy.
PROBE = """
import sys
from runfolder import exit_codes, lease
try:
    lease.acquire(sys.argv[1]).release()
except lease.RunBusy as e:
    print(e)
    sys.exit(exit_codes.EXIT_BUSY)
"""


@pytest.fixture(autouse=True)
def default_timeout(monkeypatch):
    monkeypatch.delenv(lease.TIMEOUT_ENV, raising=False)


def python(code, *args):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], check=False, cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=60)


def lease_of(run):
    return json.loads((run / LEASE).read_text())


def write_lease(run, age, host="node-b", node="another-boot", pid=4242, **extra):
    run.mkdir(parents=True, exist_ok=True)
    now = time.time()
    held = {"host": host, "node": node, "pid": pid, "process_start": None, "started": now - age - 60,
            "renewed": now - age, **extra}
    (run / LEASE).write_text(json.dumps(held))
    return held


def this_host(pid, **extra):
    return {"host": socket.gethostname(), "node": lease._node(), "pid": pid, **extra}


def wait_until(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_a_second_acquire_is_refused_naming_the_folder_host_pid_and_lease_age(tmp_path):
    run = tmp_path / "runs" / "r"
    with lease.acquire(run, create=True):
        assert lease.run_files(run) == []  # the lock's files do not make it hold a run
        done = python(PROBE, run)
        assert done.returncode == exit_codes.EXIT_BUSY, done.stderr
        assert f"{run} is owned by another process ({socket.gethostname()} pid {os.getpid()}, " \
               f"lease renewed 0 s ago)" in done.stdout
        with pytest.raises(lease.RunBusy) as busy:  # in the same process too
            lease.acquire(run)
        assert (busy.value.run_dir, busy.value.host, busy.value.pid) == (run, socket.gethostname(), os.getpid())
        assert 0 <= busy.value.age < 5


def test_release_removes_the_lease_and_frees_the_folder(tmp_path):
    run = tmp_path / "r"
    ownership = lease.acquire(run, create=True)
    assert lease_of(run)["pid"] == os.getpid()
    ownership.release()
    ownership.release()  # idempotent
    assert sorted(os.listdir(run)) == [LOCK] and lease.run_files(run) == []
    assert python(PROBE, run).returncode == 0
    with lease.acquire(run):  # and again in this process
        pass
    assert not (run / LEASE).exists()


def test_acquire_without_create_needs_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        lease.acquire(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_run_files_lists_the_folder_without_the_lock_files(tmp_path):
    for name in (".lock", "lease.json", "lease.log", ".lease.json.k2j4_x.tmp", "config.json", "metrics.jsonl"):
        (tmp_path / name).write_text("")
    assert lease.run_files(tmp_path) == ["config.json", "metrics.jsonl"]


def test_a_fresh_lease_of_another_host_is_busy_even_though_flock_succeeds(tmp_path):
    run = tmp_path / "r"
    held = write_lease(run, age=30)
    with pytest.raises(lease.RunBusy) as busy:
        lease.acquire(run)
    assert (busy.value.host, busy.value.pid) == ("node-b", 4242) and 29 < busy.value.age < 40
    message = str(busy.value)
    assert f"{run} is owned by another process (node-b pid 4242, lease renewed 30 s ago)" in message
    assert lease.TIMEOUT_ENV in message
    assert lease_of(run) == held  # untouched
    with open(run / LOCK) as f:  # the refused acquire let go of the flock
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_stale_lease_of_another_host_is_taken_over_and_logged(tmp_path, capsys):
    run = tmp_path / "r"
    write_lease(run, age=700)  # the default timeout is 600 s
    with lease.acquire(run):
        assert lease_of(run)["pid"] == os.getpid() and lease_of(run)["host"] == socket.gethostname()
        err = capsys.readouterr().err
        assert f"warning: taking over {run} from node-b pid 4242: its lease was not renewed for 700 s" in err
        log = (run / LEASE_LOG).read_text().splitlines()
        assert len(log) == 1 and f"taking over {run} from node-b pid 4242" in log[0]
        assert f"pid {os.getpid()}" in log[0]
    assert lease.run_files(run) == []


def test_the_lease_timeout_comes_from_the_environment(tmp_path, monkeypatch):
    run = tmp_path / "r"
    write_lease(run, age=120)
    with pytest.raises(lease.RunBusy):
        lease.acquire(run)
    monkeypatch.setenv(lease.TIMEOUT_ENV, "60")
    assert lease.lease_timeout() == 60
    lease.acquire(run).release()
    for bad in ("soon", "0", "-5", "inf", "nan", "1e-300", "0.09", str(8 * 24 * 3600)):
        monkeypatch.setenv(lease.TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=lease.TIMEOUT_ENV):
            lease.acquire(run)


@pytest.mark.parametrize("renewed", [float("nan"), float("inf"), -float("inf"), "yesterday", True])
def test_a_lease_whose_renewal_time_is_no_finite_number_is_unreadable_and_taken_over(tmp_path, capsys, renewed):
    """json writes NaN and Infinity, and reads them back: such a lease must not block for ever."""
    run = tmp_path / "r"
    write_lease(run, age=0, renewed=renewed)
    assert lease.live_owner(run) is None
    with lease.acquire(run):
        assert "its lease is unreadable" in capsys.readouterr().err


def test_a_lease_renewed_in_the_future_within_the_timeout_is_a_live_owner_ahead_of_us(tmp_path):
    run = tmp_path / "r"
    write_lease(run, age=-300)  # its clock 5 min ahead; the timeout is 10 min
    with pytest.raises(lease.RunBusy) as busy:
        lease.acquire(run)
    assert busy.value.age == 0 and "lease renewed 0 s ago" in str(busy.value)
    assert lease.live_owner(run) is not None


def test_a_lease_renewed_further_in_the_future_than_the_timeout_is_taken_over_naming_host_and_skew(tmp_path,
                                                                                                     capsys):
    run = tmp_path / "r"
    write_lease(run, age=-3600)
    assert lease.live_owner(run) is None  # --status: not running
    with lease.acquire(run):
        err = capsys.readouterr().err
    assert "from node-b pid 4242: its lease says it was renewed 3600 s in the future" in err
    assert "node-b's clock is that far ahead" in err


def test_a_pid_beyond_any_pid_of_this_host_is_no_live_process(tmp_path, capsys):
    run = tmp_path / "r"
    write_lease(run, age=0, **this_host(2**70))
    with lease.acquire(run):
        assert "its lease is unreadable" in capsys.readouterr().err


@pytest.mark.parametrize("name", [LOCK, LEASE])
def test_a_lock_or_lease_path_that_is_a_folder_is_refused_naming_it(tmp_path, name):
    run = tmp_path / "r"
    (run / name).mkdir(parents=True)
    with pytest.raises(lease.LeaseFileError, match=f"{run / name}: not a file; .* remove it"):
        lease.acquire(run)


def test_a_crashed_holder_on_this_host_is_taken_over_at_once(tmp_path, capsys):
    run = tmp_path / "r"
    crashed = python("import os, sys\nfrom runfolder import lease\n"
                     "lease.acquire(sys.argv[1], create=True)\nprint(os.getpid())\nos._exit(9)", run)
    assert crashed.returncode == 9, crashed.stderr
    pid = int(crashed.stdout)
    assert lease_of(run)["pid"] == pid  # left behind, just renewed
    with lease.acquire(run):
        assert lease_of(run)["pid"] == os.getpid()
    assert f"from {socket.gethostname()} pid {pid}: its process is not running" in capsys.readouterr().err
    assert f"pid {pid}: its process is not running" in (run / LEASE_LOG).read_text()


def test_a_live_process_of_this_host_is_busy_unless_its_pid_was_reused(tmp_path, capsys):
    run = tmp_path / "r"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        start = lease.process_start(sleeper.pid)
        write_lease(run, age=1, **this_host(sleeper.pid, process_start=start))
        with pytest.raises(lease.RunBusy):
            lease.acquire(run)
        write_lease(run, age=1, **this_host(sleeper.pid, process_start=start - 1))  # the lease's process is gone
        with lease.acquire(run):
            pass
        assert f"pid {sleeper.pid} is now another process" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_forked_child_does_not_keep_the_folder_after_its_parent_dies(tmp_path):
    run = tmp_path / "r"
    code = ("import os, sys, time\nfrom runfolder import lease\n"
            "lease.acquire(sys.argv[1], create=True)\n"
            "child = os.fork()\n"
            "if child == 0:\n    os.dup2(os.open(os.devnull, os.O_RDWR), 1)\n    os.dup2(1, 2)\n"
            "    time.sleep(60)\n    os._exit(0)\n"
            "print(child, flush=True)\nos._exit(0)")
    done = python(code, run)
    child = int(done.stdout)
    try:
        assert lease.pid_alive(child)
        with lease.acquire(run):  # the child closed its copy of the lock at the fork
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_the_heartbeat_renews_the_lease(tmp_path, monkeypatch):
    run = tmp_path / "r"
    with lease.acquire(run, create=True, heartbeat=0.05):
        first = lease_of(run)
        assert wait_until(lambda: lease_of(run)["renewed"] > first["renewed"] + 0.1, 5)
        assert lease_of(run)["started"] == first["started"]
    # A short lease timeout shortens the renewal interval (to a third of it).
    monkeypatch.setenv(lease.TIMEOUT_ENV, "0.3")
    with lease.acquire(run):
        first = lease_of(run)["renewed"]
        assert wait_until(lambda: lease_of(run)["renewed"] > first, 2)
    assert sorted(os.listdir(run)) == [LOCK]  # no temporary files left


def test_a_takeover_stops_the_heartbeat_and_calls_on_lost(tmp_path, capsys):
    run = tmp_path / "r"
    lost = threading.Event()
    with lease.acquire(run, create=True, heartbeat=0.05, on_lost=lambda ownership: lost.set()) as ownership:
        taker = write_lease(run, age=0)
        assert lost.wait(5) and ownership.lost
        time.sleep(0.2)
        assert lease_of(run) == taker
    assert lease_of(run) == taker  # release leaves the new holder's lease alone
    assert f"{run} was taken over by node-b pid 4242" in capsys.readouterr().err


# ------------------------------------------------------------------ exit_with_parent

# argv: mode, folder. The parent starts the child and sleeps; the child watches the parent, forks a
# worker (as a DataLoader does) and sleeps; it writes "<child pid> <worker pid>" to <folder>/pids.
PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
time.sleep(120)
"""
CHILD = """
import multiprocessing, os, signal, sys, time
from pathlib import Path
from runfolder import lease
mode, folder = sys.argv[1], Path(sys.argv[2])
if mode == "handler":
    def stop(signum, frame):
        raise SystemExit(143)
    signal.signal(signal.SIGTERM, stop)
else:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only os._exit can end it
lease.exit_with_parent(os.getppid())
worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,), daemon=True)
worker.start()
(folder / "pids.tmp").write_text(f"{os.getpid()} {worker.pid}")
os.replace(folder / "pids.tmp", folder / "pids")
try:
    time.sleep(120)
finally:
    (folder / "clean-exit").write_text("")
"""


@pytest.mark.parametrize("mode", ["handler", "ignore"])
def test_a_run_ends_within_2_s_of_its_parents_death_with_its_workers(tmp_path, mode):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, mode, str(tmp_path)], cwd=REPO, env=ENV)
    pids = []
    try:
        assert wait_until((tmp_path / "pids").exists, 60), "the child did not start"
        pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
        assert all(map(lease.pid_alive, pids))
        parent.kill()
        parent.wait()
        assert wait_until(lambda: not any(map(lease.pid_alive, pids)), 2), "alive 2 s after the parent died"
        # With a SIGTERM handler the run stops cleanly; without one os._exit ends it.
        assert (tmp_path / "clean-exit").exists() == (mode == "handler")
    finally:
        parent.kill()
        parent.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_parent_already_gone_ends_the_process_at_once():
    gone = subprocess.Popen(["true"])
    gone.wait()
    start = time.monotonic()
    done = python("import sys, time\nfrom runfolder import lease\n"
                  "lease.exit_with_parent(int(sys.argv[1]))\ntime.sleep(30)", gone.pid)
    assert done.returncode == -signal.SIGTERM and time.monotonic() - start < 20
    assert f"parent process {gone.pid} is gone" in done.stderr


def test_exit_with_parent_from_env_reads_mtl_parent_pid():
    assert lease.exit_with_parent_from_env({}) is None
    assert lease.exit_with_parent_from_env({"MTL_PARENT_PID": " "}) is None
    for bad in ("x", "0", "-3", "1.5"):
        with pytest.raises(ValueError, match="MTL_PARENT_PID"):
            lease.exit_with_parent_from_env({"MTL_PARENT_PID": bad})
    with pytest.raises(ValueError):
        lease.exit_with_parent(0)
