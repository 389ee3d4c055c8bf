"""A single-task baseline worse than the trivial predictors (evaluation/weak_baseline.py): its Δm is
flagged, naming the baseline's runs and the metrics, by evaluation.baseline, training's console
and summary.json, and evaluation.aggregate's tables; a good baseline, or an older file without
the trivial metrics, carries no flag."""
import csv
import json

import pytest
from test_aggregate import make_sweep
from test_baseline import make_run

import main_cityscapes
from evaluation import baseline as baseline_cli
from evaluation.aggregate.__main__ import main as aggregate_main
from evaluation.run_record import read_metrics
from evaluation.summary import finished_summary
from evaluation.trivial import trivial_metrics
from evaluation.weak_baseline import warning_of_file, worse_than_trivial

TRIVIAL = {"miou": 0.05, "pix_acc": 0.37, "abs_err": 0.09, "rel_err": 1.18}
RUNS = {"semantic": ["runs/single/single-semantic-s0"], "depth": ["runs/single/single-depth-s0"]}
# below the trivial mIoU (higher is better) and above its RelErr (lower is better)
WEAK = {"miou": 0.025, "pix_acc": 0.40, "abs_err": 0.08, "rel_err": 1.5}
GOOD = {"miou": 0.30, "pix_acc": 0.70, "abs_err": 0.05, "rel_err": 0.45}


def baseline_file(path, metrics, trivial=TRIVIAL):
    source = {"runs": RUNS} | ({"trivial": trivial} if trivial is not None else {})
    path.write_text(json.dumps({**metrics, "source": source}))
    return path


def test_worse_follows_each_metrics_direction():
    assert worse_than_trivial(WEAK, TRIVIAL) == {"miou": {"baseline": 0.025, "trivial": 0.05},
                                                 "rel_err": {"baseline": 1.5, "trivial": 1.18}}
    assert worse_than_trivial(GOOD, TRIVIAL) == {}


@pytest.mark.slow
@pytest.mark.usefixtures("seeded_and_restored")
def test_training_flags_delta_m_in_console_and_summary(tiny_synthcity, tmp_path, capsys):
    def train(name, baseline):
        assert main_cityscapes.main(["--data-path", str(tiny_synthcity), "--epochs", "1", "--batch-size", "4",
                                     "--width-mult", "0.125", "--num-workers", "0", "--device", "cpu",
                                     "--out", str(tmp_path), "--name", name, "--baseline", str(baseline)]) == 0
        run = tmp_path / name
        config, summary = (json.loads((run / f).read_text()) for f in ("config.json", "summary.json"))
        assert finished_summary(config, read_metrics(run), summary) == summary  # still derived data
        return capsys.readouterr().out, summary

    weak = baseline_file(tmp_path / "weak.json", WEAK)
    out, summary = train("weak", weak)
    assert summary["delta_m_warning"] == {
        "baseline": str(weak), "runs": RUNS,
        "metrics": {"miou": {"baseline": 0.025, "trivial": 0.05}, "rel_err": {"baseline": 1.5, "trivial": 1.18}}}
    [header, final] = [line for line in out.splitlines() if line.startswith("warning: Δm misleads")]
    assert header == final
    assert f"baseline {weak} is worse than the trivial predictor on miou 0.0250 (trivial 0.0500), rel_err " \
           "1.5000 (trivial 1.1800)" in final and all(run in final for paths in RUNS.values() for run in paths)
    out, summary = train("good", baseline_file(tmp_path / "good.json", GOOD))
    assert "delta_m_warning" not in summary and "Δm misleads" not in out


def test_a_file_without_trivial_metrics_carries_no_warning(tmp_path):
    """Baselines written before the trivial metrics were recorded, and hand-written ones."""
    assert warning_of_file(baseline_file(tmp_path / "old.json", WEAK, trivial=None), ("semantic", "depth")) is None
    assert warning_of_file(baseline_file(tmp_path / "weak.json", WEAK), ("depth",))["metrics"] == {
        "rel_err": {"baseline": 1.5, "trivial": 1.18}}  # only the run's tasks count


