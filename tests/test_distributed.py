"""One run across processes (torchrun, gloo on the CPU) equals one process with the same
global batch: a training step's gradients and update, BatchNorm included; whole runs'
metrics.jsonl; resume across the two; and the pieces (shards, synced BatchNorm, meters)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import distributed_step
import pytest
import torch
from torch import nn

from data import synthcity
from experiment.world import ShardedBatches, World, shard
from models.synced_batchnorm import SyncedBatchNorm2d, synchronise_batchnorm
from scripts import gradient_sensitivity

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

REPO = Path(__file__).resolve().parent.parent
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args, nproc=2, timeout=600, cwd=REPO):
    """`python -m torch.distributed.run --nproc-per-node nproc ...` on a free port, one thread each."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(nproc), *map(str, args)], cwd=cwd, env=ONE_THREAD, capture_output=True, text=True, check=False,
                          timeout=timeout)


def close(a, b, rel=1e-10, abs_=1e-12):
    return torch.allclose(a, b, rtol=rel, atol=abs_)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """What each of 2 gloo processes recorded for every case of tests/distributed_step.py."""
    out = tmp_path_factory.mktemp("steps")
    done = torchrun(REPO / "tests" / "distributed_step.py", out)
    assert done.returncode == 0, done.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("case", distributed_step.GRADIENT_CASES, ids=lambda c: f"{c[0]}+{c[1]}-batch{c[2]}")
@pytest.mark.usefixtures("seeded_and_restored")
def test_a_step_across_two_processes_equals_the_full_batch_step(two_processes, case):
    """float64, BatchNorm in training mode, uneven valid-pixel counts (batch 3: shards of 1 and
    2 samples; batch 1: one process with an empty shard): per-task gradients, parameters,
    BatchNorm buffers and losses equal the single process's, on both processes alike."""
    single = distributed_step.steps(*case)
    for seen in two_processes:
        got = seen[case]
        for step in range(distributed_step.STEPS):
            assert got["losses"][step] == pytest.approx(single["losses"][step], rel=1e-12)
            for g, want in zip(got["grads"][step], single["grads"][step]):
                assert (g is None) == (want is None)
                assert g is None or close(g, want)
            if single["task_grads"][step] is not None:
                for task, want_task in zip(got["task_grads"][step], single["task_grads"][step]):
                    for g, want in zip(task, want_task):
                        assert g is None or close(g, want)
            for p, want in zip(got["params"][step], single["params"][step]):
                assert close(p, want)
            for b, want in zip(got["buffers"][step], single["buffers"][step]):
                assert close(b.double(), want.double())
    assert case[1] != "pcgrad" or single["task_grads"][0] is not None  # AdaTask: per-task contributions compared


@pytest.mark.usefixtures("seeded_and_restored")
def test_every_weighting_under_both_optimizers_takes_the_full_batch_steps(two_processes):
    """Random draws (PCGrad, RLW, GradDrop), look-aheads (HydaLearn), FAMO's extra forward and
    learned weights (UW, GradNorm, IMTL-L) all agree: two steps end at the single process's
    parameters (solvers with tolerances: within 1e-6), identical on both processes."""
    failures = []
    for case in distributed_step.EVERY_WEIGHTING:
        single = distributed_step.steps(*case)
        rank0, rank1 = (seen[case] for seen in two_processes)
        for p0, p1, want in zip(rank0["params"][-1], rank1["params"][-1], single["params"][-1]):
            if not torch.equal(p0, p1) or not torch.allclose(p0, want, rtol=1e-6, atol=1e-9):
                failures.append(f"{case}: {float((p0 - want).abs().max()):.2e} from one process, "
                                f"{float((p0 - p1).abs().max()):.2e} between the two")
                break
    assert not failures, "\n".join(failures)


