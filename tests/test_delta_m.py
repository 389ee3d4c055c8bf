import json

import pytest

import tasks
from data.datasets import DATASETS, Dataset
from evaluation.delta_m import PUBLISHED_BASELINE, PUBLISHED_NAME, delta_m, load_baseline, select_baseline
from tasks import DEFAULT_TASKS, Metric, Task

SIGNS = {"miou": -1, "pix_acc": -1, "abs_err": +1, "rel_err": +1}
THREE = ("semantic", "instance", "depth")

# Nash-MTL paper table (docs/methods.md, "Δm and baselines"): mIoU, PixAcc (percent), AbsErr, RelErr, printed Δm,
# then the four relative changes s_j (M_j - B_j) / B_j x 100 worked out by hand, in the
# order mIoU, PixAcc, AbsErr, RelErr (mIoU and PixAcc divided by 100 first).
ROWS = {
    "LS": (75.18, 93.49, 0.0155, 46.77, 22.60, (-1.5809, -0.3542, 24.0, 68.4192)),
    "SI": (70.95, 91.73, 0.0161, 33.83, 14.11, (4.1346, 1.5350, 28.8, 21.8221)),
    "DWA": (75.24, 93.52, 0.0160, 44.37, 21.45, (-1.6619, -0.3864, 28.0, 59.7767)),
    "UW": (72.02, 92.85, 0.0140, 30.13, 5.89, (2.6888, 0.3328, 12.0, 8.4984)),
    "MGDA": (68.84, 91.54, 0.0309, 33.50, 44.14, (6.9855, 1.7389, 147.2, 20.6338)),
    "PCGrad": (75.13, 93.48, 0.0154, 42.07, 18.29, (-1.5133, -0.3435, 23.2, 51.4944)),
    "CAGrad": (75.16, 93.48, 0.0141, 37.60, 11.64, (-1.5538, -0.3435, 12.8, 35.3979)),
    "IMTL-G": (75.33, 93.49, 0.0135, 38.41, 11.10, (-1.7835, -0.3542, 8.0, 38.3147)),
    "Nash-MTL": (75.41, 93.66, 0.0129, 35.02, 6.82, (-1.8916, -0.5367, 3.2, 26.1073)),
}


def _metrics(row):
    miou, pix_acc, abs_err, rel_err = row[:4]
    return {"miou": miou / 100, "pix_acc": pix_acc / 100, "abs_err": abs_err, "rel_err": rel_err}


@pytest.mark.parametrize("name", ROWS)
def test_delta_m_matches_hand_computation_and_printed_value(name):
    row = ROWS[name]
    value = delta_m(_metrics(row), PUBLISHED_BASELINE)
    assert value == pytest.approx(sum(row[5]) / 4, abs=1e-3)
    assert value == pytest.approx(row[4], abs=0.15)  # the table's entries are rounded


def test_signs_lower_is_better():
    assert {m.key: m.delta_m_sign for m in tasks.reported_metrics(DEFAULT_TASKS)} == SIGNS
    assert delta_m(PUBLISHED_BASELINE, PUBLISHED_BASELINE) == 0
    for key, sign in SIGNS.items():
        up = dict(PUBLISHED_BASELINE, **{key: PUBLISHED_BASELINE[key] * 1.1})
        # +10% on one of four metrics moves Δm by 2.5 points, downwards where higher is better.
        assert delta_m(up, PUBLISHED_BASELINE) == pytest.approx(sign * 2.5)


def test_delta_m_needs_every_metric_of_the_baseline():
    with pytest.raises(ValueError, match="rel_err"):
        delta_m({k: v for k, v in PUBLISHED_BASELINE.items() if k != "rel_err"}, PUBLISHED_BASELINE)
    with pytest.raises(ValueError, match="reported metrics"):
        delta_m(PUBLISHED_BASELINE, {"source": {}})


