"""python -m sweeps compare: the fair comparison's report (evaluation/fair_table.py) from run
folders built by hand, and the pipeline end to end at a tiny size."""
import csv
import math

import pytest
from scipy import stats
from test_baseline import DATA, ENVIRONMENT, SETTINGS

from evaluation import run_record
from evaluation.fair_table import Compared, Protocol, fair_table
from evaluation.run_record import RunError
from evaluation.significance import holm
from evaluation.summary import summary_of_record

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
