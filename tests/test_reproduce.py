"""python -m sweeps reproduce (sweeps/reproduce.py, sweeps/estimate.py): a recipe's plan, its
rehearsal end to end on this machine (killed with SIGKILL and rerun: nothing lost, nothing run
twice), and the arithmetic of --estimate. The Slurm and Ray rehearsals are in test_sweep_slurm.py
and test_sweep_ray.py."""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evaluation.recipe import load_recipe
from sweeps import cli, estimate, plan, reproduce

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
ROWS = "ls dwa"  # two rows of nash_mtl: equal weights, and DWA with the Nash-MTL code's per-iteration convention


def reproduce_command(runs, *more):
    return [sys.executable, "-m", "sweeps", "reproduce", "nash_mtl", "--rehearse", "--rows", ROWS, "--seeds", "0",
            "--runs", str(runs), *more]


def test_a_recipe_plans_every_runnable_row_by_seed_then_the_single_task_baselines():
    recipe = load_recipe("nash_mtl")
    runs, definition = reproduce.recipe_plan(recipe)
    runnable = [row for row in recipe.rows if row.runnable]
    assert len(runnable) < len(recipe.rows)  # SI: no such method here
    per_seed = [f"{row.name}-s{{}}" for row in runnable] + ["single-semantic-s{}", "single-depth-s{}"]
    assert [r.name for r in runs] == [name.format(seed) for seed in recipe.seeds for name in per_seed]
    dwa = next(r for r in runs if r.name == "dwa-s1")
    # the sweep's own flags, then the protocol's, then the row's convention, then the bookkeeping
    assert dwa.flags == ("--method", "adam", "--weighting", "dwa", "--seed", "1", *recipe.flags,
                         "--dwa-mode", "iteration", "--dwa-window", "25", "--dwa-temperature", "2.0",
                         "--recipe", f"nash_mtl@{recipe.version}")
    single = next(r for r in runs if r.name == "single-depth-s2")
    assert single.flags[:8] == ("--method", "adam", "--weighting", "ew", "--seed", "2", "--tasks", "depth")
    assert "--dwa-mode" not in single.flags
    assert definition == {"extra": list(recipe.flags), "tasks": None, "recipe": f"nash_mtl@{recipe.version}",
                          "rehearsal": False}


def test_a_rehearsal_plans_the_same_runs_on_a_small_synthcity():
    recipe = load_recipe("nash_mtl")
    full, _ = reproduce.recipe_plan(recipe)
    rehearsal, definition = reproduce.recipe_plan(recipe, rehearse=True, extra=("--device", "cpu"))
    assert [r.name for r in rehearsal] == [r.name for r in full]
    values = plan.flag_values(rehearsal[0].flags)
    assert values["--dataset"] == "synthcity" and values["--epochs"] == "2"  # the later flag wins in argparse
    assert rehearsal[0].flags[-4:] == ("--device", "cpu", "--recipe", f"nash_mtl@{recipe.version}")
    assert definition["rehearsal"] is True
    assert reproduce.sweep_name(recipe, True) == "nash_mtl-rehearsal"


@pytest.mark.parametrize("rows, seeds, message", [
    (["nosuch"], None, "--rows nosuch: no such row in"),
    (["si"], None, "--rows si: "),  # runnable = false
    (None, [7], "--seeds 7: not among the recipe's seeds 0 1 2"),
])
def test_rows_and_seeds_outside_the_recipe_are_refused_by_name(rows, seeds, message):
    with pytest.raises(plan.PlanError, match=re.escape(message)):
        reproduce.recipe_plan(load_recipe("nash_mtl"), rows, seeds)


def test_a_sweep_planned_by_one_recipe_version_refuses_another(tmp_path):
    recipe = load_recipe("nash_mtl")
    runs, definition = reproduce.recipe_plan(recipe, ["ls"], [0])
    plan.write_plan(tmp_path, runs, "local", {}, definition)
    more, _ = reproduce.recipe_plan(recipe, ["ls", "dwa"], [0])
    assert [r.name for r in plan.check_rerun(tmp_path, more, definition, extend=True)] == \
        ["ls-s0", "single-semantic-s0", "single-depth-s0", "dwa-s0"]  # more rows extend the sweep
    with pytest.raises(plan.PlanError, match="recipe: 'nash_mtl@1' in plan.json, 'nash_mtl@2' now"):
        plan.check_rerun(tmp_path, runs, definition | {"recipe": "nash_mtl@2"}, extend=True)


