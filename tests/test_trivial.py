import json
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


def _write_split(root, split, samples):
    for sub in ("image", "label_7", "label_19", "depth"):
        (root / split / sub).mkdir(parents=True)
    for i, (label, depth) in enumerate(samples):
        label = np.array(label, dtype=np.float32)
        np.save(root / split / "image" / f"{i}.npy", np.zeros(label.shape + (3,), np.float32))
        np.save(root / split / "label_7" / f"{i}.npy", label)
        np.save(root / split / "label_19" / f"{i}.npy", label)
        np.save(root / split / "depth" / f"{i}.npy", np.array(depth, dtype=np.float32)[..., None])


@pytest.fixture
def tiny(tmp_path):
    _write_split(tmp_path, "train", TRAIN)
    _write_split(tmp_path, "val", VAL)
    return tmp_path


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


def test_trivial_metrics_by_hand(tiny):
    result = trivial_metrics(tiny, num_classes=7)
    assert set(result) == set(EXPECTED)
    for key, value in EXPECTED.items():
        assert result[key] == pytest.approx(value), key


def test_cli_prints_and_writes_json(tiny, tmp_path):
    out = tmp_path / "trivial.json"
    proc = subprocess.run([sys.executable, "-m", "evaluation.trivial", "--data-path", str(tiny),
                           "--classes", "19", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, check=True)
    assert "pix_acc" in proc.stdout and "0.7500" in proc.stdout
    assert json.loads(out.read_text())["miou"] == pytest.approx(0.25)


def test_missing_split_names_the_folder(tmp_path):
    _write_split(tmp_path, "train", TRAIN)
    with pytest.raises(ValueError, match=r"val[/\\]image"):
        trivial_metrics(tmp_path)
