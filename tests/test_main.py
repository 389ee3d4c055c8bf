"""End-to-end runs of main_cityscapes.py on tiny data: the run folder contract and errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import main_cityscapes
from data.datasets import DATASETS
from data.labels import CATEGORY_NAMES
from evaluation.delta_m import PUBLISHED_BASELINE, PUBLISHED_NAME, delta_m

# main_cityscapes.main() run in this process seeds the global RNGs: given back after each test
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("seeded_and_restored")]

REPO = Path(__file__).resolve().parent.parent
SPLIT_KEYS = {"loss_semantic", "loss_depth", "miou", "pix_acc", "class_iou", "abs_err", "rel_err"}
TEST_KEYS = SPLIT_KEYS | {"abs_err_px", "rel_err_px", "delta_m"}


def train(data, out, name, *extra, epochs=1):
    argv = ["--data-path", str(data), "--epochs", str(epochs), "--batch-size", "4", "--width-mult", "0.125",
            "--num-workers", "0", "--device", "cpu", "--out", str(out), "--name", name, *extra]
    return main_cityscapes.main(argv)


def read_rows(run_dir, drop_wall_clock=False):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    if drop_wall_clock:
        for row in rows:
            row.pop("seconds")
    return rows


@pytest.mark.parametrize("method", ["adam", "adam_with_adatask"])
def test_one_epoch_writes_every_contract_file_and_key(tiny_synthcity, tmp_path, method):
    assert train(tiny_synthcity, tmp_path, "run", f"--method={method}") == 0
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["method"] == method and config["settings"]["seed"] == 42
    assert config["data"]["synthetic"] is True and config["data"]["image_size"] == [32, 64]
    assert config["parameters"]["total"] == config["parameters"]["shared"] + config["parameters"]["semantic"] \
        + config["parameters"]["depth"]
    assert {"torch", "numpy", "python"} <= set(config["versions"]) and "git_commit" in config
    [row] = read_rows(run)
    assert set(row) == {"epoch", "lr", "seconds", "train", "test"} and row["epoch"] == 0
    assert set(row["train"]) == SPLIT_KEYS | {"abs_err_px", "rel_err_px"}
    assert set(row["test"]) == TEST_KEYS and row["test"]["delta_m"] is None  # synthetic: no baseline
    assert list(row["test"]["class_iou"]) == list(row["train"]["class_iou"]) == list(CATEGORY_NAMES)
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) == {"final", "last10", "last10_epochs", "delta_m"} and summary["last10_epochs"] == 1
    assert summary["final"] == row["test"]
    assert summary["delta_m"] == {"final": None, "last10": None, "baseline": None}
    assert list(run.glob("events.out.tfevents.*"))


def test_two_runs_with_the_same_seed_are_identical(tiny_synthcity, tmp_path):
    """Same seed and settings: identical metrics, even with a different number of loader workers."""
    assert train(tiny_synthcity, tmp_path, "a", "--method=adam_with_adatask", epochs=2) == 0
    assert train(tiny_synthcity, tmp_path, "b", "--method=adam_with_adatask", "--num-workers", "2", epochs=2) == 0
    assert train(tiny_synthcity, tmp_path, "c", "--method=adam_with_adatask", "--seed", "7", epochs=2) == 0
    a, b, c = (read_rows(tmp_path / n, drop_wall_clock=True) for n in "abc")
    assert a == b
    assert a != c


def test_baseline_file_gives_delta_m(tiny_synthcity, tmp_path):
    baseline = {"miou": 0.5, "pix_acc": 0.8, "abs_err": 0.05, "rel_err": 0.5}
    (tmp_path / "b.json").write_text(json.dumps(baseline))
    assert train(tiny_synthcity, tmp_path, "run", "--baseline", str(tmp_path / "b.json"), epochs=2) == 0
    rows = read_rows(tmp_path / "run")
    for row in rows:
        assert row["test"]["delta_m"] == pytest.approx(delta_m(row["test"], baseline))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    means = {k: np.mean([r["test"][k] for r in rows]) for k in baseline}
    assert summary["last10"]["miou"] == pytest.approx(means["miou"])
    assert summary["delta_m"]["last10"] == pytest.approx(delta_m(means, baseline))
    assert summary["delta_m"]["baseline"] == str(tmp_path / "b.json")


def write_random_release(root, n_train, n_val, height, width):
    """A non-synthetic release of random arrays (the real layout, without synthcity.json)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for sub in ("image", "label_7", "label_19", "depth"):
            (root / split / sub).mkdir(parents=True)
        for i in range(n):
            np.save(root / split / "image" / f"{i}.npy", rng.random((height, width, 3), dtype=np.float32))
            for c in (7, 19):
                labels = rng.integers(-1, c, (height, width)).astype(np.float32)
                np.save(root / split / f"label_{c}" / f"{i}.npy", labels)
            np.save(root / split / "depth" / f"{i}.npy", rng.random((height, width, 1), dtype=np.float32) * 0.5)
    return root


