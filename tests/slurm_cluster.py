"""A one-node Slurm cluster for tests: munged, slurmctld and slurmd started as root in a temporary
folder, with one fake GPU (a character device) that gres.conf splits into four shards.

Each daemon runs in the foreground in its own process group (setsid) and is stopped by that group,
after every job of the cluster has been cancelled. Clients find the cluster through SLURM_CONF.
"""
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "mknod")
SHARDS = 4
START_TIMEOUT_S = 30


def tool(name):
    return shutil.which(name, path=SEARCH_PATH)


def unavailable():
    """Why a cluster cannot start on this machine, or None."""
    if os.geteuid() != 0:
        return "a one-node Slurm needs root (slurmd, mknod of the fake GPU)"
    absent = [name for name in TOOLS if tool(name) is None]
    if absent:
        return f"Slurm is not installed (no {', '.join(absent)}; apt-get install slurmctld slurmd slurm-client munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user (apt-get install munge)"
    return None


def skip_unless_available(reason):
    """Skip for `reason`; under CI (CI=true) the cluster tests must run, so fail instead."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the Slurm tests: {reason}")
    pytest.skip(reason)


@dataclass
class Cluster:
    folder: Path
    conf: Path
    env: dict  # os.environ plus SLURM_CONF: the environment of a client of this cluster

    def client(self, *argv, check=True):
        """A Slurm client command (squeue, scancel, ...) against this cluster; its stdout."""
        done = subprocess.run([tool(argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True,
                              timeout=60, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def logs(self):
        """The last lines of the daemons' logs, for a failure message."""
        tails = []
        for log in sorted(self.folder.rglob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            tails.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(tails)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(folder, host, munge_socket, gpu):
    """The lines measured to work for one node run by root without systemd."""
    return f"""\
ClusterName=test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu,shard
NodeName={host} NodeAddr=127.0.0.1 CPUs=8 RealMemory=8000 Gres=gpu:1,shard:{SHARDS} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""", f"Name=gpu File={gpu}\nName=shard Count={SHARDS} File={gpu}\n"


def _start(argv, log, env, user=None):
    """A daemon in the foreground, in a process group of its own (as `user`: no runuser between,
    so that stopping it reaps it)."""
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                **as_user)


def _stop(proc):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _munged(munge_dir, env):
    """munged as user munge, with its key, socket, pid, seed and log in munge_dir (owned by munge:
    munged refuses files that others could change)."""
    user = pwd.getpwnam("munge")
    os.chown(munge_dir, user.pw_uid, user.pw_gid)
    munge_dir.chmod(0o711)  # clients must reach the socket
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    os.chown(key, user.pw_uid, user.pw_gid)
    socket_path = munge_dir / "munge.socket"
    proc = _start([tool("munged"), "--foreground", f"--key-file={key}", f"--socket={socket_path}",
                   f"--pid-file={munge_dir}/munged.pid", f"--seed-file={munge_dir}/munged.seed",
                   f"--log-file={munge_dir}/munged.log"], munge_dir / "munged.out", env, user)
    return proc, socket_path


def _wait_until_idle(cluster, procs):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        dead = [p.args[0] for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited while the cluster started\n{cluster.logs()}")
        if cluster.client("sinfo", "-h", "-N", "-o", "%t", check=False).strip() == "idle":
            return
        time.sleep(0.2)
    raise RuntimeError(f"the node was not idle after {START_TIMEOUT_S} s\n{cluster.logs()}")


def _cancel_all_jobs(cluster):
    """Every job of this cluster cancelled and gone from the queue: their processes (slurmstepd's
    sessions, not ours) end with them. SIGKILL for jobs still there after 30 s."""
    user = ("--user", pwd.getpwuid(os.getuid()).pw_name)
    for scancel, wait_s in ((("scancel", *user), 30), (("scancel", "--full", "--signal=KILL", *user), 10)):
        cluster.client(*scancel, check=False)
        deadline = time.monotonic() + wait_s
        while cluster.client("squeue", "--noheader", check=False).strip():
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        else:
            return


@contextlib.contextmanager
def running(folder):
    """A started one-node cluster in `folder`; everything stopped on leaving, however it is left."""
    folder = Path(folder)
    host = socket.gethostname()
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    gpu = folder / "nvidia0"
    subprocess.run([tool("mknod"), str(gpu), "c", "195", "0"], check=True)  # GRES refuses a plain file
    # Out of pytest's folders, which only root may enter: munged runs as munge.
    munge_dir = Path(tempfile.mkdtemp(prefix="munge-"))
    conf = folder / "slurm.conf"
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs = []
    cluster = Cluster(folder, conf, env)
    try:
        munged, munge_socket = _munged(munge_dir, env)
        procs.append(munged)
        slurm_conf, gres_conf = _slurm_conf(folder, host, munge_socket, gpu)
        conf.write_text(slurm_conf)
        (folder / "gres.conf").write_text(gres_conf)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not munge_socket.exists() and munged.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        procs.append(_start([tool("slurmctld"), "-D", "-i", "-f", str(conf)], folder / "slurmctld.out", env))
        procs.append(_start([tool("slurmd"), "-D", "-N", host, "-f", str(conf)], folder / "slurmd.out", env))
        _wait_until_idle(cluster, procs)
        yield cluster
    finally:
        if len(procs) == 3:
            _cancel_all_jobs(cluster)
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(munge_dir, ignore_errors=True)