def test_delta_m_averages_over_the_baselines_metrics_only():
    # a baseline's "source" and the run's other entries (losses, a per-class dict) do not count
    metrics = dict(PUBLISHED_BASELINE, miou=PUBLISHED_BASELINE["miou"] * 1.1, loss_depth=3.0, class_iou={"road": 0.9})
    assert delta_m(metrics, dict(PUBLISHED_BASELINE, source={"kind": "x"})) == pytest.approx(-2.5)
    semantic_only = {k: PUBLISHED_BASELINE[k] for k in ("miou", "pix_acc")}
    assert delta_m(metrics, semantic_only) == pytest.approx(-5.0)  # +10% on one of two metrics


def test_delta_m_of_three_tasks_averages_five_metrics():
    baseline = {"miou": 0.60, "pix_acc": 0.80, "inst_err": 4.0, "abs_err": 0.02, "rel_err": 0.5}
    metrics = {"miou": 0.66, "pix_acc": 0.78, "inst_err": 3.0, "abs_err": 0.025, "rel_err": 0.45}
    # mIoU +10% (better: -10), PixAcc -2.5% (worse: +2.5), InstErr -25% (better: -25),
    # AbsErr +25% (worse: +25), RelErr -10% (better: -10): (-10 + 2.5 - 25 + 25 - 10) / 5 = -3.5
    assert delta_m(metrics, baseline) == pytest.approx(-3.5)


class ToyTask(Task):
    name = "toy"
    metrics = (Metric("toy_score", "ToyScore", True), Metric("toy_err", "ToyErr", False, digits=3, unit="u"))


def test_delta_m_of_a_task_registered_in_the_test(monkeypatch, tmp_path):
    monkeypatch.setitem(tasks.TASKS, "toy", tasks.TaskEntry("toy", (), ("toy_score", "toy_err"), f"{__name__}:ToyTask"))
    baseline = dict(PUBLISHED_BASELINE, toy_score=2.0, toy_err=4.0)
    metrics = dict(PUBLISHED_BASELINE, toy_score=3.0, toy_err=2.0)
    # the four metrics unchanged; toy_score +50% (higher is better: -50), toy_err -50% (-50): -100 / 6
    assert delta_m(metrics, baseline) == pytest.approx(-100 / 6)
    path = _write(tmp_path, dict(baseline, extra=1))
    assert load_baseline(path, ["semantic", "depth", "toy"]) == baseline
    assert load_baseline(path, ["toy"]) == {"toy_score": 2.0, "toy_err": 4.0}
    _, name, why = select_baseline(["semantic", "depth", "toy"], 7, (128, 256), dataset="cityscapes")
    assert name is None and "tasks semantic + depth + toy" in why


def _write(tmp_path, content):
    path = tmp_path / "baseline.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_load_baseline_reads_the_four_metrics_and_ignores_extra_keys(tmp_path):
    path = _write(tmp_path, dict(PUBLISHED_BASELINE, source="single-task runs, seeds 0-2", inst_err=3.0))
    assert load_baseline(path, DEFAULT_TASKS) == PUBLISHED_BASELINE
    assert load_baseline(path, ["depth", "semantic"]) == PUBLISHED_BASELINE
    assert load_baseline(path, THREE) == dict(PUBLISHED_BASELINE, inst_err=3.0)
    assert list(load_baseline(path, THREE)) == ["miou", "pix_acc", "inst_err", "abs_err", "rel_err"]
    assert load_baseline(path, ["depth"]) == {"abs_err": 0.0125, "rel_err": 27.77}


def test_load_baseline_names_the_missing_metrics_of_the_tasks(tmp_path):
    path = _write(tmp_path, PUBLISHED_BASELINE)
    with pytest.raises(ValueError, match=r"baseline.json: no inst_err, which tasks semantic \+ instance \+ depth"):
        load_baseline(path, THREE)
    path = _write(tmp_path, {"abs_err": 0.01})
    with pytest.raises(ValueError, match="no miou, pix_acc, rel_err"):
        load_baseline(path, DEFAULT_TASKS)


