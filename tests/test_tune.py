"""python -m sweeps tune (sweeps/tune.py, sweeps/search_space.py): search-space files and their
errors, the objective that never looks at the test split, the sampler reseeded on restart, the
bookkeeping that survives a crash between ask, plan, run and tell, and a tiny study on the local
backend killed with SIGKILL mid-study and continued, read back with Optuna's own API.
(The Slurm and Ray backends: tests/test_sweep_slurm.py and tests/test_sweep_ray.py.)"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from runfolder import lease
from runfolder.files import LEASE
from sweeps import plan, runner, tune
from sweeps.search_space import SearchSpaceError, load_space

REPO = Path(__file__).resolve().parent.parent
SPACE = """
[all]
lr = { type = "log", low = 1e-4, high = 1e-2 }
[weighting.dwa]
dwa-temperature = { type = "linear", low = 1.0, high = 4.0 }
"""


def space_file(tmp_path, text=SPACE):
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def tiny_flags(data, epochs=1, *more):
    """Every trial's flags after --: a tiny CPU run on the session's tiny SynthCity, a quarter of
    its 16 training images held out as validation."""
    return ["--data-path", str(data), "--epochs", str(epochs), "--batch-size", "4", "--width-mult", "0.0625",
            "--num-workers", "0", "--device", "cpu", "--threads", "1", "--method", "adam", "--weighting", "ew",
            "--val-fraction", "0.25", *more]


def tune_argv(space, runs, trials, parallel, flags, *options):
    return [sys.executable, "-m", "sweeps", "tune", str(space), "--sweep", "study", "--runs", str(runs),
            "--trials", str(trials), "--parallel", str(parallel), "--seed", "7", *options, "--", *flags]


def child_env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def stored_trials(sweep_dir):
    """The study's trials as Optuna itself reads study.db."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / tune.STUDY_DB}")
    try:
        return optuna.load_study(study_name=tune.STUDY_NAME, storage=storage).trials
    finally:
        storage.engine.dispose()


@pytest.mark.parametrize(("text", "expected"), [
    ("[all\n", "not TOML"),
    ("[al]\nlr = { type = 'log', low = 1e-4, high = 1e-2 }", "al: expected only the tables [all], [method], "),
    ("[all]\nlr = { type = 'loga', low = 1e-4, high = 1e-2 }", "all.lr.type: expected \"log\" or"),
    ("[all]\nlr = { type = 'log', low = 0.0, high = 1e-2 }", "all.lr.low: expected a positive number"),
    ("[all]\nlr = { type = 'linear', low = 1, high = 0.5 }", "all.lr.low/high: expected two integers"),
    ("[all]\nlr = { type = 'linear', low = 0.5, high = 0.1 }", "all.lr.low/high: expected low < high"),
    ("[all]\nlr = { type = 'linear', low = 0.1 }", "all.lr.high: expected a number, got None"),
    ("[weighting.nash_mtl]\nnash-mtl-update-every = { type = 'choice', choices = [1, 'x'] }",
     "weighting.nash_mtl.nash-mtl-update-every.choices: expected a non-empty list of values of one type"),
    ("[all]\nlr = { type = 'choice', choices = [0.1], low = 1 }", "all.lr.low: expected only the keys choices, "),
    ("[all]\n'--lr' = { type = 'log', low = 1e-4, high = 1e-2 }", "all.--lr: expected a flag without its leading"),
    ("method = 3", "method: expected tables [method.NAME]"),
])
def test_a_bad_search_space_is_refused_naming_the_file_and_the_key(tmp_path, text, expected):
    path = space_file(tmp_path, text)
    with pytest.raises(SearchSpaceError) as refused:
        load_space(path)
    assert str(refused.value).startswith(f"{path}: ") and expected in str(refused.value), refused.value


def test_a_study_tunes_the_tables_of_its_method_and_weighting_and_a_flag_in_two_is_refused(tmp_path):
    space = load_space(space_file(tmp_path, SPACE + "[method.adam]\nbatch-size = { type = 'choice', "
                                                    "choices = [2, 4] }\n"))
    assert list(space.for_run("adam", "dwa")) == ["lr", "batch-size", "dwa-temperature"]
    assert list(space.for_run("sgd", "ew")) == ["lr"]
    distributions = {flag: r.distribution() for flag, r in space.for_run("adam", "dwa").items()}
    assert distributions == {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                             "batch-size": optuna.distributions.CategoricalDistribution([2, 4]),
                             "dwa-temperature": optuna.distributions.FloatDistribution(1.0, 4.0)}
    twice = load_space(space_file(tmp_path, SPACE + "[method.adam]\nlr = { type = 'log', low = 1e-3, high = 1e-1 }"))
    with pytest.raises(SearchSpaceError, match=r"lr is tuned in both \[all\] and \[method.adam\]"):
        twice.for_run("adam", "ew")
    with pytest.raises(SearchSpaceError, match=r"no flag to tune for --method adam --weighting ew"):
        load_space(space_file(tmp_path, "[weighting.dwa]\n")).for_run("adam", "ew")