def test_reproduce_help_and_bad_arguments_exit_2_with_the_flag_named():
    done = subprocess.run([sys.executable, "-m", "sweeps", "reproduce", "--help"], env=ENV, capture_output=True,
                          text=True, check=False, cwd=REPO)
    assert done.returncode == 0 and "--rehearse" in done.stdout and "--estimate" in done.stdout
    done = subprocess.run([sys.executable, "-m", "sweeps", "reproduce", "nosuch"], env=ENV, capture_output=True,
                          text=True, check=False, cwd=REPO)
    assert done.returncode == 2 and "nosuch" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "sweeps", "reproduce", "nash_mtl", "--jobs", "2", "--backend",
                           "slurm"], env=ENV, capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 2 and "--jobs is an option of --backend local" in done.stderr


def test_a_run_costs_its_epochs_of_steps_and_evaluation_batches():
    # 10 epochs x (ceil(2975 / 8) = 372 steps x 0.5 s + ceil(500 / 8) = 63 batches x 0.2 s) = 10 x 198.6 s
    assert estimate.run_seconds(10, 2975, 500, 8, 0.5, 0.2) == pytest.approx(1986.0)


@pytest.mark.parametrize("durations, slots, wall", [
    # longest first, each to the slot free first: 5 → A 5; 4 → B 4; 3 → B 7; 3 → A 8; 3 → B 10
    # (the optimum, 5 + 4 | 3 + 3 + 3 = 9, is within LPT's 4/3)
    ([5, 4, 3, 3, 3], 2, 10),
    ([1, 1, 1, 1], 8, 1),  # more slots than runs: the longest run
    ([2, 2, 2], 1, 6),     # one slot: the sum
    ([], 3, 0),
])
def test_the_wall_time_is_the_longest_first_schedule_on_the_slots(durations, slots, wall):
    assert estimate.makespan(durations, slots) == wall


def test_the_backend_decides_how_many_runs_go_at_once():
    def opts(**changes):
        return argparse.Namespace(**{"backend": "local", "gpus": [], "gpus_per_run": 1, "runs_per_gpu": 1, "jobs": 1,
                                     "slurm_array_parallelism": None, "cpus_per_run": 1} | changes)

    runs = [plan.PlannedRun(f"r{i}", ()) for i in range(12)]
    assert estimate.parallel_slots(opts(jobs=3), runs)[0] == 3
    assert estimate.parallel_slots(opts(gpus=["0", "1", "2", "3"], runs_per_gpu=2), runs)[0] == 8
    assert estimate.parallel_slots(opts(gpus=["0", "1", "2", "3"], gpus_per_run=2), runs)[0] == 2
    assert estimate.parallel_slots(opts(backend="slurm"), runs)[0] == 12
    assert estimate.parallel_slots(opts(backend="slurm", slurm_array_parallelism=5), runs)[0] == 5


def test_runs_that_differ_only_in_their_seed_are_timed_once():
    recipe = load_recipe("nash_mtl")
    runs, _ = reproduce.recipe_plan(recipe, ["ls", "dwa"])
    configurations = estimate.distinct_configurations(runs)
    assert [names for names in configurations.values()] == [
        ["ls-s0", "ls-s1", "ls-s2"], ["dwa-s0", "dwa-s1", "dwa-s2"],
        ["single-semantic-s0", "single-semantic-s1", "single-semantic-s2"],
        ["single-depth-s0", "single-depth-s1", "single-depth-s2"]]


