import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.trivial import trivial_metrics

REPO = Path(__file__).resolve().parents[1]
V = -1  # void label

# 2x3 samples: (label, depth); depth 0 = invalid.
TRAIN = [
    ([[0, 0, 1], [1, 1, V]], [[1, 1, 0], [2, 2, 0]]),
    ([[1, 2, 2], [V, V, V]], [[0, 0, 0], [4, 0, 0]]),
]
VAL = [
    ([[1, 1, 0], [2, V, 1]], [[1, 2, 0], [4, 0, 0]]),
    ([[V, V, V], [V, V, 0]], [[0, 0, 0], [0, 0, 0]]),  # no valid depth
    ([[1, 1, 1], [1, 1, 1]], [[2, 2, 2], [2, 2, 2]]),
]


# Instance targets (H, W, 3): {(row, col): (dy, dx)} on instance pixels (channel 2 = 1), 0 elsewhere.
TRAIN_INSTANCES = [{(0, 0): (1.0, 1.0)}, {}]
VAL_INSTANCES = [
    {(0, 0): (0.5, -1.0), (0, 1): (0.5, 0.0)},
    {},  # no instance pixel
    {(1, 2): (-2.0, 3.0)},
]


def _write_split(root, split, samples):
    for sub in ("image", "label_7", "label_19", "depth"):
        (root / split / sub).mkdir(parents=True)
    for i, (label, depth) in enumerate(samples):
        label = np.array(label, dtype=np.float32)
        np.save(root / split / "image" / f"{i}.npy", np.zeros(label.shape + (3,), np.float32))
        np.save(root / split / "label_7" / f"{i}.npy", label)
        np.save(root / split / "label_19" / f"{i}.npy", label)
        np.save(root / split / "depth" / f"{i}.npy", np.array(depth, dtype=np.float32)[..., None])


def _write_instances(root, split, instances, shape=(2, 3)):
    (root / split / "instance").mkdir()
    for i, offsets in enumerate(instances):
        target = np.zeros(shape + (3,), np.float32)
        for pixel, (dy, dx) in offsets.items():
            target[pixel] = (dy, dx, 1.0)
        np.save(root / split / "instance" / f"{i}.npy", target)


@pytest.fixture
def tiny(tmp_path):
    _write_split(tmp_path, "train", TRAIN)
    _write_split(tmp_path, "val", VAL)
    return tmp_path


@pytest.fixture
def tiny3(tiny):
    """The same data with instance/ in both splits: all three tasks of the registry."""
    _write_instances(tiny, "train", TRAIN_INSTANCES)
    _write_instances(tiny, "val", VAL_INSTANCES)
    return tiny


# Train class counts 0: 2, 1: 4, 2: 2 -> class 1; valid train depths 1,1,2,2,4 -> mean 2.
# Val, predicting class 1: 12 labelled pixels, 9 of them class 1 -> PixAcc 0.75;
# IoU_1 = 9 / (9 + 12 - 9), IoU_0 = IoU_2 = 0, classes 3..6 absent -> mIoU = 0.75 / 3.
# Val, predicting depth 2: sample 0 has t = 1, 2, 4 (|e| = 1, 0, 2; rel 1, 0, 0.5), sample 1
# none, sample 2 six pixels at t = 2 (no error). Per sample: abs 1 and 0, rel 0.5 and 0.
EXPECTED = {
    "majority_class": 1, "mean_depth": 2.0,
    "pix_acc": 0.75, "miou": 0.25,
    "abs_err": 0.5, "rel_err": 0.25,
    "abs_err_px": 3 / 9, "rel_err_px": 1.5 / 9,
}


# Zero offsets on val: |dy| + |dx| = 1.5 + 0.5 over sample 0's two instance pixels, 0 in
# sample 1 (none), 5 at sample 2's one pixel: 7 over 3 pixels x 2 components -> InstErr 7 / 6.
INST_ERR = 7 / 6
# Per class IoU at 7 classes, predicting class 1: 0 and 2 occur (IoU 0), 1 has 0.75, 3..6 never.
CLASS_IOU = {0: 0.0, 1: 0.75, 2: 0.0}


def _check(result, expected):
    for key, value in expected.items():
        assert result[key] == pytest.approx(value), key


