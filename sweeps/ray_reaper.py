"""Nothing that a sweep's own Ray started outlives the sweep, even a sweep killed with SIGKILL.

`reaped_on_exit()` (ray_backend.connected, around the Ray it starts without --ray-address) starts
`python -m sweeps.ray_reaper SWEEP_PID` in a session of its own, its stdin a pipe whose only
writer is the sweep. Until that pipe closes, which it does when the sweep ends however it ends,
the reaper follows the sweep's descendants (Ray's servers, the raylet's agents and workers, the
workers' runs), holding a pidfd of each, every POLL seconds. Then it sends SIGTERM to those still
alive, SIGKILL to those left GRACE seconds later, and exits. Descent is what identifies them: Ray
retitles its agents and workers (ray::DashboardAgent, ray::IDLE), which erases the session from
their command lines and even their environment, and the raylet's death does not end its agents
for a minute or so. Processes of another Ray (another sweep's, a cluster's) descend from
another process and are never touched; a pidfd never signals a process that reused a pid.
"""
import os
import select
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

POLL = 1.0  # seconds between looks at the sweep's descendants
GRACE = 3.0  # seconds between SIGTERM (a run stops cleanly) and SIGKILL
REPO = Path(__file__).resolve().parent.parent


@contextmanager
def reaped_on_exit():
    """This process's descendants (what it starts inside the block, Ray) are stopped when the
    block ends or this process dies; on a normal end, waited for."""
    reaper = subprocess.Popen([sys.executable, "-m", "sweeps.ray_reaper", str(os.getpid())], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, cwd=REPO, start_new_session=True)  # no Ctrl-C of ours
    try:
        yield
    finally:
        reaper.stdin.close()
        reaper.wait()


def parent(pid):
    """The parent pid of process pid, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[1])  # after the name, which may hold ") "


class Descendants:
    """The descendants of process `root` seen so far, as pidfds: still theirs once reparented
    (their parent died) and never another process, whatever reuses their pids."""

    def __init__(self, root):
        self.root, self.root_pidfd, self.pidfds = root, os.pidfd_open(root), {}

    def look(self):
        """Adds the processes whose parent is the root or one already seen; forgets the ended."""
        for pid, fd in list(self.pidfds.items()):
            if ended(fd):
                os.close(fd)
                del self.pidfds[pid]
        # The root only while it lives: once it has ended, its pid may be another process's.
        family = {*self.pidfds} | (set() if ended(self.root_pidfd) else {self.root})
        parent_of = {pid: parent(pid) for pid in map(int, filter(str.isdigit, os.listdir("/proc")))}
        new = [pid for pid, ppid in parent_of.items() if ppid in family and pid not in family]
        while new:  # those found, then their children, down the tree
            pid = new.pop()
            if pid == os.getpid():
                continue
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # ended meanwhile
                continue
            # Its parent read again through the pidfd's process: a pid reused before the pidfd
            # was opened belongs to a process of no parent of ours.
            if parent(pid) not in family:
                os.close(fd)
                continue
            self.pidfds[pid] = fd
            family.add(pid)
            new += [child for child, ppid in parent_of.items() if ppid == pid and child not in family]

    def signal(self, sig):
        """Sends sig to those alive; returns how many they were."""
        alive = 0
        for fd in self.pidfds.values():
            try:
                signal.pidfd_send_signal(fd, sig)
            except ProcessLookupError:
                continue
            alive += not ended(fd)
        return alive


def ended(pidfd):
    """Whether the pidfd's process has exited (a zombie has)."""
    return bool(select.select([pidfd], [], [], 0)[0])


def reap(descendants, grace=GRACE, poll=0.2):
    """SIGTERM to the descendants, once; SIGKILL to those left (or started meanwhile) after `grace`
    seconds, until none is left or another `grace` seconds have passed."""
    descendants.look()
    if not descendants.signal(signal.SIGTERM):
        return
    for sig in (0, signal.SIGKILL):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            descendants.look()
            if not descendants.signal(sig):
                return
            time.sleep(poll)


def main(argv):
    if len(argv) != 1 or not argv[0].isdigit():
        sys.exit("usage: python -m sweeps.ray_reaper SWEEP_PID, its stdin a pipe from the sweep "
                 "(see sweeps/ray_reaper.py)")
    descendants = Descendants(int(argv[0]))
    while True:
        descendants.look()
        if select.select([sys.stdin], [], [], POLL)[0]:  # end of file: the sweep closed the pipe or died
            break
    reap(descendants)


if __name__ == "__main__":
    main(sys.argv[1:])
