import json

import pytest

from evaluation.delta_m import METRIC_SIGNS, PUBLISHED_BASELINE, PUBLISHED_NAME, delta_m, load_baseline, select_baseline

# METHODS §2 table (Nash-MTL paper): mIoU, PixAcc (percent), AbsErr, RelErr, printed Δm,
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
    assert METRIC_SIGNS == {"miou": -1, "pix_acc": -1, "abs_err": +1, "rel_err": +1}
    assert delta_m(PUBLISHED_BASELINE, PUBLISHED_BASELINE) == 0
    for key, sign in METRIC_SIGNS.items():
        up = dict(PUBLISHED_BASELINE, **{key: PUBLISHED_BASELINE[key] * 1.1})
        # +10% on one of four metrics moves Δm by 2.5 points, downwards where higher is better.
        assert delta_m(up, PUBLISHED_BASELINE) == pytest.approx(sign * 2.5)


def test_delta_m_needs_all_four_metrics():
    with pytest.raises(ValueError, match="rel_err"):
        delta_m({k: v for k, v in PUBLISHED_BASELINE.items() if k != "rel_err"}, PUBLISHED_BASELINE)


def _write(tmp_path, content):
    path = tmp_path / "baseline.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_load_baseline_reads_the_four_metrics_and_ignores_extra_keys(tmp_path):
    path = _write(tmp_path, dict(PUBLISHED_BASELINE, source="single-task runs, seeds 0-2"))
    assert load_baseline(path) == PUBLISHED_BASELINE


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
        load_baseline(path)


def test_load_baseline_missing_file_names_it(tmp_path):
    with pytest.raises(ValueError, match="nowhere.json"):
        load_baseline(tmp_path / "nowhere.json")


def test_select_baseline_published_only_for_real_7class_128x256():
    baseline, name, _ = select_baseline(7, (128, 256), synthetic=False)
    assert baseline == PUBLISHED_BASELINE and name == PUBLISHED_NAME
    assert select_baseline(7, [128, 256], synthetic=False)[1] == PUBLISHED_NAME


@pytest.mark.parametrize("args, why", [
    ((7, (128, 256), True), "synthetic"),
    ((19, (128, 256), False), "19 classes"),
    ((7, (256, 512), False), "image size 256x512"),
])
def test_select_baseline_refuses_other_setups(args, why):
    baseline, name, reason = select_baseline(*args)
    assert baseline is None and name is None
    assert why in reason and "--baseline" in reason


def test_select_baseline_file_wins(tmp_path):
    own = dict(PUBLISHED_BASELINE, miou=0.5)
    path = _write(tmp_path, own)
    baseline, name, _ = select_baseline(19, (64, 128), synthetic=True, baseline_file=path)
    assert baseline == own and name == str(path)
