"""Tasks are data: a task registered in this test alone (one class, one registry line) trains end
to end through main_cityscapes.py beside the release tasks, and CityScapes-3 runs with K = 3.
The registry is lazy: its entries match their classes, and the names alone need no torch."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import main_cityscapes
from data.layout import CLASS_COUNTS, IMAGE_DIR
from tasks import TASKS, Metric, Task, TaskEntry, TaskMeter, TaskSettings, canonical, reported_metrics

REPO = Path(__file__).resolve().parent.parent


class BrightnessMeter(TaskMeter):
    def __init__(self):
        self.error, self.pixels = 0.0, 0

    def update(self, pred, target):
        self.error += float((pred.double() - target.double()).abs().sum())
        self.pixels += target.numel()

    def sum_over_processes(self):
        from optim.distributed import all_reduce_sum
        totals = all_reduce_sum([torch.tensor([self.error, self.pixels], dtype=torch.float64)])[0]
        self.error, self.pixels = totals.tolist()

    def compute(self):
        return {"bright_err": self.error / self.pixels if self.pixels else float("nan")}


class BrightnessTask(Task):
    """A toy fourth task: predict each pixel's grey level, read from the image folder."""

    name = "brightness"
    metrics = (Metric("bright_err", "BrightErr", False),)

    def folders(self):
        return (IMAGE_DIR,)

    def target(self, arrays):
        return arrays[IMAGE_DIR].mean(axis=2)

    def to_tensor(self, target):
        return torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))[None]

    def out_channels(self):
        return 1

    def loss_terms(self, pred, target):
        return (pred - target).abs().sum(), torch.tensor(target.numel())

    def meter(self, device="cpu"):
        return BrightnessMeter()

    def draw(self, pred, target):
        def grey(values):
            return np.repeat((np.clip(values[0], 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
        return grey(pred.float().cpu().numpy()), grey(target.cpu().numpy())


@pytest.fixture
def brightness_registered(monkeypatch):
    entry = TaskEntry("brightness", (IMAGE_DIR,), ("bright_err",), f"{__name__}:BrightnessTask")
    monkeypatch.setitem(TASKS, entry.name, entry)  # the one registry line


def train(data, out, name, *flags):
    argv = ["--data-path", str(data), "--epochs", "1", "--batch-size", "4", "--width-mult", "0.125",
            "--num-workers", "0", "--device", "cpu", "--out", str(out), "--name", name, *flags]
    return main_cityscapes.main(argv)


@pytest.mark.usefixtures("seeded_and_restored")
def test_a_task_registered_in_a_test_trains_end_to_end(tiny_synthcity, tmp_path, brightness_registered, capsys):
    assert canonical(["brightness", "semantic", "depth"]) == ("semantic", "depth", "brightness")
    code = train(tiny_synthcity, tmp_path, "run", "--tasks", "semantic", "depth", "brightness",
                 "--method", "adam_with_adatask", "--weighting", "pcgrad", "--track-au")
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["tasks"] == ["semantic", "depth", "brightness"] and config["parameters"]["brightness"] > 0
    [row] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for split in ("train", "test"):
        assert {"loss_brightness", "bright_err", "miou", "abs_err"} <= set(row[split])
        assert np.isfinite(row[split]["bright_err"])
    assert "brightness" in (run / "au.csv").read_text()
    out = capsys.readouterr().out
    assert "BrightErr" in out or "bright_err" in out


def test_the_registry_gives_the_reported_metrics_and_their_directions():
    metrics = reported_metrics(["depth", "instance", "semantic"])
    assert [m.key for m in metrics] == ["miou", "pix_acc", "inst_err", "abs_err", "rel_err"]
    assert [m.delta_m_sign for m in metrics] == [-1, -1, 1, 1, 1]
    with pytest.raises(ValueError, match="semantic, instance, depth"):
        canonical(["normals"])


@pytest.mark.usefixtures("seeded_and_restored")
def test_cityscapes_3_trains_every_task_and_reports_inst_err(tiny_synthcity, tmp_path, capsys):
    code = train(tiny_synthcity, tmp_path, "run", "--tasks", "semantic", "instance", "depth", "--track-au")
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "run"
    [row] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss_semantic", "loss_instance", "loss_depth", "inst_err", "miou", "abs_err"} <= set(row["test"])
    assert row["test"]["inst_err"] > 0 and row["test"]["delta_m"] is None  # synthetic: no baseline
    au_tasks = {line.split(",")[3] for line in (run / "au.csv").read_text().splitlines()[1:]}
    assert au_tasks == {"semantic", "instance", "depth"}


def test_each_entry_matches_its_class():
    for name, entry in TASKS.items():
        cls = entry.load()
        assert issubclass(cls, Task) and cls.name == entry.name == name
        read = {folder for classes in CLASS_COUNTS for folder in cls(TaskSettings(classes=classes)).folders()}
        assert set(entry.folders) == read, name
        assert entry.metric_keys == tuple(m.key for m in cls.metrics), name
        assert entry.lower_is_better == tuple(m.key for m in cls.metrics if not m.higher_is_better), name
        assert entry.metrics == cls.metrics


def test_the_task_names_import_no_torch():
    """canonical and the names need the registry alone; building a task loads its class."""
    code = ("import sys, tasks\n"
            "assert tasks.canonical(['depth', 'semantic']) == ('semantic', 'depth') and list(tasks.TASKS)\n"
            "assert 'torch' not in sys.modules, 'tasks imported torch'\n"
            "tasks.build_tasks(['depth'])\n"
            "assert 'torch' in sys.modules and 'tasks.depth' in sys.modules and 'tasks.semantic' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