@pytest.mark.parametrize("content", [
    "{not json",
    [0.74, 0.93, 0.0125, 27.77],
    {k: v for k, v in PUBLISHED_BASELINE.items() if k != "abs_err"},
    dict(PUBLISHED_BASELINE, abs_err=-0.01),
    dict(PUBLISHED_BASELINE, abs_err=0),
    dict(PUBLISHED_BASELINE, rel_err="27.77"),
    dict(PUBLISHED_BASELINE, rel_err=True),
    dict(PUBLISHED_BASELINE, miou=74.01),  # percent, not a fraction
])
def test_load_baseline_errors_name_the_file(tmp_path, content):
    path = _write(tmp_path, content)
    with pytest.raises(ValueError, match="baseline.json"):
        load_baseline(path, DEFAULT_TASKS)


def test_load_baseline_checks_inst_err_of_three_tasks(tmp_path):
    for bad in (0, -1.0, "3", None):
        with pytest.raises(ValueError, match="inst_err"):
            load_baseline(_write(tmp_path, dict(PUBLISHED_BASELINE, inst_err=bad)), THREE)
    # InstErr is in pixels, not a fraction: above 1 is fine
    assert load_baseline(_write(tmp_path, dict(PUBLISHED_BASELINE, inst_err=12.5)), THREE)["inst_err"] == 12.5


def test_load_baseline_missing_file_names_it(tmp_path):
    with pytest.raises(ValueError, match="nowhere.json"):
        load_baseline(tmp_path / "nowhere.json", DEFAULT_TASKS)


def test_select_baseline_published_only_for_real_7class_128x256():
    baseline, name, _ = select_baseline(DEFAULT_TASKS, 7, (128, 256), dataset="cityscapes")
    assert baseline == PUBLISHED_BASELINE and name == PUBLISHED_NAME
    assert select_baseline(["depth", "semantic"], 7, [128, 256], dataset="cityscapes")[1] == PUBLISHED_NAME


@pytest.mark.parametrize("args, why", [
    ((DEFAULT_TASKS, 7, (128, 256), "synthcity"), "SynthCity data is synthetic"),
    ((DEFAULT_TASKS, 19, (128, 256), "cityscapes"), "19 classes"),
    ((DEFAULT_TASKS, 7, (256, 512), "cityscapes"), "image size 256x512"),
    ((THREE, 7, (128, 256), "cityscapes"), "tasks semantic + instance + depth (the published numbers are semantic + depth)"),
    ((("depth",), 7, (128, 256), "cityscapes"), "tasks depth"),
])
def test_select_baseline_refuses_other_setups(args, why):
    baseline, name, reason = select_baseline(*args)
    assert baseline is None and name is None
    assert why in reason and "--baseline" in reason


def test_select_baseline_file_wins(tmp_path):
    own = dict(PUBLISHED_BASELINE, miou=0.5)
    path = _write(tmp_path, own)
    baseline, name, _ = select_baseline(DEFAULT_TASKS, 19, (64, 128), dataset="synthcity", baseline_file=path)
    assert baseline == own and name == str(path)
    path = _write(tmp_path, dict(own, inst_err=2.0))
    baseline, _, _ = select_baseline(THREE, 19, (64, 128), dataset="synthcity", baseline_file=path)
    assert baseline == dict(own, inst_err=2.0)


class RealElsewhere(Dataset):
    """A third dataset, registered in the test alone; published CityScapes numbers cannot apply to it."""

    name = "elsewhere"
    not_comparable = "Elsewhere is another city's data"


def test_a_dataset_registered_in_the_test_says_why_published_numbers_do_not_apply(monkeypatch):
    monkeypatch.setitem(DATASETS, "elsewhere", RealElsewhere())
    baseline, name, why = select_baseline(DEFAULT_TASKS, 7, (128, 256), dataset="elsewhere")
    assert baseline is None and name is None and why.startswith("Elsewhere is another city's data: published")
    with pytest.raises(ValueError, match="dataset 'nowhere' is not registered"):
        select_baseline(DEFAULT_TASKS, 7, (128, 256), dataset="nowhere")
