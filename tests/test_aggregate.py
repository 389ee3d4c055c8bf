"""evaluation.aggregate on fabricated sweep folders with known numbers."""
import csv
import json
import math

import pytest
from scipy import stats
from test_baseline import make_run, single_task_runs

from evaluation import run_record
from evaluation.aggregate import aggregate
from evaluation.aggregate.__main__ import main
from evaluation.aggregate.render import csv_fields, figure_curves, panels
from evaluation.baseline import build_baseline
from evaluation.delta_m import PUBLISHED_BASELINE
from evaluation.run_record import read_run
from evaluation.significance import holm
from experiment.flags import setting_definitions

TWO = ("semantic", "depth")

REAL = {"dataset": "cityscapes", "image_size": None,
        "data": {"name": "cityscapes", "root": "dataset/cityscapes", "synthetic": False, "image_size": [128, 256],
                 "train_samples": 2975, "val_samples": 500, "identity": {"kind": "sha256sums", "sha256": "ab12"}}}
# Per-seed last-10 means (seeds 0, 1, 2) of two groups.
ADAM = {"miou": [0.50, 0.52, 0.54], "pix_acc": [0.80, 0.81, 0.82], "abs_err": [0.020, 0.022, 0.024],
        "rel_err": [0.30, 0.33, 0.36]}
ADATASK = {"miou": [0.55, 0.56, 0.60], "pix_acc": [0.80, 0.81, 0.82], "abs_err": [0.019, 0.020, 0.024],
           "rel_err": [0.28, 0.29, 0.33]}
# The sweep's single-task baseline (test_baseline.single_task_runs): the means over its two seeds.
OWN = {"miou": 0.61, "pix_acc": 0.85, "abs_err": 0.019, "rel_err": 0.26}


def make_group(sweep, method, weighting, values, prefix="", **changes):
    for s in range(len(values["miou"])):
        make_run(sweep, f"{prefix}{method}-{weighting}-s{s}", of_seed(values, s), method=method, weighting=weighting,
                 seed=s, **changes)


TODAYS_PCGRAD = {"pcgrad_shuffle": "python", "pcgrad_eps": 1e-8}


def make_sweep(sweep, single_task=True, **changes):
    """adam + ew and adam_with_adatask + ew over 3 seeds, adam + pcgrad with 1 seed, an
    interrupted run, a crashed one and one that failed before creating its folder."""
    make_group(sweep, "adam_with_adatask", "ew", ADATASK, **changes)
    # today's pcgrad: options it lacks would read as their legacy values (and name the row)
    make_group(sweep, "adam", "pcgrad", {k: v[:1] for k, v in ADAM.items()}, **TODAYS_PCGRAD, **changes)
    make_group(sweep, "adam", "ew", ADAM, **changes)
    make_run(sweep, "adam-ew-s3", {k: 0.0 for k in ADAM}, seed=3, finished=False, **changes)
    make_run(sweep, "adam_with_adatask-ew-s3", {k: 9.0 for k in ADAM}, method="adam_with_adatask", seed=3,
             finished=False, **changes)
    (sweep / "adam_with_adatask-ew-s3.exit").write_text("1\n")
    (sweep / "adam_with_adatask-ew-s3.log").write_text("epoch 4/12 ...\nerror: NaN loss at epoch 5\n")
    (sweep / "adam-gdod-s0.exit").write_text("2\n")
    (sweep / "adam-gdod-s0.log").write_text("error: --weighting gdod: unknown\n")
    (sweep / "adam-ew-s0.exit").write_text("0\n")  # a finished run's status: not a problem
    if single_task:
        single_task_runs(sweep, **changes)
    return sweep


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def hand_delta_m(m, b):
    """docs/methods.md, "Δm and baselines" written out: lower is better, mIoU and PixAcc count with a minus sign."""
    return (-(m["miou"] - b["miou"]) / b["miou"] - (m["pix_acc"] - b["pix_acc"]) / b["pix_acc"]
            + (m["abs_err"] - b["abs_err"]) / b["abs_err"] + (m["rel_err"] - b["rel_err"]) / b["rel_err"]) / 4 * 100


def means(values):
    return {k: sum(v) / len(v) for k, v in values.items()}