def test_real_7_class_128x256_release_uses_the_published_baseline(tmp_path):
    data = write_random_release(tmp_path / "real", 2, 2, 128, 256)
    assert train(data, tmp_path, "run", "--batch-size", "2") == 0
    [row] = read_rows(tmp_path / "run")
    assert row["test"]["delta_m"] == pytest.approx(delta_m(row["test"], PUBLISHED_BASELINE))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["delta_m"]["baseline"] == PUBLISHED_NAME


def test_19_classes_and_split_arch_train(tiny_synthcity, tmp_path):
    assert train(tiny_synthcity, tmp_path, "run", "--classes", "19", "--arch", "split", "--method", "adam") == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["settings"]["classes"] == 19 and config["parameters"]["semantic"] > 0


def test_a_folder_holding_a_run_is_refused(tiny_synthcity, tmp_path, capsys):
    assert train(tiny_synthcity, tmp_path, "done") == 0
    assert train(tiny_synthcity, tmp_path, "done") == 2
    assert "holds a finished run" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    assert train(tiny_synthcity, tmp_path, "half") == 2
    assert f"--resume {tmp_path / 'half'}" in capsys.readouterr().err


def run_cli(*argv, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / "main_cityscapes.py"), *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=300, check=False)


def test_bad_data_path_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("--data-path", str(tmp_path / "empty"), "--epochs", "1", "--out", str(tmp_path / "runs"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(tmp_path / "empty") in result.stderr and "train" in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing half-made


def test_unknown_method_lists_the_valid_names(tmp_path):
    result = run_cli("--method=adam_with_adatas", "--epochs", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "adam_with_adatask" in result.stderr and "rmsprop" in result.stderr


def test_image_size_must_be_a_multiple_of_32(tmp_path, capsys):
    code = main_cityscapes.main(["--dataset", "synthcity", "--image-size", "40x64", "--out", str(tmp_path)])
    assert code == 2 and "multiples of 32" in capsys.readouterr().err


def test_missing_release_falls_back_to_synthcity_and_says_so_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(DATASETS["cityscapes"], "default_root", tmp_path / "no-release")
    monkeypatch.setattr(DATASETS["synthcity"], "default_root", tmp_path / "synthcity")
    argv = ["--image-size", "32x64", "--synthcity-train", "8", "--synthcity-val", "4", "--epochs", "1",
            "--batch-size", "4", "--width-mult", "0.125", "--num-workers", "0", "--out", str(tmp_path / "runs"),
            "--name", "run"]
    assert main_cityscapes.main(argv) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    assert "using SynthCity" in first_line and "README" in first_line
    config = json.loads((tmp_path / "runs" / "run" / "config.json").read_text())
    assert config["data"]["synthetic"] and config["data"]["synthcity"]["n_train"] == 8


def test_named_cityscapes_without_a_release_never_falls_back(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(DATASETS["cityscapes"], "default_root", tmp_path / "no-release")
    assert main_cityscapes.main(["--dataset", "cityscapes", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "no-release") in err and "Getting the data" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags", [["--amp"], ["--channels-last"], ["--compile"]])
def test_gpu_options_train_correctly_on_cpu(tiny_synthcity, tmp_path, flags):
    """bf16 autocast, channels-last and torch.compile each train (finite metrics, the loss
    falls) and AdaTask still gets its per-task gradients through them."""
    assert train(tiny_synthcity, tmp_path, "run", "--method=adam_with_adatask", "--lr", "1e-2", *flags,
                 epochs=2) == 0
    rows = read_rows(tmp_path / "run")
    assert all(np.isfinite(v) for row in rows for v in row["test"].values() if isinstance(v, float))
    assert rows[1]["train"]["loss_depth"] < rows[0]["train"]["loss_depth"]


def test_single_task_run_trains_one_branch(tiny_synthcity, tmp_path):
    assert train(tiny_synthcity, tmp_path, "run", "--tasks", "depth") == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["tasks"] == ["depth"] and "semantic" not in config["parameters"]
    [row] = read_rows(tmp_path / "run")
    assert set(row["test"]) == {"loss_depth", "abs_err", "rel_err", "abs_err_px", "rel_err_px"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["delta_m"]["final"] is None


@pytest.mark.parametrize("method", ["adam", "adam_with_adatask"])
def test_track_au_writes_per_layer_rau_per_epoch(tiny_synthcity, tmp_path, method):
    import csv

    assert train(tiny_synthcity, tmp_path, "run", f"--method={method}", "--track-au", epochs=2) == 0
    with open(tmp_path / "run" / "au.csv") as f:
        rows = list(csv.DictReader(f))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {r["epoch"] for r in rows} == {"0", "1"} and {r["task"] for r in rows} == {"semantic", "depth"}
    per_layer = {}
    for r in rows:
        per_layer.setdefault((r["epoch"], r["layer_index"]), []).append(float(r["mean_rau"]))
    assert all(sum(v) == pytest.approx(1.0, abs=1e-5) and len(v) == 2 for v in per_layer.values())
    assert len(per_layer) == 2 * len({r["layer"] for r in rows}) and config["settings"]["track_au"]
