"""python -m sweeps compare: the fair comparison's report (evaluation/fair_table.py) from run
folders built by hand, and the pipeline end to end at a tiny size."""
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats
from test_baseline import DATA, ENVIRONMENT, SETTINGS

from evaluation import run_record
from evaluation.fair_table import Compared, Protocol, fair_table
from evaluation.run_record import RunError
from evaluation.significance import holm
from evaluation.summary import summary_of_record
from sweeps import compare, plan, tune

REPO = Path(__file__).resolve().parent.parent

EPOCHS = 3
BEST = 1  # the epoch of every fabricated run whose val mIoU is highest
SPLIT = {"val_fraction": 0.25, "val_seed": 1234, "select_by": "val/miou", "val_split_sha256": "ab" * 32}
# Per seed (0, 1, 2) the test metrics at the best validation epoch of two rows.
ADAM = {"miou": [0.50, 0.52, 0.54], "pix_acc": [0.80, 0.81, 0.82], "abs_err": [0.020, 0.022, 0.024],
        "rel_err": [0.30, 0.33, 0.36]}
ADATASK = {"miou": [0.55, 0.56, 0.60], "pix_acc": [0.80, 0.82, 0.83], "abs_err": [0.019, 0.020, 0.024],
           "rel_err": [0.28, 0.29, 0.33]}
# Single-task runs, seeds 0 and 1: every epoch alike, so their last-N means are these.
SINGLE = {"semantic": [{"miou": 0.60, "pix_acc": 0.84}, {"miou": 0.62, "pix_acc": 0.86}],
          "depth": [{"abs_err": 0.018, "rel_err": 0.25}, {"abs_err": 0.020, "rel_err": 0.27}]}
LOWER_IS_BETTER = ("abs_err", "rel_err")


def worse(metrics, factor):
    return {k: v * factor if k in LOWER_IS_BETTER else v / factor for k, v in metrics.items()}


def make_run(sweep, name, at_best, method="adam", weighting="ew", seed=0, tasks=("semantic", "depth"),
             split=SPLIT, single=False, lr=1e-4):
    """A finished run of EPOCHS epochs whose test metrics at epoch BEST are `at_best` and 1.5 times
    worse at the other epochs, whose val mIoU peaks at epoch BEST; single: every epoch alike."""
    run_dir = sweep / name
    run_dir.mkdir(parents=True)
    config = {"schema_version": 6, "tasks": list(tasks), "data": DATA, "environment": ENVIRONMENT,
              "settings": SETTINGS | {"epochs": EPOCHS, "method": method, "weighting": weighting, "seed": seed,
                                      "tasks": list(tasks), "lr": lr} | split}
    run_record.write_json(run_dir / run_record.CONFIG, config)
    rows = []
    for epoch in range(EPOCHS):
        test = at_best if single or epoch == BEST else worse(at_best, 1.5)
        val = {k: at_best[k] if k != "miou" else (0.9 if epoch == BEST else 0.5) for k in at_best}
        row = {"epoch": epoch, "lr": 1e-4, "seconds": 2.0, "train": dict(test), "test": dict(test, delta_m=None)}
        rows.append(row | ({"val": dict(val, delta_m=None), "val_objective": val.get("miou", 0.0)} if split else {}))
    run_record.write_metrics(run_dir, rows)
    run_record.write_json(run_dir / run_record.SUMMARY, summary_of_record(config, rows))
    return name


def of_seed(values, seed):
    return {k: v[seed] for k, v in values.items()}


def by_normalized_mean(split):
    """A single-task depth run has no val mIoU to choose its epoch by; --select-by is bookkeeping."""
    return split | {"select_by": "normalized_mean"} if split else split


def make_comparison(sweep, split_of=lambda name: SPLIT):
    """adam + ew and adam_with_adatask + ew, each with its own tuned --lr, re-run with seeds 0 1 2,
    and the single-task runs (with the default lr)."""
    compared = []
    for method, values, trials, lr in (("adam", ADAM, 4, 0.001), ("adam_with_adatask", ADATASK, 4, 0.003)):
        tuned = {"--lr": str(lr)}
        names = [make_run(sweep, f"{method}-ew-s{s}", of_seed(values, s), method=method, seed=s,
                          split=split_of(f"{method}-ew-s{s}"), lr=lr) for s in range(3)]
        compared.append(Compared(method, "ew", tuned, tuple(names), trials, 100.0 * trials))
    single = [make_run(sweep, f"single-{task}-s{s}", metrics, seed=s, tasks=(task,), single=True,
                       split=by_normalized_mean(split_of(f"single-{task}-s{s}")))
              for task, per_seed in SINGLE.items() for s, metrics in enumerate(per_seed)]
    return compared, single