def test_the_committed_search_space_loads_and_its_flags_parse(tiny_synthcity, tmp_path):
    space = load_space(REPO / "search_spaces" / "default.toml")
    for weighting in ("ew", *space.tables["weighting"]):
        setup = tune.prepare(tmp_path, space, 0, None, tiny_flags(tiny_synthcity)[:-6]
                             + ["--method", "adam", "--weighting", weighting, "--val-fraction", "0.25"])
        assert set(setup.ranges) >= {"lr"}


@pytest.mark.parametrize(("objective", "more", "expected"), [
    ("test/miou", (), "--objective test/miou: the tuner never selects on the test split"),
    (None, ("--select-by", "test/miou"), "--objective test/miou: the tuner never selects on the test split"),
    ("val/nonsense", (), "--objective: --select-by val/nonsense: expected"),
    ("delta_m", (), "--objective: --select-by delta_m: needs a --baseline file with val metrics"),
    ("val/miou", ("--select-by", "val/miou"), "give the objective once, as --objective"),
    (None, ("--lr", "0.1"), "--lr is tuned by"),
    (None, ("--name", "x"), "--name after --: --name is set by the tuner itself"),
])
def test_the_tuner_refuses_a_test_objective_and_flags_it_owns(tiny_synthcity, tmp_path, objective, more, expected):
    space = load_space(space_file(tmp_path))
    with pytest.raises(tune.TuneError) as refused:
        tune.prepare(tmp_path, space, 0, objective, tiny_flags(tiny_synthcity, 1, *more))
    assert expected in str(refused.value), refused.value