@pytest.mark.slow
def test_estimate_times_each_configuration_and_adds_up_the_plan(tmp_path):
    done = subprocess.run([*reproduce_command(tmp_path / "runs", "--estimate", "--estimate-steps", "1", "--jobs", "2"),
                           "--", "--device", "cpu", "--num-workers", "0"],
                          env=ENV, capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| adam")]
    assert len(rows) == 4  # ls, dwa, single semantic, single depth: one seed each
    hours = [float(row[5]) for row in rows]
    for row in rows:  # 2 epochs x (ceil(16 / 4) steps x step + ceil(8 / 4) batches x eval batch)
        step, batch = float(row[2]), float(row[3])
        assert float(row[5]) == pytest.approx(2 * (4 * step + 2 * batch) / 3600, abs=0.006)
    total = re.search(r"total: ([\d.]+) device-hours; wall time ([\d.]+) h with 2 runs at once", done.stdout)
    assert total and float(total[1]) == pytest.approx(sum(hours), abs=0.06), done.stdout
    assert not (tmp_path / "runs").exists()  # an estimate runs nothing


def finished(run_dir):
    return (run_dir / "summary.json").exists()


@pytest.mark.slow
def test_a_rehearsal_killed_with_sigkill_and_rerun_loses_and_repeats_nothing(tmp_path):
    """The rehearsal of two rows and the single-task baselines (4 runs, 3 epochs): kill -9 of
    reproduce while its second run trains, then the same command: the finished run is kept as it
    was, the cut one resumes, and the report compares every row."""
    runs = tmp_path / "runs"
    sweep = runs / "nash_mtl-rehearsal"
    command = [*reproduce_command(runs), "--", "--epochs", "3", "--device", "cpu", "--num-workers", "0"]
    proc = subprocess.Popen(command, env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not ((sweep / "dwa-s0" / "checkpoint.pt").exists() and finished(sweep / "ls-s0")):
            assert time.monotonic() < deadline and proc.poll() is None, "the second run made no checkpoint"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    kept = (sweep / "ls-s0" / "metrics.jsonl").read_bytes()
    time.sleep(2)  # the cut run stops on its parent's death (sweeps/runner.py)
    done = subprocess.run(command, env=ENV, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skip    ls-s0" in done.stdout and "resume  dwa-s0" in done.stdout, done.stdout
    assert (sweep / "ls-s0" / "metrics.jsonl").read_bytes() == kept
    for name in ("ls-s0", "dwa-s0", "single-semantic-s0", "single-depth-s0"):
        rows = [json.loads(line) for line in (sweep / name / "metrics.jsonl").read_text().splitlines()]
        assert [row["epoch"] for row in rows] == [0, 1, 2]
        settings = json.loads((sweep / name / "config.json").read_text())["settings"]
        assert settings["recipe"] == "nash_mtl@1" and settings["dataset"] == "synthcity"
    report = (sweep / "results" / "comparison.md").read_text()
    assert "not comparable: synthetic data" in report
    assert re.search(r"\| LS \| 0 1 2 \| 0 \| 1 2 \|", report) and re.search(r"\| DWA \| 0 1 2 \| 0 \| 1 2 \|", report)
    assert (sweep / "results" / "nash_mtl-rehearsal.md").exists()
    status = subprocess.run([sys.executable, "-m", "sweeps", "reproduce", "nash_mtl", "--rehearse", "--status",
                             "--runs", str(runs)], env=ENV, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert status.returncode == 0 and status.stdout.count("finished") >= 4, status.stdout


def test_the_bare_sweep_form_is_the_run_subcommand(tmp_path):
    args = ["--sweep", "s", "--methods", "adam", "--seeds", "0", "--runs", str(tmp_path), "--dry-run", "--",
            "--epochs", "1"]
    for argv in (args, ["run", *args]):
        assert cli.main(argv) == 0
    assert cli.main(["status", "--sweep", "s", "--runs", str(tmp_path)]) == 0


def test_the_docs_table_of_recipes_counts_their_runs():
    """docs/reproduce.md lists every recipe with its runnable rows x seeds + single-task runs."""
    from evaluation.recipe import recipe_names

    docs = (REPO / "docs" / "reproduce.md").read_text()
    listed = dict(re.findall(r"^\| `(\w+)` \| .* \| (\d+ × \d+ \+ \d+) \|$", docs, re.MULTILINE))
    assert sorted(listed) == recipe_names()
    for name, counts in listed.items():
        recipe = load_recipe(name)
        runs, _ = reproduce.recipe_plan(recipe)
        rows = sum(row.runnable for row in recipe.rows)
        assert counts == f"{rows} × {len(recipe.seeds)} + {2 * len(recipe.seeds)}", name
        assert len(runs) == (rows + 2) * len(recipe.seeds)