def test_trivial_metrics_by_hand(tiny):
    result = trivial_metrics(tiny, num_classes=7)
    assert result["tasks"] == ["semantic", "depth"]  # no instance/ folder: not scored
    assert set(result) == set(EXPECTED) | {"tasks", "class_iou", "abs_err_px", "rel_err_px", "description"}
    _check(result, EXPECTED)
    ious = list(result["class_iou"].values())
    assert [ious[i] for i in CLASS_IOU] == pytest.approx(list(CLASS_IOU.values()))
    assert ious[3:] == [None] * 4
    assert result["description"] == "class 1 everywhere, depth 2.000000 everywhere"


def test_instance_scored_with_zero_offsets_when_its_folder_exists(tiny3):
    result = trivial_metrics(tiny3, num_classes=7)
    assert result["tasks"] == ["semantic", "instance", "depth"]
    _check(result, {**EXPECTED, "inst_err": INST_ERR})
    assert "zero offsets everywhere" in result["description"]


def test_tasks_restricts_the_scored_tasks(tiny3):
    result = trivial_metrics(tiny3, tasks=["instance"])
    assert result["tasks"] == ["instance"]
    assert result["inst_err"] == pytest.approx(INST_ERR)
    assert "miou" not in result and "mean_depth" not in result


def test_asking_for_a_task_without_folders_fails(tiny):
    with pytest.raises(ValueError, match=r"val: no folders for task instance \(present: semantic, depth\)"):
        trivial_metrics(tiny, tasks=["semantic", "instance"])


def test_a_fitted_predictor_needs_its_train_folder(tiny):
    """val's folders choose the tasks; a predictor fitted on train then needs train's folder
    (instance's zero offsets fit nothing: val's instance/ alone will do, see below)."""
    shutil.rmtree(tiny / "train" / "depth")
    with pytest.raises(ValueError, match=r"train: no depth/, which the trivial depth predictor"):
        trivial_metrics(tiny)


def test_instance_in_train_only_is_not_scored(tiny):
    _write_instances(tiny, "train", TRAIN_INSTANCES)
    assert trivial_metrics(tiny)["tasks"] == ["semantic", "depth"]


def test_cli_prints_and_writes_json(tiny, tmp_path):
    out = tmp_path / "trivial.json"
    proc = subprocess.run([sys.executable, "-m", "evaluation.trivial", "--data-path", str(tiny),
                           "--classes", "19", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, check=True)
    assert "pix_acc" in proc.stdout and "0.7500" in proc.stdout
    assert json.loads(out.read_text())["miou"] == pytest.approx(0.25)


def test_cli_scores_instance(tiny3, tmp_path):
    out = tmp_path / "trivial.json"
    proc = subprocess.run([sys.executable, "-m", "evaluation.trivial", "--data-path", str(tiny3),
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, check=True)
    assert f"inst_err    {INST_ERR:.4f}" in proc.stdout and "zero offsets everywhere" in proc.stdout
    assert json.loads(out.read_text())["inst_err"] == pytest.approx(INST_ERR)


def test_missing_split_names_the_folder(tmp_path):
    _write_split(tmp_path, "train", TRAIN)
    with pytest.raises(ValueError, match=r"val[/\\]image"):
        trivial_metrics(tmp_path)


def test_zero_offsets_score_the_mean_offset_length_on_instance_pixels(tiny):
    """CityScapes-3: with instance/ the zero-offset predictor's inst_err is the mean |dy|, |dx|
    over the val split's instance pixels; pixels outside instances do not count."""
    (tiny / "val" / "instance").mkdir()
    offsets = [np.zeros((2, 3, 3), np.float32) for _ in VAL]
    offsets[0][0, 0] = [1, -2, 1]   # |dy| + |dx| = 3
    offsets[0][0, 1] = [0, 0, 1]    # the centre pixel itself: 0
    offsets[0][1, 2] = [9, 9, 0]    # not an instance pixel: ignored
    offsets[2][1, 1] = [-0.5, 2.5, 1]  # 3
    for i, target in enumerate(offsets):
        np.save(tiny / "val" / "instance" / f"{i}.npy", target)
    result = trivial_metrics(tiny, num_classes=7)
    assert result["inst_err"] == pytest.approx((3 + 0 + 3) / (2 * 3))  # 3 instance pixels, 2 offsets each


def test_without_instance_targets_there_is_no_inst_err(tiny):
    assert "inst_err" not in trivial_metrics(tiny, num_classes=7)
