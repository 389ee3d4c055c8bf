"""One process owns a run folder for the life of the run; a run ends when its launcher dies.

Ownership (acquire) is two things:

- an exclusive ``flock`` on ``<run>/.lock``, held on an open descriptor until ``release()`` or the
  end of the process, however it ends (the kernel drops the lock);
- a heartbeat lease, ``<run>/lease.json`` = {host, node, pid, process_start, started, renewed}
  (times in seconds since the epoch), written atomically (runfolder/atomic.py) and renewed by a
  daemon thread every ``heartbeat`` seconds (60).

flock does not hold across nodes on every network file system, and a dead node's lock must not
block a retry for ever, so even when flock succeeds the lease decides: a lease of another process
renewed less than ``MTL_LEASE_TIMEOUT`` seconds ago (default 600) means busy (``RunBusy``); an
older one is taken over, with a warning on stderr and a line in ``<run>/lease.log``. A lease of
this host whose process is gone (or whose pid now belongs to another process) is taken over at
once. The lock's files (``files.LOCK_FILES`` and the lease's temporary neighbours) are not part
of a run: ``run_files()`` lists a folder without them.

``exit_with_parent(pid)`` ends this process when process ``pid`` (a launcher such as
scripts/sweep.sh, which passes its pid in ``MTL_PARENT_PID``) dies: SIGTERM to itself at once
(a handler may stop the run cleanly), then exit status 143 without the interpreter's slow
teardown, at the latest one second later.
"""
import atexit
import contextlib
import ctypes
import fcntl
import functools
import json
import math
import os
import select
import signal
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from . import atomic
from .exit_codes import stopped_by
from .files import LEASE, LEASE_LOG, LOCK, LOCK_FILES

TIMEOUT_ENV, PARENT_ENV = "MTL_LEASE_TIMEOUT", "MTL_PARENT_PID"
DEFAULT_TIMEOUT, DEFAULT_HEARTBEAT = 600.0, 60.0
# Below a tenth of a second every run would take every other over; beyond a week a dead owner's
# folder stays blocked for longer than any job lives.
MIN_TIMEOUT, MAX_TIMEOUT = 0.1, 7 * 24 * 3600.0
MAX_PID = 2**22  # Linux's largest pid_max: a larger "pid" is no process of any host


class RunBusy(Exception):
    """The run folder is owned by another live process (exit_codes.EXIT_BUSY)."""

    def __init__(self, run_dir, host=None, pid=None, age=None, detail=""):
        self.run_dir, self.host, self.pid, self.age = Path(run_dir), host, pid, age
        holder = f"{host or 'unknown host'} pid {pid if pid is not None else '?'}"
        age_text = f", lease renewed {age:.0f} s ago" if age is not None else ", no lease yet"
        super().__init__(f"{run_dir} is owned by another process ({holder}{age_text}){detail}")


class LeaseFileError(ValueError):
    """A run folder whose lock or lease path is taken by something that is not a file."""


def lease_timeout():
    """Seconds after which a lease that was not renewed may be taken over: MTL_LEASE_TIMEOUT or 600."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not MIN_TIMEOUT <= value <= MAX_TIMEOUT:
        raise ValueError(f"{TIMEOUT_ENV}={text!r}: expected a number of seconds from {MIN_TIMEOUT} to "
                         f"{MAX_TIMEOUT:.0f} (7 days)")
    return value


def is_lock_file(name):
    """True for the files this module keeps in a run folder (not part of the run)."""
    return name in LOCK_FILES or atomic.is_temporary(name, of=LEASE)


def run_files(run_dir):
    """The names in run_dir, sorted, without the lock's own files: [] for a folder holding no run."""
    return sorted(p.name for p in Path(run_dir).iterdir() if not is_lock_file(p.name))


# ------------------------------------------------------------------ processes


def _proc_stat(pid):
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def process_start(pid):
    """The start time of process pid in clock ticks since boot (Linux), to tell a reused pid; else None."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def pid_alive(pid):
    """Whether process pid exists and has not exited (a zombie, exited but not reaped, counts as gone)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    return not (fields and fields[0] in ("Z", "X"))