def test_baseline_cli_records_the_trivial_metrics_and_warns(tiny_synthcity, tmp_path, capsys):
    trivial = trivial_metrics(tiny_synthcity, 7, ("semantic", "depth"))
    data = {"root": str(tiny_synthcity)}
    below = {"miou": trivial["miou"] / 2, "pix_acc": trivial["pix_acc"] / 2}  # a semantic run that learnt nothing
    good_depth = {"abs_err": trivial["abs_err"] / 2, "rel_err": trivial["rel_err"] / 2}
    semantic = make_run(tmp_path, "single-semantic-s0", below, tasks=("semantic",), data=data)
    depth = make_run(tmp_path, "single-depth-s0", good_depth, tasks=("depth",), data=data)
    out = tmp_path / "baseline.json"
    assert baseline_cli.main([str(semantic), str(depth), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["source"]["trivial"] == pytest.approx({k: trivial[k] for k in ("miou", "pix_acc", "abs_err",
                                                                                   "rel_err")})
    err = capsys.readouterr().err
    assert f"warning: Δm misleads: the baseline {out} is worse than the trivial predictor on miou" in err
    assert str(semantic) in err and str(depth) not in err  # the runs of the task that is worse
    good = make_run(tmp_path, "single-semantic-s1", {"miou": 0.99, "pix_acc": 0.99}, seed=1, tasks=("semantic",),
                    data=data)
    assert baseline_cli.main([str(good), str(depth), "--out", str(out)]) == 0
    assert "Δm misleads" not in capsys.readouterr().err


def test_aggregate_marks_the_delta_m_of_a_weak_baseline(tmp_path):
    sweep = make_sweep(tmp_path / "runs" / "demo", single_task=False)
    results = tmp_path / "results"
    weak = baseline_file(tmp_path / "weak.json", WEAK)
    assert aggregate_main([str(sweep), "--results", str(results), "--baseline", str(weak)]) == 0
    md = (results / "demo.md").read_text()
    assert "| Δm vs single-task (%) |" in md
    [row] = [line for line in md.splitlines() if line.startswith("| adam | ew |")]
    assert row.endswith(" ⚠ |")
    assert f"⚠ Δm misleads: the baseline {weak} is worse than the trivial predictor on miou" in md
    with open(results / "demo.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(RUNS["semantic"][0] in row["delta_m_warning"] for row in rows)
    good = baseline_file(tmp_path / "good.json", GOOD)
    assert aggregate_main([str(sweep), "--results", str(results), "--baseline", str(good)]) == 0
    assert "⚠" not in (results / "demo.md").read_text()
    with open(results / "demo.csv") as f:
        assert all(row["delta_m_warning"] == "" for row in csv.DictReader(f))


def test_comparison_marks_the_delta_m_against_our_weak_single_task_runs(tiny_synthcity, tmp_path):
    from test_comparison import LS, recipe

    from evaluation.comparison import write_comparison

    sweep, data = tmp_path / "toy", {"root": str(tiny_synthcity)}
    trivial = trivial_metrics(tiny_synthcity, 7, ("semantic", "depth"))
    for i in range(3):
        make_run(sweep, f"ls-s{i}", {k: v[i] for k, v in LS.items()}, seed=i)
        make_run(sweep, f"single-semantic-s{i}", {"miou": trivial["miou"] / 2, "pix_acc": trivial["pix_acc"] / 2},
                 seed=i, tasks=("semantic",), data=data)
        make_run(sweep, f"single-depth-s{i}", {"abs_err": 0.01, "rel_err": 0.1}, seed=i, tasks=("depth",), data=data)
    md = write_comparison(recipe(), sweep, sweep / "results")["md"].read_text()
    [ls] = [line for line in md.splitlines() if line.startswith("| LS |") and "⚠" in line]
    assert ls.endswith(" ⚠ |")
    assert "⚠ Δm misleads: the baseline of our single-task runs is worse than the trivial predictor on miou" in md
    assert str(sweep / "single-semantic-s0") in md