def test_the_tuner_needs_a_validation_split(tiny_synthcity, tmp_path):
    flags = tiny_flags(tiny_synthcity)[:-2]  # without --val-fraction 0.25
    with pytest.raises(tune.TuneError, match="need --val-fraction F > 0"):
        tune.prepare(tmp_path, load_space(space_file(tmp_path)), 0, None, flags)
    refused = subprocess.run(tune_argv(space_file(tmp_path), tmp_path / "runs", 2, 1, flags),
                             cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2 and "tune: the flags after -- need --val-fraction" in refused.stderr, refused


def test_the_objective_is_passed_to_every_run_and_sets_the_direction(tiny_synthcity, tmp_path):
    space = load_space(space_file(tmp_path))
    default = tune.prepare(tmp_path, space, 0, None, tiny_flags(tiny_synthcity))
    assert (default.objective, default.direction) == ("normalized_mean", "maximize")
    assert default.base_flags[-2:] == ("--select-by", "normalized_mean")
    depth = tune.prepare(tmp_path, space, 0, "val/abs_err", tiny_flags(tiny_synthcity))
    assert (depth.objective, depth.direction) == ("val/abs_err", "minimize")
    assert tune.trial_run(3, {"lr": 0.00123456789}, depth.base_flags).flags[:2] == ("--lr", "0.00123456789")


def asked(sweep_dir, setup, seed_trials=0):
    """The first trial's parameters that a start of the tuner asks for, after `seed_trials`
    trials the study already had (each told as failed, as a crashed start's would be)."""
    study = tune.Study(setup, trials=10, parallel=1, backend=None, opts=None)
    try:
        for _ in range(seed_trials):
            study.study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
        if seed_trials:
            study.close()
            study = tune.Study(setup, trials=10, parallel=1, backend=None, opts=None)  # the restart
        number = study.ask()
        return study.frozen()[number].params
    finally:
        study.close()


def test_the_sampler_is_seeded_and_reseeded_from_the_trials_so_far_on_restart(tiny_synthcity, tmp_path):
    space = load_space(space_file(tmp_path))
    dirs = [tmp_path / name for name in ("a", "b", "c")]
    setups = [tune.prepare(d, space, 7, None, tiny_flags(tiny_synthcity)) for d in dirs]
    for d in dirs:
        d.mkdir()
    first = asked(dirs[0], setups[0])
    assert asked(dirs[1], setups[1]) == first  # the same seed, the same first suggestion
    assert asked(dirs[2], setups[2], seed_trials=1) != first  # a restart does not start over
    assert tune.sampler_seed(7, 0) != tune.sampler_seed(7, 1) != tune.sampler_seed(8, 1)


@pytest.mark.slow  # end-to-end runs: not in the quick subset
def test_a_crash_after_ask_and_after_a_run_s_end_is_told_once_from_the_run_folder(tiny_synthcity, tmp_path):
    """Trial 0 was asked (its parameters stored) but its run never reached plan.json; trial 1
    ran to its end but was never told; trial 2 was cut off inside ask (no run name). The next
    start plans and runs trial 0, tells trial 1 from its summary.json without running it again,
    abandons trial 2, and asks one more: three counted trials, four run names never reused."""
    sweep_dir = tmp_path / "runs" / "study"
    sweep_dir.mkdir(parents=True)
    space = space_file(tmp_path)
    setup = tune.prepare(sweep_dir, load_space(space), 7, None, tiny_flags(tiny_synthcity))
    study = tune.Study(setup, trials=3, parallel=1, backend=None, opts=None)
    first, second = study.ask(), study.ask()
    study.study.ask()  # cut off before its run name
    params = study.frozen()[second].params
    study.close()
    ended = tune.trial_run(second, params, setup.base_flags)
    assert runner.run_one(sweep_dir, ended, threads=1, announce=lambda *a, **k: None) == 0
    done = subprocess.run(tune_argv(space, tmp_path / "runs", 3, 3, tiny_flags(tiny_synthcity)), cwd=REPO,
                          env=child_env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = stored_trials(sweep_dir)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"], done.stdout
    assert trials[2].user_attrs == {"abandoned": True}
    assert [p.name for p in plan.read_plan(sweep_dir)] == ["trial-0000", "trial-0001", "trial-0003"]
    assert (sweep_dir / "trial-0001.log").read_text().count(" start: ") == 1  # run once, by the test
    assert "skip    trial-0001 (finished)" in done.stdout
    summary = json.loads((sweep_dir / "trial-0001" / "summary.json").read_text())
    assert trials[second].value == summary["selection"]["value"] and trials[first].number == first


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_study_killed_mid_study_continues_to_exactly_n_trials_each_with_one_run_folder(tiny_synthcity, tmp_path):
    """Three trials, two at a time, two epochs each on the local backend: SIGKILL of the tuner once
    trial 0 has its first checkpoint, then the same command: trial 0 resumes from its folder, and
    the study has exactly three finished trials, each with its own run folder."""
    space, runs = space_file(tmp_path), tmp_path / "runs"
    sweep_dir = runs / "study"
    argv = tune_argv(space, runs, 3, 2, tiny_flags(tiny_synthcity, 2))
    first = subprocess.Popen(argv, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        # both runs of the first batch have started (owned), so that both are gone before the rerun
        wait_for(lambda: ((sweep_dir / "trial-0000" / "checkpoint.pt").exists()
                          and any((sweep_dir / "trial-0001" / name).exists() for name in (LEASE, "summary.json")))
                 or first.poll() is not None, 240, "checkpoint")
        assert first.poll() is None, first.communicate()[0]
        owners = [json.loads(path.read_text())["pid"] for path in sweep_dir.glob(f"trial-*/{LEASE}")]
        first.send_signal(signal.SIGKILL)
        first.wait()
        wait_for(lambda: not any(lease.pid_alive(pid) for pid in owners), 20, "end of the runs")
    finally:
        first.kill()
        first.communicate()
    assert not (sweep_dir / "trial-0000" / "summary.json").exists()
    done = subprocess.run(argv, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = stored_trials(sweep_dir)
    names = [f"trial-{n:04d}" for n in range(3)]
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert [t.user_attrs["run"] for t in trials] == names
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == names
    assert [r.name for r in plan.read_plan(sweep_dir)] == names
    log = (sweep_dir / "trial-0000.log").read_text()
    assert log.count(" start: ") == 1 and log.count(" resume: ") == 1, log
    for t in trials:
        summary = json.loads((sweep_dir / t.user_attrs["run"] / "summary.json").read_text())
        assert t.value == summary["selection"]["value"] and summary["selection"]["by"] == "normalized_mean"
        config = json.loads((sweep_dir / t.user_attrs["run"] / "config.json").read_text())
        assert config["settings"]["lr"] == t.params["lr"]
    status = subprocess.run([sys.executable, "-m", "sweeps", "tune", "--status", "--sweep", "study", "--runs",
                             str(runs)], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=60,
                            check=False)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith(f"study adam + ew ({space}): 3/3 trials finished, ") and "maximize normalized_mean" \
        in lines[0], status.stdout
    best = max(trials, key=lambda t: t.value)
    assert lines[1].startswith(f"best: {best.user_attrs['run']} ") and len(lines) == 5, status.stdout
    assert all(line.split()[1] == "complete" for line in lines[2:]), status.stdout
    snapshot = json.loads((sweep_dir / tune.STUDY_JSON).read_text())
    assert snapshot["budget"]["trials_finished"] == 3 and snapshot["budget"]["run_seconds"] > 0