@functools.cache
def _node():
    """This kernel boot and pid namespace: where a pid means the same process (None without /proc)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def _warn(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the lease


def read_lease(path):
    """The lease as a dict, None when there is none, {} when it is unreadable."""
    try:
        lease = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return lease if isinstance(lease, dict) else {}


def _describe(lease):
    return f"{lease.get('host', 'unknown host')} pid {lease.get('pid', '?')}"


def _verdict(lease, now, timeout):
    """(takeover, reason, age) for a lease found while holding the flock; takeover False means
    busy. A renewal time ahead of this clock by up to `timeout` is a live owner whose clock runs
    ahead (age 0); further ahead, or not a finite number, the lease is unreadable."""
    pid, renewed = lease.get("pid"), lease.get("renewed")
    if (not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= MAX_PID
            or not isinstance(renewed, (int, float)) or isinstance(renewed, bool) or not math.isfinite(renewed)):
        return True, "its lease is unreadable", None
    age = now - renewed
    if -age > timeout:
        return True, (f"its lease says it was renewed {-age:.0f} s in the future, beyond {TIMEOUT_ENV} "
                      f"({timeout:.0f} s): {lease.get('host', 'its host')}'s clock is that far ahead, or the "
                      f"lease is damaged"), None
    age = max(age, 0.0)
    if lease.get("host") == socket.gethostname() and lease.get("node") == _node():
        if pid == os.getpid():  # we hold the flock, so no ownership of ours is live
            return True, "an ownership of this process that was not released", age
        if not pid_alive(pid):
            return True, f"its process is not running (lease renewed {age:.0f} s ago)", age
        start = lease.get("process_start")
        if start is not None and process_start(pid) not in (None, start):
            return True, f"pid {pid} is now another process (lease renewed {age:.0f} s ago)", age
    if age >= timeout:
        return True, f"its lease was not renewed for {age:.0f} s ({TIMEOUT_ENV} {timeout:.0f} s)", age
    return False, "", age


def live_owner(run_dir):
    """The lease of the process that owns run_dir, when acquire() would find it busy, else None.

    Read-only: it takes no lock, so asking never makes a run that starts at that moment busy,
    and it means the same on every node of a shared file system (the lease, not flock, which
    some network file systems keep per node).
    """
    lease = read_lease(Path(run_dir) / LEASE)
    if not lease:
        return None
    takeover, _, _ = _verdict(lease, time.time(), lease_timeout())
    return None if takeover else lease


class RunOwnership:
    """Ownership of one run folder; release() (or leaving the with block, or exiting) gives it up."""

    def __init__(self, run_dir, fd, heartbeat, on_lost):
        self.run_dir, self.lease_path = Path(run_dir), Path(run_dir) / LEASE
        self._fd, self._pid = fd, os.getpid()
        self._mutex, self._stop = threading.Lock(), threading.Event()
        self._on_lost = on_lost
        now = time.time()
        self.lease = {"host": socket.gethostname(), "node": _node(), "pid": self._pid,
                      "process_start": process_start(self._pid), "started": now, "renewed": now}
        self.lost = False
        self._write_lease()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True,
                                        name=f"lease {self.run_dir}")
        self._thread.start()
        _held.add(self)
        atexit.register(self.release)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def _mine(self, lease):
        return all(lease.get(k) == self.lease[k] for k in ("host", "node", "pid", "started"))

    def _write_lease(self):
        self.lease["renewed"] = time.time()
        atomic.write_text(self.lease_path, json.dumps(self.lease) + "\n")

    def _beat(self, interval):
        while not self._stop.wait(interval):
            with self._mutex:
                if self._stop.is_set():
                    return
                try:
                    lease = read_lease(self.lease_path)
                    if lease is not None and not self._mine(lease):
                        self.lost = True
                    else:
                        self._write_lease()
                except OSError as e:
                    _warn(f"could not renew the lease of {self.run_dir}: {e}")
            if self.lost:
                _warn(f"{self.run_dir} was taken over by {_describe(lease)}; this process no longer owns it")
                (self._on_lost or _terminate_self)(self)
                return

    def release(self):
        """Stop the heartbeat, remove the lease (if still ours) and unlock. Idempotent; a no-op in a
        forked child, which does not own the folder."""
        if os.getpid() != self._pid:
            return
        self._stop.set()
        with self._mutex:
            if self._fd is None:
                return
            try:
                if self._mine(read_lease(self.lease_path) or {}):
                    self.lease_path.unlink(missing_ok=True)
            except OSError as e:
                _warn(f"could not remove {self.lease_path}: {e}")
            finally:
                _unlock_and_close(self._fd)
                self._fd = None
                _held.discard(self)
                atexit.unregister(self.release)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


def _terminate_self(ownership):
    """The default when the folder was taken over: stop this run (SIGTERM) rather than write on."""
    os.kill(os.getpid(), signal.SIGTERM)


def _unlock_and_close(fd):
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


def acquire(run_dir, create=False, heartbeat=None, on_lost=None):
    """Own run_dir for the life of this process (until release()) or raise RunBusy.

    create=True makes the folder (and its parents) first; check its contents (run_files) only
    after this returns, under the lock. heartbeat: seconds between lease renewals (default 60,
    at most a third of the lease timeout). on_lost(ownership): called from the heartbeat thread
    if another process takes the folder over (default: SIGTERM to this process).
    """
    run_dir = Path(run_dir)
    timeout = lease_timeout()
    heartbeat = min(DEFAULT_HEARTBEAT if heartbeat is None else heartbeat, timeout / 3)
    if not heartbeat > 0:
        raise ValueError(f"acquire: heartbeat {heartbeat!r} is not a positive number of seconds")
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)
    elif not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    for name in (LOCK, LEASE):
        if (run_dir / name).exists() and not (run_dir / name).is_file():
            raise LeaseFileError(f"{run_dir / name}: not a file; it is where the run's "
                                 f"{'lock' if name == LOCK else 'lease'} file goes, so no process can own "
                                 f"{run_dir}; remove it")
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live process holds it
            lease = read_lease(run_dir / LEASE) or {}
            renewed = lease.get("renewed")
            known = isinstance(renewed, (int, float)) and not isinstance(renewed, bool) and math.isfinite(renewed)
            raise RunBusy(run_dir, lease.get("host"), lease.get("pid"),
                          max(time.time() - renewed, 0.0) if known else None) from None
        except OSError as e:  # no flock on this file system (ENOLCK, EOPNOTSUPP, ...): the lease only
            _warn(f"{run_dir}: file locks are not available ({e}); relying on the lease alone")
        lease = read_lease(run_dir / LEASE)
        if lease is not None:
            now = time.time()
            takeover, reason, age = _verdict(lease, now, timeout)
            if not takeover:
                raise RunBusy(run_dir, lease.get("host"), lease.get("pid"), age,
                              f"; a lease not renewed for {timeout:.0f} s ({TIMEOUT_ENV}) may be taken over")
            _log_takeover(run_dir, lease, reason)
        ownership = RunOwnership(run_dir, fd, heartbeat, on_lost)
    except BaseException:
        _unlock_and_close(fd)
        raise
    return ownership


def _log_takeover(run_dir, lease, reason):
    message = f"taking over {run_dir} from {_describe(lease)}: {reason}"
    _warn(message)
    with contextlib.suppress(OSError), open(run_dir / LEASE_LOG, "a") as f:
        f.write(f"{datetime.now().isoformat(timespec='seconds')} {socket.gethostname()} pid {os.getpid()}: "
                f"{message}\n")


# A forked child (a DataLoader worker) shares the parent's lock; it must not keep it after the
# parent dies, nor release the parent's ownership.
_held = set()


def _forget_held_in_child():
    for ownership in list(_held):
        with contextlib.suppress(OSError):
            os.close(ownership._fd)
        ownership._fd = None
    _held.clear()


# ------------------------------------------------------------------ parent-death watchdog

_PR_SET_PDEATHSIG = 1
_fork_state = {"libc": None, "parent": None}


def _wait_for_exit(pid, poll):
    """Return once process pid has exited (pidfd where available, else polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        while pid_alive(pid):
            time.sleep(poll)
        return
    try:
        select.select([fd], [], [])  # readable once the process has exited (zombie included)
    finally:
        os.close(fd)


def exit_with_parent(pid, grace=1.0, poll=0.2, children=True):
    """End this process when process pid dies (also when it already has).

    A daemon thread waits for pid; then SIGTERM goes to this process (a handler can stop the run
    cleanly) and, if it is still alive `grace` seconds later, os._exit(143). Once the SIGTERM is sent,
    the process exits with 143 as soon as it reaches its exit handlers: the rest of them and the
    interpreter's teardown (seconds with torch loaded) are skipped. children=True (Linux):
    processes this one forks from its main thread (os.fork, multiprocessing's fork, DataLoader
    workers) get SIGKILL when it exits, instead of outliving it for a few seconds.
    Returns the thread.
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"exit_with_parent: {pid!r} is not a process id")
    if children and sys.platform.startswith("linux"):
        _fork_state["libc"] = ctypes.CDLL(None, use_errno=True)

    def watch():
        _wait_for_exit(pid, poll)
        _warn(f"parent process {pid} is gone; stopping process {os.getpid()}")
        atexit.register(_exit_at_once)  # runs first: exit handlers run in reverse order
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        _exit_at_once()

    thread = threading.Thread(target=watch, daemon=True, name=f"exit with {pid}")
    thread.start()
    return thread


def _exit_at_once():
    """Exit as stopped by SIGTERM, skipping the interpreter's teardown."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(stopped_by(signal.SIGTERM))


def exit_with_parent_from_env(environ=None):
    """exit_with_parent($MTL_PARENT_PID) when that variable is set; returns the pid or None."""
    text = (os.environ if environ is None else environ).get(PARENT_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{PARENT_ENV}={text!r}: expected a process id")
    exit_with_parent(int(text))
    return int(text)


def _before_fork():
    _fork_state["parent"] = os.getpid() if threading.current_thread() is threading.main_thread() else None


def _after_fork_in_child():
    _forget_held_in_child()
    parent, _fork_state["parent"] = _fork_state["parent"], None
    if not (_fork_state["libc"] and parent):
        return
    # The death signal follows the forking thread: only forks from the main thread get it.
    _fork_state["libc"].prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(stopped_by(signal.SIGKILL))


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
