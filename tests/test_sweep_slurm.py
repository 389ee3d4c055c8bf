"""The Slurm backend (sweeps/slurm.py) on a real one-node Slurm with a fake GPU (conftest's
one_node_slurm): a sweep that finishes, an element cancelled mid-run that resumes when the sweep
is submitted again, scripts/sweep.sh --backend slurm, a run of two processes through torchrun,
and dry runs that only print the sbatch options."""
import argparse
import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import slurm_cluster

from runfolder.exit_codes import EXIT_BUSY
from sweeps import plan, runner, slurm

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster(request):
    """The one-node Slurm, once submitit is known to be there."""
    if importlib.util.find_spec("submitit") is None:
        slurm_cluster.skip_unless_available("submitit is not installed (pip install -r requirements-cluster.txt)")
    return request.getfixturevalue("one_node_slurm")


def train_flags(data):
    """Three epochs of four steps: a run can be cancelled after its first checkpoint."""
    return ("--data-path", str(data), "--epochs", "3", "--batch-size", "4", "--width-mult", "0.125",
            "--num-workers", "0", "--device", "cpu")


def four_runs(data):
    return plan.build_plan(["adam"], ["ew", "dwa"], seeds=(0, 1), extra=train_flags(data))


def options(sweep, **changes):
    """The options scripts/sweep.sh gives the backend; one torch thread per run, 500 MB per job."""
    return argparse.Namespace(**{
        "sweep": sweep, "runs": "runs", "results": "results", "backend": "slurm", "python": sys.executable,
        "runs_per_gpu": 1, "gpus_per_run": 1, "threads": 1, "cpu_only": False, "slurm_partition": None, "slurm_time": 10,
        "slurm_mem": "500M", "slurm_cpus_per_run": 1, "slurm_array_parallelism": None, "slurm_packing": "shards",
        "dry_run": False, "wait": True, **changes})


def rows_without_wall_clock(run_dir):
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