PROTOCOL = Protocol(trials=4, seeds=(0, 1, 2), tuning="Optuna TPE sampler, seed 0")


def read_csv(path):
    with open(path, newline="") as f:
        return {(row["selection"], row["method"]): row for row in csv.DictReader(f)}


def hand_delta_m(m, b):
    return (-(m["miou"] - b["miou"]) / b["miou"] - (m["pix_acc"] - b["pix_acc"]) / b["pix_acc"]
            + (m["abs_err"] - b["abs_err"]) / b["abs_err"] + (m["rel_err"] - b["rel_err"]) / b["rel_err"]) / 4 * 100


BASELINE = {"miou": 0.61, "pix_acc": 0.85, "abs_err": 0.019, "rel_err": 0.26}  # SINGLE's means over seeds


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("compare") / "sweep"
    compared, single = make_comparison(sweep)
    paths = fair_table(sweep, compared, single, PROTOCOL, sweep / "results")
    return paths, read_csv(paths["csv"]), paths["md"].read_text()


def test_means_and_intervals_at_the_best_validation_epoch(report):
    _, rows, _ = report
    for method, values in (("adam", ADAM), ("adam_with_adatask", ADATASK)):
        row = rows[("best_val", method)]
        assert row["n_seeds"] == "3" and row["seeds"] == "0 1 2"
        for key, seeds in values.items():
            mean, std = sum(seeds) / 3, stats.tstd(seeds)
            assert float(row[key]) == pytest.approx(mean)
            assert float(row[f"{key}_ci95"]) == pytest.approx(stats.t.ppf(0.975, 2) * std / math.sqrt(3))


def test_last_n_averages_every_epoch_of_the_short_runs(report):
    _, rows, _ = report
    for seed_values in (ADAM["abs_err"],):  # epochs 0 and 2 are 1.5 times worse: the mean of 1.5, 1, 1.5
        expected = sum(v * 4 / 3 for v in seed_values) / 3
        assert float(rows[("last_n", "adam")]["abs_err"]) == pytest.approx(expected)
    assert float(rows[("last_n", "adam")]["miou"]) == pytest.approx(sum(v * (2 / 1.5 + 1) / 3 for v in ADAM["miou"]) / 3)


def test_delta_m_against_the_single_task_runs(report):
    _, rows, _ = report
    for method, values in (("adam", ADAM), ("adam_with_adatask", ADATASK)):
        per_seed = [hand_delta_m(of_seed(values, s), BASELINE) for s in range(3)]
        assert float(rows[("best_val", method)]["delta_m_single_task"]) == pytest.approx(sum(per_seed) / 3)


def test_welch_and_holm_against_the_first_row(report):
    _, rows, _ = report
    assert rows[("best_val", "adam")]["miou_p"] == ""  # the baseline row is not tested against itself
    keys = ("miou", "pix_acc", "abs_err", "rel_err")
    raw = [stats.ttest_ind(ADATASK[k], ADAM[k], equal_var=False).pvalue for k in keys]
    adam_dm = [hand_delta_m(of_seed(ADAM, s), BASELINE) for s in range(3)]
    adatask_dm = [hand_delta_m(of_seed(ADATASK, s), BASELINE) for s in range(3)]
    raw.append(stats.ttest_ind(adatask_dm, adam_dm, equal_var=False).pvalue)
    # Holm by hand: the i-th smallest of m p-values times (m - i), made monotone.
    order = sorted(range(5), key=lambda i: raw[i])
    adjusted, running = [None] * 5, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (5 - rank) * raw[i]))
        adjusted[i] = running
    assert adjusted == pytest.approx(holm(raw))
    row = rows[("best_val", "adam_with_adatask")]
    for key, p, p_holm in zip((*keys, "delta_m_single_task"), raw, adjusted, strict=True):
        assert float(row[f"{key}_p"]) == pytest.approx(p)
        assert float(row[f"{key}_p_holm"]) == pytest.approx(p_holm)


def test_the_header_states_the_protocol_and_the_budget(report):
    _, rows, md = report
    assert "validation split 0.25 of train/" in md and "--val-seed 1234" in md
    assert "4 trials per method × weighting" in md and "seeds 0 1 2" in md
    assert "val/miou (maximize)" in md and "tests against adam + ew" in md
    assert "## Test metrics at the validation-selected epoch" in md and "## Test metrics over the last N epochs" in md
    # budget: 4 trials of 100 s each, three re-runs of 3 epochs of 2 s; four single-task runs like them
    assert "| adam | ew | --lr 0.001 | 4 | 400 | 18 | 418 |" in md
    assert rows[("best_val", "adam")]["rerun_seconds"] == "18.0"
    assert "single-task baselines, shared by every row: 24 s" in md