def of_seed(values, s):
    return {k: v[s] for k, v in values.items()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The aggregation of make_sweep on SynthCity, with single-task runs (read-only for the tests)."""
    root = tmp_path_factory.mktemp("synthetic")
    paths = aggregate(make_sweep(root / "runs" / "demo"), root / "results")
    return paths, read_csv(paths["csv"])


def test_groups_sorted_with_adam_ew_first_and_unfinished_runs_left_out(synthetic):
    _, rows = synthetic
    assert [(r["method"], r["weighting"], r["n_seeds"], r["seeds"]) for r in rows] == [
        ("adam", "ew", "3", "0 1 2"), ("adam", "pcgrad", "1", "0"), ("adam_with_adatask", "ew", "3", "0 1 2")]


def test_means_and_sample_stds(synthetic):
    _, rows = synthetic
    adam, pcgrad, adatask = rows
    # Values spaced evenly by d have sample std d; ADATASK's mIoU deviates -0.02, -0.01, +0.03.
    for key, mean_, std in [("miou", 0.52, 0.02), ("pix_acc", 0.81, 0.01), ("abs_err", 0.022, 0.002),
                            ("rel_err", 0.33, 0.03)]:
        assert float(adam[key]) == pytest.approx(mean_)
        assert float(adam[f"{key}_std"]) == pytest.approx(std)
    assert float(adatask["miou"]) == pytest.approx(0.57)
    assert float(adatask["miou_std"]) == pytest.approx(math.sqrt((0.02 ** 2 + 0.01 ** 2 + 0.03 ** 2) / 2))
    # One seed: the value, no std, no test.
    assert float(pcgrad["miou"]) == pytest.approx(0.50)
    assert pcgrad["miou_std"] == "" and pcgrad["miou_p"] == ""


def test_delta_m_against_the_sweeps_single_task_runs(synthetic):
    _, rows = synthetic
    adam, pcgrad, adatask = rows
    assert float(adam["delta_m_single_task"]) == pytest.approx(
        (0.09 / 0.61 + 0.04 / 0.85 + 0.003 / 0.019 + 0.07 / 0.26) / 4 * 100)
    assert float(adatask["delta_m_single_task"]) == pytest.approx(hand_delta_m(means(ADATASK), OWN))
    per_seed = [hand_delta_m(of_seed(ADATASK, s), OWN) for s in range(3)]
    assert float(adatask["delta_m_single_task_std"]) == pytest.approx(stats.tstd(per_seed))
    assert float(pcgrad["delta_m_single_task"]) == pytest.approx(hand_delta_m(of_seed(ADAM, 0), OWN))
    # SynthCity: the published numbers do not apply.
    assert all(r["delta_m_published"] == "" for r in rows)


def test_welch_p_values_against_adam_ew(synthetic):
    _, rows = synthetic
    adam, _, adatask = rows
    assert adam["miou_p"] == ""  # the reference row
    for key, values in ADAM.items():
        assert float(adatask[f"{key}_p"]) == pytest.approx(
            stats.ttest_ind(ADATASK[key], values, equal_var=False).pvalue, rel=1e-9)
    # Welch by hand for mIoU: variances 0.0007 and 0.0004 over 3 seeds each.
    a, b = 0.0007 / 3, 0.0004 / 3
    t, df = (0.57 - 0.52) / math.sqrt(a + b), (a + b) ** 2 / (a ** 2 / 2 + b ** 2 / 2)
    assert float(adatask["miou_p"]) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9)
    per_seed = {name: [hand_delta_m(of_seed(values, s), OWN) for s in range(3)]
                for name, values in (("adam", ADAM), ("adatask", ADATASK))}
    assert float(adatask["delta_m_single_task_p"]) == pytest.approx(
        stats.ttest_ind(per_seed["adatask"], per_seed["adam"], equal_var=False).pvalue, rel=1e-6)
    # Equal PixAcc on both sides: t = 0, p = 1.
    assert float(adatask["pix_acc_p"]) == pytest.approx(1.0)


def test_holm_over_every_test_of_the_table_marks_the_stars(synthetic):
    paths, rows = synthetic
    adam, pcgrad, adatask = rows
    # The family: adam_with_adatask's five defined tests (pcgrad has one seed, adam + ew is the reference).
    columns = ("miou", "pix_acc", "abs_err", "rel_err", "delta_m_single_task")
    raw = [float(adatask[f"{c}_p"]) for c in columns]
    assert [float(adatask[f"{c}_p_holm"]) for c in columns] == pytest.approx(holm(raw), rel=1e-9)
    assert adam["miou_p_holm"] == pcgrad["miou_p_holm"] == adatask["delta_m_published_p_holm"] == ""
    md = paths["md"].read_text()
    assert "Holm's step-down correction over all 5 tests of this table" in md
    assert "`*`: Holm-adjusted p < 0.05 in Welch's t-test against the adam + ew row" in md
    row = next(line for line in md.split("## Welch")[1].splitlines() if line.startswith("| adam_with_adatask |"))
    assert f"| {float(adatask['miou_p_holm']):.3g} ({float(adatask['miou_p']):.3g}) |" in row


def test_a_raw_p_below_alpha_gets_no_star_unless_holm_keeps_it(tmp_path):
    """mIoU far apart with little spread (p ~ 1e-5 survives x5); RelErr apart with more spread
    (p ~ 0.04 raw, not after Holm)."""
    sweep = tmp_path / "runs" / "holm"
    make_group(sweep, "adam", "ew", ADAM)
    far = ADAM | {"miou": [0.70, 0.71, 0.72], "rel_err": [0.38, 0.41, 0.43]}
    make_group(sweep, "adam_with_adatask", "ew", far)
    paths = aggregate(sweep, tmp_path / "results")
    _, adatask = read_csv(paths["csv"])
    assert float(adatask["miou_p_holm"]) < 0.05 and float(adatask["rel_err_p"]) < 0.05 <= float(
        adatask["rel_err_p_holm"])
    row = next(line for line in paths["md"].read_text().splitlines() if line.startswith("| adam_with_adatask |"))
    miou, rel_err = row.split(" | ")[3], row.split(" | ")[6]
    assert miou.endswith(" *") and not rel_err.endswith("*")


def test_csv_columns(synthetic):
    paths, _ = synthetic
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert tuple(header) == csv_fields(TWO)
    assert header[:9] == ["method", "weighting", "n_seeds", "seeds", "epochs_averaged", "miou", "miou_std", "miou_p",
                          "miou_p_holm"]
    assert header[-5:] == ["delta_m_single_task", "delta_m_single_task_std", "delta_m_single_task_p",
                           "delta_m_single_task_p_holm", "delta_m_warning"]


def test_markdown_table_and_lists(synthetic):
    paths, _ = synthetic
    md = paths["md"].read_text()
    assert "| Method | Weighting | Seeds | mIoU (%) | PixAcc (%) | AbsErr | RelErr | Δm vs single-task (%) |" in md
    assert "| Method | Weighting | mIoU | PixAcc | AbsErr | RelErr | Δm vs single-task |" in md  # p-values
    assert "Δm vs published" not in md
    assert "| adam | ew | 3 | 52.00 ± 2.00 | 81.00 ± 1.00 | 0.0220 ± 0.0020 | 0.3300 ± 0.0300 | +15.54 ± " in md
    assert "| adam | pcgrad | 1 | 50.00 | 80.00 | 0.0200 | 0.3000 | " in md  # n=1: no std
    lines = md.splitlines()
    not_averaged = lines[lines.index("## Not averaged"):]
    assert any(l.startswith("| adam-ew-s3 | unfinished") and "| 4 |" in l for l in not_averaged)
    assert any(l.startswith("| adam_with_adatask-ew-s3 | crashed (exit 1) | 4 | `error: NaN loss at epoch 5` |")
               for l in not_averaged)
    assert any(l.startswith("| adam-gdod-s0 | failed before creating its run folder (exit 2) |") for l in not_averaged)
    assert "nan" not in md.split("## Not averaged")[0].lower()
    assert "semantic seeds [0, 1]" in md
    assert "![test curves](demo_curves.png)" in md
    assert "Per seed the mean of the test metrics over the last 10 epochs; " in md
    assert "band from the minimum to the maximum over seeds. Colour: weighting; line style and marker: method." in md
    assert "Grey background: the last 10 epochs, whose mean the tables report." in md  # 12 epochs


def test_png_written(synthetic):
    paths, _ = synthetic
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["png"].stat().st_size > 10_000


def test_figure_panels_have_the_tables_names_units_and_direction():
    assert [p.label for p in panels(TWO, "single_task")] == [
        "mIoU (%) ↑", "PixAcc (%) ↑", "AbsErr ↓", "RelErr ↓", "Δm vs single-task (%) ↓"]
    assert [p.key for p in panels(TWO, None)] == ["miou", "pix_acc", "abs_err", "rel_err"]


def test_figure_curves_are_on_the_tables_scale(synthetic):
    paths, _ = synthetic
    sweep = paths["md"].parent.parent / "runs" / "demo"
    runs = {name: read_run(sweep / name, setting_definitions()) for name in ("adam-ew-s0", "adam-ew-s1", "single-depth-s0")}
    baseline = {"miou": 0.61, "pix_acc": 0.85, "abs_err": 0.019, "rel_err": 0.26}
    adam, single = figure_curves(TWO, {("adam", "ew", ()): [runs["adam-ew-s0"], runs["adam-ew-s1"]],
                                  ("single-task", None, ()): [runs["single-depth-s0"]]},
                                 {(): {"single_task": baseline}}, "single_task")
    assert adam.values["miou"].shape == (2, 12)  # seeds x epochs
    assert adam.values["miou"][:, -1] == pytest.approx([50.0, 52.0])  # percent, as in the tables
    assert adam.values["abs_err"][:, -1] == pytest.approx([0.020, 0.022])
    assert adam.values["delta_m_single_task"][:, -1] == pytest.approx(
        [hand_delta_m(of_seed(ADAM, s), baseline) for s in range(2)])
    assert set(single.values) == {"abs_err", "rel_err"} and single.weighting is None  # only its own task, no Δm


def test_output_is_deterministic(tmp_path, synthetic):
    paths, _ = synthetic
    again = aggregate(paths["md"].parent.parent / "runs" / "demo", tmp_path / "again")
    assert again["md"].read_text() == paths["md"].read_text()
    assert again["csv"].read_text() == paths["csv"].read_text()
    assert again["png"].read_bytes() == paths["png"].read_bytes()


def test_by_default_the_output_goes_into_the_sweeps_folder(tmp_path, monkeypatch):
    sweep = make_sweep(tmp_path / "runs" / "demo")
    monkeypatch.chdir(tmp_path)
    assert main([str(sweep)]) == 0
    assert sorted(p.name for p in (sweep / "results").iterdir()) == ["demo.csv", "demo.md", "demo_curves.png"]
    assert not (tmp_path / "results").exists()
    # Aggregated again, the output folder is not taken for a run that failed to start.
    assert main([str(sweep)]) == 0
    assert "| results |" not in (sweep / "results" / "demo.md").read_text()


def test_a_short_run_says_how_many_epochs_it_averages(tmp_path):
    """5 epochs: "last10" averages all 5: N = min(10, metrics.jsonl's rows), also for a summary
    written before "last10_epochs"."""
    sweep = tmp_path / "runs" / "short"
    make_group(sweep, "adam", "ew", ADAM, epochs=5)
    for name in ("adam-ew-s0", "adam-ew-s1", "adam-ew-s2"):
        summary = json.loads((sweep / name / run_record.SUMMARY).read_text())
        summary.pop("last10_epochs", None)
        (sweep / name / run_record.SUMMARY).write_text(json.dumps(summary))
    paths = aggregate(sweep, tmp_path / "results")
    assert read_csv(paths["csv"])[0]["epochs_averaged"] == "5"
    md = paths["md"].read_text()
    assert "over the last 5 epochs;" in md and "last 10" not in md and "Grey background" not in md


def test_metric_dicts_with_a_per_class_dict_beside_the_metrics(tmp_path, synthetic):
    """metrics.jsonl rows and summary.json may hold "class_iou": {class: IoU or null}: only the
    metrics are read, and the tables are the same."""
    _, rows = synthetic
    sweep = make_sweep(tmp_path / "runs" / "demo")
    for run_dir in (p for p in sweep.iterdir() if (p / run_record.METRICS).exists()):
        per_class = {"road": 0.9, "rider": None}
        lines = [json.loads(line) for line in (run_dir / run_record.METRICS).read_text().splitlines()]
        run_record.write_metrics(run_dir, [row | {"test": row["test"] | {"class_iou": per_class}} for row in lines])
        if (run_dir / run_record.SUMMARY).exists():
            summary = json.loads((run_dir / run_record.SUMMARY).read_text())
            summary["final"]["class_iou"] = summary["last10"]["class_iou"] = per_class
            (run_dir / run_record.SUMMARY).write_text(json.dumps(summary))
    again = aggregate(sweep, tmp_path / "results")
    assert read_csv(again["csv"]) == rows


def test_published_baseline_for_the_real_7_class_release(tmp_path):
    paths = aggregate(make_sweep(tmp_path / "real", single_task=False, **REAL), tmp_path / "results")
    adam, _, adatask = read_csv(paths["csv"])
    assert float(adam["delta_m_published"]) == pytest.approx(
        hand_delta_m(means(ADAM), PUBLISHED_BASELINE))
    assert float(adam["delta_m_published"]) == pytest.approx(
        (0.2201 / 0.7401 + 0.1216 / 0.9316 + 0.0095 / 0.0125 + (0.33 - 27.77) / 27.77) / 4 * 100)
    assert adatask["delta_m_published_p"] != ""
    assert adam["delta_m_single_task"] == ""
    md = paths["md"].read_text()
    assert "Δm vs published (%) |" in md and "Δm vs single-task" not in md


def test_no_delta_m_for_synthetic_data_without_single_task_runs(tmp_path):
    paths = aggregate(make_sweep(tmp_path / "synth", single_task=False), tmp_path / "results")
    assert all(r["delta_m_published"] == r["delta_m_single_task"] == "" for r in read_csv(paths["csv"]))
    md = paths["md"].read_text()
    assert "Δm" not in md.split("## Welch")[0]
    assert "published: SynthCity data is synthetic" in md and "single-task: not available" in md


def test_baseline_file_option_and_its_setup_check(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "runs" / "demo", single_task=False)
    baseline = build_baseline([read_run(d, setting_definitions()) for d in single_task_runs(tmp_path / "elsewhere")])
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    assert main([str(sweep), "--results", str(tmp_path / "results"), "--baseline", str(path)]) == 0
    adam = read_csv(tmp_path / "results" / "demo.csv")[0]
    assert float(adam["delta_m_single_task"]) == pytest.approx(hand_delta_m(means(ADAM), OWN))
    assert f"single-task: from {path}; miou 0.61 ± 0.014," in (tmp_path / "results" / "demo.md").read_text()
    baseline["source"]["setup"]["classes"] = 19
    path.write_text(json.dumps(baseline))
    assert main([str(sweep), "--results", str(tmp_path / "results"), "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert "another setup" in err and f"classes: 19 ({path}) vs 7 (the sweep's runs)" in err
    baseline["source"]["setup"]["classes"] = 7
    baseline["source"]["setup"]["lr"] = 3e-3
    path.write_text(json.dumps(baseline))
    assert main([str(sweep), "--results", str(tmp_path / "results"), "--baseline", str(path)]) == 2
    assert f"lr: 0.003 ({path}) vs 0.0001 (the sweep's runs)" in capsys.readouterr().err
    # A file from before setup_of recorded only the data, classes and network: it is rebuilt, not trusted.
    baseline["source"]["setup"] = {"dataset": "synthcity", "synthetic": True, "image_size": [64, 128],
                                   "train_samples": 40, "val_samples": 16, "classes": 7, "arch": "mtan",
                                   "width_mult": 0.25}
    path.write_text(json.dumps(baseline))
    assert main([str(sweep), "--results", str(tmp_path / "results"), "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"  batch_size: (absent) ({path}) vs 8 (the sweep's runs)\n" in err and "rebuild it" in err


def test_refuses_a_sweep_of_mixed_setups(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "mixed")
    make_run(sweep, "sgd-ew-s0", of_seed(ADAM, 0), method="sgd", classes=19)
    assert main([str(sweep), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "sgd-ew-s0" in err and "classes" in err


def test_a_sweep_without_finished_runs_lists_them(tmp_path):
    sweep = tmp_path / "early"
    make_run(sweep, "adam-ew-s0", {k: 0.5 for k in ADAM}, finished=False)
    paths = aggregate(sweep, tmp_path / "results")
    assert "No finished multi-task runs." in paths["md"].read_text()
    assert "adam-ew-s0 | unfinished" in paths["md"].read_text()
    assert read_csv(paths["csv"]) == [] and "png" not in paths


def test_each_run_not_averaged_is_listed_with_its_state(tmp_path):
    """The states of runfolder/state.py, from the folders and the sweep's .exit files."""
    sweep = tmp_path / "runs" / "s"
    make_run(sweep, "adam-ew-s0", {k: 0.5 for k in ADAM})
    (sweep / "created").mkdir()  # no config.json yet: starting, or stopped before its first write
    (sweep / "created-failed").mkdir()
    (sweep / "created-failed.exit").write_text("2\n")
    make_run(sweep, "stopped", {k: 0.5 for k in ADAM}, seed=1, finished=False)
    (sweep / "stopped.exit").write_text("0\n")  # ended well, yet unfinished: it resumes, no crash
    (sweep / "killed.exit").write_text("143\n")
    (sweep / "killed.log").write_text("stopped by SIGTERM\n")
    (sweep / "done-elsewhere.exit").write_text("0\n")  # a folder moved away after it finished
    lines = aggregate(sweep, tmp_path / "results")["md"].read_text().split("## Not averaged")[1].splitlines()
    assert [line for line in lines if line.startswith("| ") and not line.startswith("| Run")] == [
        "| created | unfinished (no config.json yet) | 0 |  |",
        "| created-failed | crashed (exit 2), no config.json | 0 |  |",
        "| stopped | unfinished (running or interrupted) | 4 |  |",
        "| killed | failed before creating its run folder (exit 143) | 0 | `stopped by SIGTERM` |",
    ]


def refusal(capsys, sweep, tmp_path, *options):
    """stderr of the CLI refusing the sweep: exit 2, no traceback, nothing written."""
    assert main([str(sweep), "--results", str(tmp_path / "results"), *options]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err and not (tmp_path / "results").exists()
    return captured.err


def test_refuses_seeds_with_another_lr_naming_both_values_and_runs(tmp_path, capsys):
    sweep = tmp_path / "runs" / "lr"
    make_run(sweep, "adam-ew-s0", of_seed(ADAM, 0), seed=0)
    make_run(sweep, "adam-ew-s1", of_seed(ADAM, 1), seed=1, lr=3e-3)
    err = refusal(capsys, sweep, tmp_path)
    assert err.startswith(f"error: {sweep}: the finished runs differ in settings that change results:\n")
    assert "  lr: 0.0001 (adam-ew-s0) vs 0.003 (adam-ew-s1)\n" in err
    assert f"python3 -m evaluation.aggregate {sweep} --separate lr;" in err and "leave the runs that differ out" in err


@pytest.mark.parametrize("change, line", [
    ({"data": {"identity": {"kind": "synthcity", "generator": {"seed": 1}}}},
     ('data_identity: {"generator": {"seed": 0}, "kind": "synthcity"} (adam-ew-s0, adam-ew-s1, adam-ew-s2, '
      'adam-pcgrad-s0 and 7 more) vs {"generator": {"seed": 1}, "kind": "synthcity"} (sgd-ew-s0)')),
    ({"epochs": 20}, "epochs: 12 ("), ({"batch_size": 16}, "batch_size: 8 ("),
    ({"lr_gamma": 0.1}, "lr_gamma: 0.5 ("), ({"depth_rule": "multiply"}, "depth_rule: divide ("),
    # a run from before --image-resampling (no key: opencv) never averages with today's default
    ({"image_resampling": "align_corners"}, "image_resampling: opencv ("),
    ({"clip_grad_norm": 1.0}, "clip_grad_norm: null ("), ({"augment": False}, "augment: true ("),
    ({"data": {"train_samples": 80}}, "train_samples: 40 (")])
def test_refuses_runs_that_differ_in_any_setting_that_changes_results(tmp_path, capsys, change, line):
    sweep = make_sweep(tmp_path / "mixed")
    make_run(sweep, "sgd-ew-s0", of_seed(ADAM, 0), method="sgd", **change)
    err = refusal(capsys, sweep, tmp_path)
    key = line.split(":")[0]
    assert f"\n  {line}" in err and "(sgd-ew-s0)\n" in err and f"--separate {key};" in err


def test_another_methods_option_is_no_setting_of_a_run(tmp_path, capsys):
    """An ew run's config that records PCGrad's seed (as files before schema 6 did) averages with
    the others: the option cannot change an ew run."""
    sweep = make_sweep(tmp_path / "mixed", single_task=False)
    make_run(sweep, "adam-ew-s9", of_seed(ADAM, 0), seed=9, pcgrad_seed=3)
    assert main([str(sweep), "--results", str(tmp_path / "results")]) == 0, capsys.readouterr().err


def test_lists_every_differing_setting(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "mixed", single_task=False)
    make_run(sweep, "sgd-ew-s0", of_seed(ADAM, 0), method="sgd", lr=3e-3, batch_size=16, data={"val_samples": 8})
    err = refusal(capsys, sweep, tmp_path)
    differing = [line.split(":")[0].strip() for line in err.splitlines() if line.startswith("  ")]
    assert differing == ["batch_size", "lr", "val_samples"]
    assert "--separate batch_size lr val_samples;" in err


def lr_sweep(sweep, single_task=True):
    """adam + ew and adam_with_adatask + ew, 3 seeds each, at lr 1e-4 (ADAM, ADATASK) and at lr 3e-3
    (ADATASK for both, so that adam_with_adatask ties with its own lr's adam + ew); single-task
    runs only at lr 1e-4."""
    make_group(sweep, "adam", "ew", ADAM)
    make_group(sweep, "adam_with_adatask", "ew", ADATASK)
    for method in ("adam", "adam_with_adatask"):
        make_group(sweep, method, "ew", ADATASK, prefix="lr3e-3-", lr=3e-3)
    if single_task:
        single_task_runs(sweep)
    return sweep


def test_separate_lr_makes_rows_per_lr_tested_against_adam_ew_with_the_same_lr(tmp_path):
    paths = aggregate(lr_sweep(tmp_path / "runs" / "lrs"), tmp_path / "results", separate=["lr"])
    rows = read_csv(paths["csv"])
    assert tuple(paths["csv"].read_text().splitlines()[0].split(",")) == csv_fields(TWO, ("lr",))
    assert [(r["method"], r["lr"], r["seeds"]) for r in rows] == [
        ("adam", "0.0001", "0 1 2"), ("adam", "0.003", "0 1 2"),
        ("adam_with_adatask", "0.0001", "0 1 2"), ("adam_with_adatask", "0.003", "0 1 2")]
    adam_slow, adam_fast, adatask_slow, adatask_fast = rows
    for key, values in ADAM.items():
        assert float(adam_slow[key]) == pytest.approx(means(ADAM)[key])
        assert float(adam_fast[key]) == float(adatask_fast[key]) == pytest.approx(means(ADATASK)[key])
        assert float(adatask_slow[f"{key}_p"]) == pytest.approx(
            stats.ttest_ind(ADATASK[key], values, equal_var=False).pvalue, rel=1e-9)
        assert float(adatask_fast[f"{key}_p"]) == pytest.approx(1.0)  # against lr 3e-3's adam + ew, not lr 1e-4's
    # Δm against single-task runs with the same lr: there are some only for lr 1e-4.
    assert float(adatask_slow["delta_m_single_task"]) == pytest.approx(hand_delta_m(means(ADATASK), OWN))
    assert adam_fast["delta_m_single_task"] == adatask_fast["delta_m_single_task"] == ""
    md = paths["md"].read_text()
    assert "| Method | Weighting | lr | Seeds | mIoU (%) |" in md
    assert "| adam_with_adatask | ew | 0.003 | 3 | 57.00 ± 2.65 |" in md
    assert "against the adam + ew row with the same lr; Holm" in md and "per row: lr" in md
    assert "- single-task (lr=0.0001): the sweep's single-task runs, semantic seeds [0, 1]" in md
    assert "- single-task (lr=0.003): not available: no single-task runs" in md


def test_separate_uses_a_baseline_file_only_for_the_rows_of_its_setup(tmp_path):
    baseline = build_baseline([read_run(d, setting_definitions()) for d in single_task_runs(tmp_path / "elsewhere")])
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    paths = aggregate(lr_sweep(tmp_path / "runs" / "lrs", single_task=False), tmp_path / "results", path, ["lr"])
    rows = read_csv(paths["csv"])
    assert [r["delta_m_single_task"] != "" for r in rows] == [True, False, True, False]
    assert f"- single-task (lr=0.003): not available: {path} was measured with other values of lr" in \
        paths["md"].read_text()


def test_separate_refuses_an_unknown_setting_naming_the_valid_ones(tmp_path, capsys):
    err = refusal(capsys, lr_sweep(tmp_path / "runs" / "lrs"), tmp_path, "--separate", "lr", "learning_rate")
    assert "--separate learning_rate: not a setting of these runs" in err
    assert all(f", {key}, " in err for key in ("batch_size", "classes", "clip_grad_norm", "data_identity", "lr"))


def test_a_schema_1_sweep_still_aggregates_and_is_still_checked(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "old", schema=1)
    config = json.loads((sweep / "adam-ew-s0" / "config.json").read_text())
    assert "schema_version" not in config and config["settings"]["device"] == "cpu"
    paths = aggregate(sweep, tmp_path / "results")
    adam = read_csv(paths["csv"])[0]
    assert float(adam["miou"]) == pytest.approx(0.52)
    assert float(adam["delta_m_single_task"]) == pytest.approx(hand_delta_m(means(ADAM), OWN))
    # Runs on other machines (device, loader workers) still average; another lr does not.
    make_run(sweep, "adam-ew-s4", of_seed(ADAM, 0), seed=4, schema=1, device="cuda", num_workers=4)
    aggregate(sweep, tmp_path / "results")
    make_run(sweep, "adam-ew-s5", of_seed(ADAM, 0), seed=5, schema=1, lr=3e-3)
    assert "\n  lr: 0.0001 (adam-ew-s0, " in refusal(capsys, sweep, tmp_path / "other")
    # Without a data identity, an old run cannot be averaged with a new one.
    (sweep / "adam-ew-s5" / "summary.json").unlink()
    make_run(sweep, "adam-ew-s6", of_seed(ADAM, 0), seed=6)
    assert 'data_identity: null (adam-ew-s0, ' in refusal(capsys, sweep, tmp_path / "other")


THREE = ("semantic", "instance", "depth")


def test_a_cityscapes3_sweep_reports_inst_err_and_delta_m_over_five_metrics(tmp_path):
    sweep = tmp_path / "runs" / "three"
    adam = ADAM | {"inst_err": [6.0, 6.5, 7.0]}
    make_group(sweep, "adam", "ew", adam, tasks=THREE)
    single_task_runs(sweep)  # semantic and depth, seeds 0 and 1
    for seed, err in ((0, 5.0), (1, 7.0)):
        make_run(sweep, f"single-instance-s{seed}", {"inst_err": err}, seed=seed, tasks=("instance",))
    paths = aggregate(sweep, tmp_path / "results")
    row, = read_csv(paths["csv"])
    assert tuple(paths["csv"].read_text().splitlines()[0].split(",")) == csv_fields(THREE)
    assert float(row["inst_err"]) == pytest.approx(6.5) and float(row["inst_err_std"]) == pytest.approx(0.5)
    own = OWN | {"inst_err": 6.0}
    m = means(adam)
    expected = (hand_delta_m(m, own) * 4 + (m["inst_err"] - own["inst_err"]) / own["inst_err"] * 100) / 5
    assert float(row["delta_m_single_task"]) == pytest.approx(expected)
    md = paths["md"].read_text()
    assert "runs of semantic + instance + depth" in md
    assert "| Seeds | mIoU (%) | PixAcc (%) | InstErr | AbsErr | RelErr | Δm vs single-task (%) |" in md
    assert "instance seeds [0, 1]" in md and "inst_err 6" in md


def test_multi_task_runs_of_different_task_sets_are_never_averaged_together(tmp_path, capsys):
    sweep = tmp_path / "runs" / "mixed"
    make_group(sweep, "adam", "ew", ADAM)
    make_group(sweep, "adam", "pcgrad", ADAM | {"inst_err": [6.0, 6.5, 7.0]}, tasks=THREE)
    assert main([str(sweep), "--results", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "different task sets" in err and "semantic + depth: adam-ew-s0" in err
    assert "semantic + instance + depth: adam-pcgrad-s0" in err and "Traceback" not in err


def test_a_single_task_run_of_another_task_is_listed_not_used(tmp_path):
    sweep = make_sweep(tmp_path / "runs" / "demo")
    make_run(sweep, "single-instance-s0", {"inst_err": 5.0}, tasks=("instance",))
    paths = aggregate(sweep, tmp_path / "results")
    md = paths["md"].read_text()
    assert "| single-instance-s0 | finished, single-task instance: not a task of the sweep's semantic + depth runs" in md
    assert "inst_err" not in paths["csv"].read_text()