def submissions(sweep_dir):
    return [json.loads(line) for line in (sweep_dir / slurm.FOLDER / slurm.SUBMISSIONS).read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(cluster, tmp_path_factory, tiny_synthcity):
    """Four runs side by side in one element that holds the fake GPU (--slurm-packing inside),
    run to their end."""
    sweep_dir = tmp_path_factory.mktemp("slurm-sweeps") / "reference"
    runs = four_runs(tiny_synthcity)
    opts = options("reference", runs_per_gpu=4, slurm_packing="inside", threads=None)
    return sweep_dir, runs, opts, slurm.run(sweep_dir, runs, opts)


def test_four_runs_side_by_side_in_one_element_share_its_gpu_and_finish(reference):
    sweep_dir, runs, opts, statuses = reference
    assert statuses == {run.name: 0 for run in runs}
    for run in runs:
        assert (sweep_dir / run.name / "summary.json").exists()
        assert (sweep_dir / f"{run.name}.exit").read_text() == "0\n"
        assert re.search(r"start CUDA_VISIBLE_DEVICES=0: .* --threads 1 ", (sweep_dir / f"{run.name}.log").read_text())
    [script] = (sweep_dir / slurm.FOLDER).glob("*_submission.sh")
    written = script.read_text().splitlines()
    shown = slurm.sbatch_flags(slurm.sbatch_parameters(opts, 1), 1)
    assert {"--cpus-per-task=4", "--gres=gpu:1", "--mem=2000M", "--requeue"} <= set(shown)
    assert [f"#SBATCH {flag}" for flag in shown if f"#SBATCH {flag}" not in written] == []  # the dry run's options
    [record] = submissions(sweep_dir)
    assert list(record["elements"].values()) == [[run.name for run in runs]]


def test_a_cancelled_array_element_resumes_when_sweep_sh_submits_the_sweep_again(
        reference, cluster, tmp_path, capsys, tiny_synthcity):
    reference_dir, runs, _, _ = reference
    sweep_dir = tmp_path / "runs" / "cut"
    opts = options("cut", runs_per_gpu=4, wait=False)  # four elements, each on a shard of the fake GPU
    assert slurm.run(sweep_dir, runs, opts) is None
    job = re.search(r"submitted Slurm job (\d+): 4 elements", capsys.readouterr().out)[1]
    # Submitted again while its elements are queued or running: they count as running, nothing is added.
    assert slurm.run(sweep_dir, runs, opts) == {run.name: EXIT_BUSY for run in runs}
    assert len(submissions(sweep_dir)) == 1
    script = (sweep_dir / slurm.FOLDER / f"{job}_submission.sh").read_text()
    assert "#SBATCH --array=0-3%4" in script and "#SBATCH --gres=shard:1" in script
    cut = sweep_dir / runs[0].name
    wait_until(lambda: (cut / "checkpoint.pt").exists(), 240, "the first epoch ends")
    cluster.client("scancel", f"{job}_0")
    wait_until(lambda: f"{job}_0" not in cluster.client("squeue", "--noheader", "--array", "--format=%i").split(),
               60, "the cancelled element leaves the queue")
    assert not (cut / "summary.json").exists(), "the run ended before it was cancelled"

    # Submitted again: the cut run only; the others are finished, or still running and waited for.
    done = subprocess.run(
        [str(REPO / "scripts" / "sweep.sh"), "--backend", "slurm", "--sweep", "cut", "--methods", "adam",
         "--weightings", "ew dwa", "--seeds", "0 1", "--runs", str(tmp_path / "runs"), "--results",
         str(tmp_path / "results"), "--slurm-mem", "500M", "--slurm-cpus-per-run", "1", "--wait", "--",
         *train_flags(tiny_synthcity)],
        env={**cluster.env, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=400, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    record = submissions(sweep_dir)[-1]
    assert list(record["elements"].values()) == [[runs[0].name]]
    assert "--gres" not in (sweep_dir / slurm.FOLDER / f"{record['job']}_submission.sh").read_text()  # --device cpu
    log = (sweep_dir / f"{runs[0].name}.log").read_text()
    assert re.search(r"resume( CUDA_VISIBLE_DEVICES=\S+)?: .* --resume ", log)
    for run in runs:
        assert rows_without_wall_clock(sweep_dir / run.name) == rows_without_wall_clock(reference_dir / run.name)
    assert (tmp_path / "results" / "cut.md").exists()


def test_sweep_sh_dry_run_submits_nothing_to_the_cluster(cluster, tmp_path):
    queue = cluster.client("squeue", "--noheader", "--array", "--format=%i")
    done = subprocess.run(
        [str(REPO / "scripts" / "sweep.sh"), "--backend", "slurm", "--sweep", "dry", "--methods", "adam",
         "--seeds", "0 1", "--runs", str(tmp_path / "runs"), "--runs-per-gpu", "2", "--slurm-packing", "inside",
         "--slurm-mem", "4G", "--dry-run", "--", "--data-path", "/data/tiny", "--epochs", "3"],
        env={**cluster.env, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  --gres=gpu:1\n" in done.stdout and "  --mem=8G\n" in done.stdout
    assert "element 0: start adam-ew-s0; start adam-ew-s1" in done.stdout
    assert cluster.client("squeue", "--noheader", "--array", "--format=%i") == queue
    assert not (tmp_path / "runs" / "dry" / slurm.FOLDER).exists()


ALONE = [["adam-dwa-s0"], ["adam-ew-s1"], ["adam-dwa-s1"]]  # one run per element


@pytest.mark.parametrize("packing, per_gpu, cpu_only, resources, elements, per_run", [
    ("shards", 4, False, ["--cpus-per-task=2", "--gres=shard:1", "--mem=8G"], ALONE, 1),
    ("shards", 1, False, ["--cpus-per-task=2", "--gres=gpu:1", "--mem=8G"], ALONE, 1),
    ("inside", 2, False, ["--cpus-per-task=4", "--gres=gpu:1", "--mem=16G"], [["adam-dwa-s0", "adam-ew-s1"],
                                                                            ["adam-dwa-s1"]], 1),
    ("inside", 2, True, ["--cpus-per-task=2", "--mem=8G"], ALONE, 1),
    ("shards", 1, False, ["--cpus-per-task=4", "--gres=gpu:2", "--mem=8G"], ALONE, 2),  # --gpus-per-run 2
    ("inside", 1, False, ["--cpus-per-task=8", "--gres=gpu:4", "--mem=8G"], ALONE, 4),
    ("shards", 1, True, ["--cpus-per-task=4", "--mem=8G"], ALONE, 2),  # two CPU processes per run
])
def test_a_dry_run_prints_the_sbatch_options_and_each_elements_runs_and_submits_nothing(
        tmp_path, capsys, monkeypatch, packing, per_gpu, cpu_only, resources, elements, per_run):
    monkeypatch.setenv("PATH", "")  # no Slurm command can run
    sweep_dir = tmp_path / "s"
    (sweep_dir / "adam-ew-s0").mkdir(parents=True)
    (sweep_dir / "adam-ew-s0" / "summary.json").write_text("{}")
    opts = options("s", dry_run=True, runs_per_gpu=per_gpu, gpus_per_run=per_run, slurm_packing=packing,
                   cpu_only=cpu_only, slurm_partition="gpu", slurm_time=60, slurm_mem="8G", slurm_cpus_per_run=2,
                   slurm_array_parallelism=2, threads=None)
    assert slurm.run(sweep_dir, four_runs("/data/tiny"), opts) is None
    out = capsys.readouterr().out
    assert "4 runs, 1 finished, 0 queued or running in Slurm, 3 to submit" in out
    flags = [line.strip() for line in out.splitlines() if line.startswith("  --")]
    array = [] if len(elements) == 1 else [f"--array=0-{len(elements) - 1}%2"]
    assert flags == sorted([*array, *resources, "--job-name=sweep-s", "--partition=gpu", "--requeue", "--time=60"])
    shown = re.findall(r"element \d+: (.*)", out)
    assert shown == ["; ".join(f"start {name}" for name in names) for names in elements]
    commands = [line for line in out.splitlines() if "main_cityscapes.py" in line]
    assert len(commands) == 3 and all(("--threads 1" in line) == (packing == "inside" and not cpu_only
                                                                  and per_gpu > 1) for line in commands)
    torchrun = f"-m torch.distributed.run --standalone --nproc-per-node {per_run} {runner.MAIN} --method adam "
    assert all((torchrun in line) == (per_run > 1) for line in commands), commands
    assert not (sweep_dir / slurm.FOLDER).exists()


def test_sbatch_parameters_refuse_gpus_per_run_with_runs_per_gpu():
    """The command line refuses the pair for every backend (tests/test_sweep.py); the sbatch
    parameters refuse it too, for a caller that skips the command line."""
    with pytest.raises(slurm.SlurmError, match="--gpus-per-run 2 and --runs-per-gpu 4"):
        slurm.sbatch_parameters(options("s", gpus_per_run=2, runs_per_gpu=4), 1)


def test_a_run_of_two_cpu_processes_is_one_element_running_torchrun(cluster, tmp_path, tiny_synthcity):
    """--gpus-per-run 2 on --device cpu: one element asking for no GPU and twice the CPUs, whose run
    is one torchrun of two gloo processes; one run folder with one metrics row per epoch."""
    sweep_dir = tmp_path / "runs" / "two"
    flags = [*train_flags(tiny_synthcity)]
    flags[flags.index("--epochs") + 1] = "1"
    [run] = plan.build_plan(["adam"], seeds=(0,), extra=flags)
    # Memory is the whole run's: the torchrun and its two processes.
    statuses = slurm.run(sweep_dir, [run], options("two", gpus_per_run=2, cpu_only=True, slurm_mem="1500M"))
    log = (sweep_dir / f"{run.name}.log").read_text()
    assert statuses == {run.name: 0}, log
    assert (sweep_dir / f"{run.name}.exit").read_text() == "0\n"
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name != slurm.FOLDER) == [run.name]
    rows = rows_without_wall_clock(sweep_dir / run.name)
    assert [row["epoch"] for row in rows] == [0]
    assert f" start: {sys.executable} -m torch.distributed.run --standalone --nproc-per-node 2 {runner.MAIN} " in log
    [script] = (sweep_dir / slurm.FOLDER).glob("*_submission.sh")
    assert "#SBATCH --cpus-per-task=2" in script.read_text() and "--gres" not in script.read_text()


def test_memory_is_per_run_in_whole_units():
    assert slurm.scaled_memory("8G", 2) == "16G"
    assert slurm.scaled_memory("500m", 3) == "1500M"
    assert slurm.scaled_memory("1024", 2) == "2048"
    with pytest.raises(slurm.SlurmError, match="--slurm-mem 1.5G"):
        slurm.scaled_memory("1.5G", 2)


def test_a_two_row_rehearsal_of_a_recipe_runs_on_slurm_and_compares(cluster, tmp_path):
    """python -m sweeps reproduce nash_mtl --rehearse on the one-node Slurm: two rows and the
    single-task baselines as one array, then the aggregate table and the comparison report."""
    done = subprocess.run(
        [sys.executable, "-m", "sweeps", "reproduce", "nash_mtl", "--rehearse", "--rows", "ls dwa", "--seeds", "0",
         "--runs", str(tmp_path / "runs"), "--backend", "slurm", "--slurm-mem", "500M", "--slurm-cpus-per-run", "1",
         "--slurm-time", "10", "--wait", "--", "--device", "cpu", "--num-workers", "0"],
        cwd=REPO, env={**cluster.env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    sweep_dir = tmp_path / "runs" / "nash_mtl-rehearsal"
    assert len(submissions(sweep_dir)) == 1
    for name in ("ls-s0", "dwa-s0", "single-semantic-s0", "single-depth-s0"):
        assert json.loads((sweep_dir / name / "config.json").read_text())["settings"]["recipe"] == "nash_mtl@1"
        assert len(rows_without_wall_clock(sweep_dir / name)) == 2
    report = (sweep_dir / "results" / "comparison.md").read_text()
    assert "| LS | 0 1 2 | 0 | 1 2 |" in report and "not comparable: synthetic data" in report


def test_a_study_of_two_trials_runs_on_slurm(cluster, tmp_path, tiny_synthcity):
    """python -m sweeps tune --backend slurm: two trials, both in one job array (--parallel 2),
    waited for and told to the study (tests/test_tune.py tests the tuner itself)."""
    from sweeps import tune

    done = subprocess.run(
        [sys.executable, "-m", "sweeps", "tune", str(REPO / "search_spaces" / "default.toml"), "--sweep", "study",
         "--runs", str(tmp_path / "runs"), "--trials", "2", "--parallel", "2", "--backend", "slurm",
         "--slurm-mem", "500M", "--slurm-cpus-per-run", "1", "--slurm-time", "10",
         "--", *train_flags(tiny_synthcity)[:2], "--epochs", "1", *train_flags(tiny_synthcity)[4:], "--threads", "1",
         "--method", "adam", "--val-fraction", "0.25"],
        cwd=REPO, env={**cluster.env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    sweep_dir = tmp_path / "runs" / "study"
    assert len(submissions(sweep_dir)) == 1
    study = json.loads((sweep_dir / tune.STUDY_JSON).read_text())
    assert [(t["run"], t["state"]) for t in study["trials"]] == [("trial-0000", "complete"), ("trial-0001", "complete")]
    for t in study["trials"]:
        summary = json.loads((sweep_dir / t["run"] / "summary.json").read_text())
        assert t["value"] == summary["selection"]["value"]