def test_runs_on_another_split_are_refused(tmp_path):
    other = SPLIT | {"val_seed": 7, "val_split_sha256": "cd" * 32}
    compared, single = make_comparison(tmp_path, lambda name: other if name == "adam-ew-s2" else SPLIT)
    with pytest.raises(RunError, match="val_seed") as refused:
        fair_table(tmp_path, compared, single, PROTOCOL, tmp_path / "results")
    assert "adam-ew-s2" in str(refused.value)


def test_runs_without_a_validation_split_are_refused(tmp_path):
    compared, single = make_comparison(tmp_path, lambda name: {})
    with pytest.raises(RunError, match="adam-ew-s0.*needs --val-fraction above 0"):
        fair_table(tmp_path, compared, single, PROTOCOL, tmp_path / "results")


# ---------------------------------------------------------------- the pipeline end to end

SPACE = '[all]\nlr = { type = "log", low = 1e-4, high = 1e-2 }\n'


def compare_argv(runs, space, data, *run_flags):
    """2 methods x ew, 2 trials each, re-runs with seeds 1 2, two runs at a time; 2-epoch runs on
    the session's tiny SynthCity, a quarter of its 16 training images held out as validation."""
    return ["--sweep", "fair", "--runs", str(runs), "--methods", "adam,adam_with_adatask", "--trials", "2",
            "--seeds", "2", "--space", str(space), "--parallel", "2", "--",
            "--data-path", str(data), "--epochs", "2", "--batch-size", "4", "--width-mult", "0.0625",
            "--num-workers", "0", "--device", "cpu", "--threads", "1", *run_flags]


def run_compare(argv):
    return subprocess.run([sys.executable, "-m", "sweeps", "compare", *argv], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}, timeout=900,
                          check=False)


def config_of(run_dir):
    return json.loads((run_dir / run_record.CONFIG).read_text())