def test_shards_cover_each_global_batch_in_order():
    assert [shard(list(range(7)), r, 2) for r in range(2)] == [[0, 1, 2], [3, 4, 5, 6]]
    assert [shard([9], r, 2) for r in range(2)] == [[], [9]]
    order = list(range(10))
    per_rank = [list(ShardedBatches(order, 4, r, 2)) for r in range(2)]
    assert per_rank == [[[0, 1], [4, 5], [8]], [[2, 3], [6, 7], [9]]]
    assert list(ShardedBatches(order, 4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_batch_size_must_split_across_the_processes():
    with pytest.raises(ValueError, match="--batch-size 5: .* 2 processes.*multiple of 2"):
        World(rank=0, size=2).check_batches(5, {"train": 16})
    with pytest.raises(ValueError, match="val split has 1 samples, fewer than the 2 processes"):
        World(rank=0, size=2).check_batches(4, {"train": 16, "val": 1})
    World().check_batches(5, {"train": 1})  # one process: anything goes


@pytest.mark.usefixtures("seeded_and_restored")
def test_float32_gradients_jump_where_float64_ones_do_not():
    """Why the whole-run tests below use --dtype float64: one rounding unit of input change
    moves float32 gradients by orders of magnitude more than its size, float64 ones not."""
    threads = torch.get_num_threads()
    rows = gradient_sensitivity.main([])
    assert torch.get_num_threads() == threads  # later tests in this process compare runs with their threads
    assert rows["float32"][0] > 1e3 * torch.finfo(torch.float32).eps
    assert rows["float64"][1] < 1e-10


@pytest.mark.usefixtures("seeded_and_restored")
def test_synced_batchnorm_is_batchnorm_with_one_process():
    """Outside torch.distributed it is nn.BatchNorm2d bit for bit, with the same state_dict keys."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None))
    synced = synchronise_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None)))
    synced.load_state_dict(plain.state_dict())
    assert isinstance(synced[1], SyncedBatchNorm2d) and plain.state_dict().keys() == synced.state_dict().keys()
    x = torch.randn(5, 3, 8, 8)
    assert torch.equal(plain(x), synced(x))
    assert torch.equal(plain[1].running_var, synced[1].running_var)


# ---------------------------------------------------------------- whole runs

def run_flags(data, out, name, epochs=2):
    """float64: in float32 a rounding-sized change of the input moves SegNet's gradients by up
    to 1e-2 (scripts/gradient_sensitivity.py), so two float32 runs whose sums differ in order
    drift apart within a few steps (docs/torchrun.md, "Why float64 for those tests"). AdaTask with PCGrad:
    per-task moments, per-task gradients and their flat all-reduce, in a whole run."""
    return ["--data-path", data, "--epochs", epochs, "--batch-size", 4, "--width-mult", 0.125, "--num-workers", 0,
            "--device", "cpu", "--seed", 3, "--out", out, "--name", name, "--method", "adam_with_adatask",
            "--weighting", "pcgrad", "--dtype", "float64"]


def metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def assert_same_metrics(got, want, path=""):
    """Every number within 1e-4 relative; mIoU and pixel accuracy within 1e-3 relative, which
    one pixel of the tiny test set moves them by; a class's IoU within 1e-3 absolute (one pixel
    of a rare class moves it by more than 1e-3 relative)."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), path
        for key in want:
            assert_same_metrics(got[key], want[key], f"{path}/{key}")
    elif isinstance(want, float):
        coarse = any(k in path for k in ("miou", "pix_acc"))
        tolerance = {"abs": 1e-3} if "class_iou" in path else {"rel": 1e-3 if coarse else 1e-4, "abs": 1e-9}
        assert got == pytest.approx(want, **tolerance), path
    else:
        assert got == want, path


def one_process(*args):
    return subprocess.run([sys.executable, "main_cityscapes.py", *map(str, args)], cwd=REPO, env=ONE_THREAD,
                          capture_output=True, text=True, check=False, timeout=600)


@pytest.fixture(scope="module")
def single_process_run(tiny_synthcity, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    done = one_process(*run_flags(tiny_synthcity, out, "run"))
    assert done.returncode == 0, done.stderr[-4000:]
    return out / "run"


@pytest.fixture(scope="module")
def two_process_run(tiny_synthcity, tmp_path_factory):
    """(the out folder, torchrun's CompletedProcess) of 2 epochs in 2 processes."""
    out = tmp_path_factory.mktemp("two")
    return out, torchrun("main_cityscapes.py", *run_flags(tiny_synthcity, out, "run"))


def test_torchrun_two_processes_match_one_process_and_write_one_folder(two_process_run, single_process_run):
    out, done = two_process_run
    assert done.returncode == 0, done.stderr[-4000:]
    assert [p.name for p in out.iterdir()] == ["run"]
    assert done.stdout.count("results in") == 1  # rank 0 alone speaks
    got, want = metrics(out / "run"), metrics(single_process_run)
    assert len(got) == 2
    for g, w in zip(got, want):
        assert_same_metrics(g, w)
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["environment"]["processes"] == 2


def test_a_torchrun_checkpoint_resumes_in_one_process_and_back(tiny_synthcity, single_process_run, two_process_run,
                                                               tmp_path):
    """1 epoch under torchrun, extended to 2 by one process; and 1 epoch in one process,
    extended under torchrun (rank 0 reads the checkpoint, the other receives it): both equal
    the uninterrupted single-process run. The torchrun epoch is bitwise the 2-epoch torchrun
    run's first."""
    done = torchrun("main_cityscapes.py", *run_flags(tiny_synthcity, tmp_path, "a", epochs=1))
    assert done.returncode == 0, done.stderr[-4000:]
    assert metrics(tmp_path / "a") == metrics(two_process_run[0] / "run")[:1]
    done = one_process("--resume", tmp_path / "a", "--epochs", 2)
    assert done.returncode == 0, done.stderr[-4000:]
    done = one_process(*run_flags(tiny_synthcity, tmp_path, "b", epochs=1))
    assert done.returncode == 0, done.stderr[-4000:]
    done = torchrun("main_cityscapes.py", "--resume", tmp_path / "b", "--epochs", 2)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "resuming" in done.stdout
    want = metrics(single_process_run)
    for name in ("a", "b"):
        for g, w in zip(metrics(tmp_path / name), want, strict=True):
            assert_same_metrics(g, w)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_meet_through_torchruns_rendezvous(tiny_synthcity, two_process_run, tmp_path):
    """Two torchrun agents of one process each, as on two nodes (c10d rendezvous): one run
    folder, and the same first epoch, bit for bit, as 2 processes under one agent."""
    endpoint = f"127.0.0.1:{free_port()}"
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node",
                                "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "nodes",
                                "main_cityscapes.py", *map(str, run_flags(tiny_synthcity, tmp_path, "run", epochs=1))],
                               cwd=REPO, env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    try:
        outputs = [agent.communicate(timeout=600) for agent in agents]
    finally:
        for agent in agents:
            agent.kill()
    assert [agent.returncode for agent in agents] == [0, 0], [err[-3000:] for _, err in outputs]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert metrics(tmp_path / "run") == metrics(two_process_run[0] / "run")[:1]


def test_short_last_batches_leave_a_process_an_empty_shard(tmp_path):
    """17 training and 9 test samples in batches of 4: the last batch of each split holds one
    sample, so rank 0's shard is empty; it still runs (train step, BatchNorm, meters), and the
    epoch equals one process's."""
    data = synthcity.generate(tmp_path / "odd", n_train=17, n_val=9, height=32, width=64, seed=4, progress=False)
    flags = run_flags(data, tmp_path, "one", epochs=1)
    assert one_process(*flags).returncode == 0
    flags[flags.index("--name") + 1] = "two"
    done = torchrun("main_cityscapes.py", *flags)
    assert done.returncode == 0, done.stderr[-4000:]
    for got, want in zip(metrics(tmp_path / "two"), metrics(tmp_path / "one"), strict=True):
        assert_same_metrics(got, want)


def test_torchrun_refuses_a_batch_that_does_not_split(tiny_synthcity, tmp_path):
    flags = run_flags(tiny_synthcity, tmp_path, "run")
    flags[flags.index("--batch-size") + 1] = 3
    done = torchrun("main_cityscapes.py", *flags)
    assert done.returncode != 0
    assert "--batch-size 3: the global batch is split across the 2 processes" in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_process_killed_under_torchrun_leaves_one_line_and_the_torchrun_that_continues(tiny_synthcity, tmp_path):
    """kill -9 of rank 1 made rank 0 print gloo's raw traceback."""
    launch = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               "main_cityscapes.py", *map(str, run_flags(tiny_synthcity, tmp_path, "run", epochs=200))],
                              cwd=REPO, env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "run" / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = subprocess.run(["pgrep", "-P", str(launch.pid)], capture_output=True, text=True, check=False)
        ranks = sorted(int(pid) for pid in workers.stdout.split())
        assert len(ranks) == 2, workers.stdout
        os.kill(ranks[1], signal.SIGKILL)  # the second worker torchrun started: rank 1
        output = launch.communicate(timeout=120)[0]
    finally:
        launch.kill()
    # rank 0's collective fails, or torchrun, seeing rank 1 gone, stops rank 0 first: one line either way
    assert "error: another process of this run is gone (" in output or "stopped by SIGTERM; " in output, \
        output[-3000:]
    assert "[rank0]: Traceback" not in output
    assert f"continue with: {Path(sys.executable).name}" not in output  # the command is a torchrun
    assert f"-m torch.distributed.run --nproc-per-node 2 main_cityscapes.py --resume {tmp_path / 'run'}" in output