@pytest.mark.slow  # 12 runs of main_cityscapes.py: not in the quick subset (docs/tests.md)
def test_compare_end_to_end_writes_every_stage_and_a_rerun_starts_nothing(tiny_synthcity, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    # a tuned flag after --: the baselines' value; each study tunes its own
    argv = compare_argv(tmp_path / "runs", space, tiny_synthcity, "--val-fraction", "0.25", "--lr", "0.002")
    done = run_compare(argv)
    assert done.returncode == 0, done.stdout + done.stderr
    sweep = tmp_path / "runs" / "fair"
    # 1: single-task runs on the validation split, seeds 1 2, and a baseline with val metrics
    baseline = json.loads((sweep / compare.BASELINE_FILE).read_text())
    assert set(baseline["val"]) == {"miou", "pix_acc", "abs_err", "rel_err"}
    assert baseline["source"]["seeds"] == {"semantic": [1, 2], "depth": [1, 2]}
    assert {config_of(sweep / f"single-{t}-s{s}")["settings"]["lr"] for t in ("semantic", "depth") for s in (1, 2)} \
        == {0.002}
    # 2: one study per method x weighting, two finished trials each, every trial on seed 0 with the baseline
    bests = {}
    for method in ("adam", "adam_with_adatask"):
        study = sweep / compare.STUDIES / f"{method}-ew"
        snapshot = json.loads((study / tune.STUDY_JSON).read_text())
        assert snapshot["budget"]["trials_finished"] == 2 and snapshot["objective"] == "delta_m"
        for trial in snapshot["trials"]:
            settings = config_of(study / trial["run"])["settings"]
            assert (settings["seed"], settings["method"], settings["val_fraction"]) == (0, method, 0.25)
            assert settings["baseline"] == str(sweep / compare.BASELINE_FILE)
            assert settings["lr"] == trial["params"]["lr"]
        bests[method] = snapshot["best"]["params"]["lr"]
    # 3: the best configuration re-run with seeds 1 2, on the same split, selected by Δm on val
    names = [r.name for r in plan.read_plan(sweep)]
    assert names == ["single-semantic-s1", "single-depth-s1", "single-semantic-s2", "single-depth-s2",
                     "adam-ew-s1", "adam-ew-s2", "adam_with_adatask-ew-s1", "adam_with_adatask-ew-s2"]
    split = {config_of(sweep / name)["settings"]["val_split_sha256"] for name in names}
    assert len(split) == 1
    for method, lr in bests.items():
        for seed in (1, 2):
            run_dir = sweep / f"{method}-ew-s{seed}"
            settings = config_of(run_dir)["settings"]
            assert (settings["seed"], settings["lr"], settings["select_by"]) == (seed, lr, "delta_m")
            assert "best_val_epoch" in json.loads((run_dir / run_record.SUMMARY).read_text())
    # 4: the report, printed and written
    report = (sweep / "results" / "compare.md").read_text()
    assert report in done.stdout and "2 trials per method × weighting" in report and "seeds 1 2" in report
    rows = read_csv(sweep / "results" / "compare.csv")
    assert set(rows) == {(s, m) for s in ("best_val", "last_n") for m in bests}
    assert rows[("best_val", "adam")]["trials"] == "2" and rows[("best_val", "adam")]["tuned"] == f"--lr {bests['adam']!r}"
    again = run_compare(argv)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "start " not in again.stdout and again.stdout.count("skip ") == 8
    status = run_compare(["--status", "--sweep", "fair", "--runs", str(tmp_path / "runs")])
    assert "8 runs: 8 finished" in status.stdout and "baseline.json: written" in status.stdout
    assert status.stdout.count("2/2 trials finished") == 2 and "report: " + str(sweep / "results") in status.stdout


@pytest.mark.parametrize(("run_flags", "expected"), [
    ((), "--val-fraction F > 0"),
    (("--val-fraction", "0.25", "--seed", "3"), "--seed after --: the comparison sets it for each run; use --seeds"),
])
def test_a_comparison_it_cannot_run_is_refused_before_any_run(tiny_synthcity, tmp_path, capsys, run_flags, expected):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    with pytest.raises(SystemExit) as refused:
        compare.main(compare_argv(tmp_path / "runs", space, tiny_synthcity, *run_flags))
    assert refused.value.code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_single_task_baseline_worse_than_the_trivial_predictors_marks_delta_m(tmp_path, tiny_synthcity, monkeypatch):
    """The report's Δm is flagged, naming the runs, when the baseline learnt less than the trivial
    predictors on the runs' own data (evaluation/weak_baseline.py); the hand-made runs read it."""
    monkeypatch.setitem(globals(), "DATA", {**DATA, "root": str(tiny_synthcity)})
    monkeypatch.setitem(globals(), "SINGLE", {"semantic": [{"miou": 0.001, "pix_acc": 0.01}] * 2,
                                              "depth": [{"abs_err": 0.018, "rel_err": 0.25}] * 2})
    sweep = tmp_path / "sweep"
    compared, single = make_comparison(sweep)
    paths = fair_table(sweep, compared, single, PROTOCOL, sweep / "results")
    md, rows = paths["md"].read_text(), read_csv(paths["csv"])
    assert md.count("⚠ Δm misleads") == 2  # under each of the two tables
    assert "miou 0.0010 (trivial" in md and "single-semantic-s0" in md and "abs_err" not in md.split("⚠ Δm")[1]
    assert all("Δm misleads" in row["delta_m_warning"] for row in rows.values())
    assert all(line.count("⚠") == 1 for line in md.splitlines() if line.startswith("| adam") and "±" in line)


@pytest.mark.parametrize(("option", "expected"), [
    (["--jobs", "2"], "--jobs: {chooser} runs --parallel P at once; give --parallel"),
    (["--dry-run"], "--dry-run: {ahead}; there is nothing to show ahead"),
])
@pytest.mark.parametrize(("tool", "chooser", "ahead"), [
    ("compare", "the comparison", "the re-runs depend on the studies' results"),
    ("tune", "the tuner", "a study chooses each trial from the ones before"),
])
def test_tune_and_compare_take_parallel_not_jobs_and_show_nothing_ahead(tiny_synthcity, tmp_path, capsys, option,
                                                                        expected, tool, chooser, ahead):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    argv = compare_argv(tmp_path / "runs", space, tiny_synthcity, "--val-fraction", "0.25")
    if tool == "tune":  # the same sweep options, one study's form
        argv = [str(space), "--sweep", "fair", "--runs", str(tmp_path / "runs"), "--trials", "2", "--parallel",
                "2", *argv[argv.index("--"):]]
    with pytest.raises(SystemExit) as refused:
        {"compare": compare, "tune": tune}[tool].main([*option, *argv])
    assert refused.value.code == 2
    assert expected.format(chooser=chooser, ahead=ahead) in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
