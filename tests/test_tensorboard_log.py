"""What a run writes for TensorBoard, read back with TensorBoard's own event reader."""
import json

import global_state
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

import main_cityscapes
from data.labels import TRAIN_ID_NAMES
from evaluation import tensorboard_log
from evaluation.tensorboard_log import hparam_metrics, layout, task_metrics
from evaluation.visualize import CAPTION, GAP

EPOCHS = 2


@pytest.fixture(scope="module")
def run(tiny_synthcity, tmp_path_factory):
    """A 2-epoch, 19-class run with a baseline file, so that Δm is defined."""
    out = tmp_path_factory.mktemp("tb")
    (out / "b.json").write_text(json.dumps({"miou": 0.5, "pix_acc": 0.8, "abs_err": 0.05, "rel_err": 0.5}))
    argv = ["--data-path", str(tiny_synthcity), "--epochs", str(EPOCHS), "--batch-size", "4", "--width-mult", "0.125",
            "--num-workers", "0", "--device", "cpu", "--classes", "19", "--method", "adam", "--weighting", "ew",
            "--seed", "3", "--baseline", str(out / "b.json"), "--out", str(out), "--name", "run"]
    with global_state.seeded_and_restored():  # the run seeds the global RNGs
        assert main_cityscapes.main(argv) == 0
    events = EventAccumulator(str(out / "run"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    return out / "run", events


def test_epoch_scalars_are_test_first_and_count_epochs_from_1(run):
    run_dir, events = run
    scalars = events.Tags()["scalars"]
    for key in ("miou", "pix_acc", "abs_err", "rel_err", "loss_semantic", "loss_depth", "delta_m"):
        assert f"1 test/{key}" in scalars
    for key in ("miou", "abs_err", "loss_depth", "lr"):
        assert f"2 train/{key}" in scalars
    assert not [tag for tag in scalars if tag.startswith(("val/", "hparams/", "test/", "train/")) or tag == "lr"]
    assert [e.step for e in events.Scalars("1 test/miou")] == [1, 2] == [e.step for e in events.Scalars("2 train/lr")]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]  # metrics.jsonl keeps its 0-based epochs
    assert [e.value for e in events.Scalars("1 test/delta_m")] == pytest.approx([r["test"]["delta_m"] for r in rows])
    # the groups a reader opens first sort before every other group
    assert sorted({tag.split("/")[0] for tag in scalars})[:2] == ["1 test", "2 train"]


def test_per_class_iou_is_logged_with_the_class_names(run):
    run_dir, events = run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for split, group in (("test", "3 test IoU"), ("train", "4 train IoU")):
        assert list(rows[-1][split]["class_iou"]) == list(TRAIN_ID_NAMES)
        logged = {tag.split("/", 1)[1] for tag in events.Tags()["scalars"] if tag.startswith(f"{group}/")}
        assert logged == {name for row in rows for name, iou in row[split]["class_iou"].items() if iou is not None}
    assert "traffic light" in rows[-1]["test"]["class_iou"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert list(summary["last10"]["class_iou"]) == list(TRAIN_ID_NAMES)


def test_custom_scalars_layout_gives_each_split_its_own_chart(run):
    """A chart's lines are coloured by run, so train and test never share one: every chart holds
    one split's curve, and its title names the split."""
    _, events = run
    [event] = events.Tensors("custom_scalars__config__")
    written = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in written.category for chart in category.chart}
    for key in ("miou", "pix_acc", "abs_err", "rel_err", "loss_semantic", "loss_depth"):
        assert charts[f"{key} (test)"] == [f"^1 test/{key}$"] and charts[f"{key} (train)"] == [f"^2 train/{key}$"]
    assert charts["learning rate"] == ["^2 train/lr$"] and charts["test Δm (%, lower is better)"] == ["^1 test/delta_m$"]
    assert [category.title for category in written.category] == [
        "metrics, test", "metrics, train", "losses, test", "losses, train", "Δm and learning rate"]


def test_layout_of_a_single_task_run_without_baseline_has_no_empty_category():
    categories = layout(("depth",), with_delta_m=False)
    assert {title for category in categories.values() for title in category} == {
        "abs_err (test)", "abs_err (train)", "rel_err (test)", "rel_err (train)", "loss_depth (test)",
        "loss_depth (train)", "learning rate"}
    assert "Δm and learning rate" not in categories and categories["learning rate"]  # named for what it holds


def test_layout_and_metrics_of_three_tasks_come_from_the_registry():
    three = ("semantic", "instance", "depth")
    charts = {title for category in layout(three, with_delta_m=True).values() for title in category}
    per_split = ("miou", "pix_acc", "inst_err", "abs_err", "rel_err", "loss_semantic", "loss_instance", "loss_depth")
    assert charts == {f"{key} ({split})" for key in per_split for split in ("test", "train")} | {
        "test Δm (%, lower is better)", "learning rate"}
    assert task_metrics("instance") == ("inst_err",) and task_metrics("semantic") == ("miou", "pix_acc")
    assert hparam_metrics(three) == ("miou", "pix_acc", "inst_err", "abs_err", "rel_err", "delta_m")
    # the two-task columns, for the runs of a semantic + depth sweep single-task ones included
    for tasks in (("semantic", "depth"), ("semantic",), ("depth",)):
        assert hparam_metrics(tasks) == ("miou", "pix_acc", "abs_err", "rel_err", "delta_m")
    assert hparam_metrics(("instance",)) == hparam_metrics(three)


def test_hparams_of_a_three_task_run_list_inst_err(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    metrics = {"miou": 0.5, "pix_acc": 0.8, "inst_err": 3.0, "abs_err": 0.02, "rel_err": 0.4, "loss_instance": 1.0}
    summary = {"final": metrics, "last10": metrics, "delta_m": {"final": 1.5, "last10": 2.5, "baseline": "b"}}
    writer = SummaryWriter(log_dir=str(tmp_path))
    tensorboard_log.log_hparams(writer, {"tasks": "semantic+instance+depth", "seed": 0}, {"epochs": 2},
                                {"tasks": ["semantic+depth", "semantic+instance+depth"]}, summary, 2)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    tags = [info.name.tag for info in experiment.metric_infos]
    assert tags[:6] == ["last10/miou", "last10/pix_acc", "last10/inst_err", "last10/abs_err", "last10/rel_err",
                        "last10/delta_m"]
    assert events.Scalars("final/inst_err")[0].value == 3.0 and events.Scalars("last10/delta_m")[0].value == 2.5


def test_sample_panels_are_test_images_of_the_grid_size(run):
    _, events = run
    images = events.Tags()["images"]
    assert images == [f"1 test/sample {i}" for i in range(1, 5)]
    first = events.Images(images[0])
    assert [e.step for e in first] == [1, 2]
    # 32x64 samples enlarged 4x: three rows of 128 x 256 cells under captions (the last one the depth scale)
    assert (first[0].height, first[0].width) == (3 * (CAPTION + 128) + 2 * GAP, 3 * 256 + 2 * GAP)


def test_hparams_session_identifies_the_run_and_names_final_and_last10(run):
    run_dir, events = run
    content = {tag: plugin_data_pb2.HParamsPluginData.FromString(data)
               for tag, data in events.PluginTagToContent("hparams").items()}
    experiment = content["_hparams_/experiment"].experiment
    shown = {info.name for info in experiment.hparam_infos if info.differs}
    assert shown == {"data", "method", "weighting", "seed", "tasks"}  # TensorBoard ticks these five
    assert {"classes", "arch", "epochs", "lr"} <= {info.name for info in experiment.hparam_infos}
    metric_tags = [info.name.tag for info in experiment.metric_infos]
    assert metric_tags[:5] == ["last10/miou", "last10/pix_acc", "last10/abs_err", "last10/rel_err", "last10/delta_m"]
    assert set(metric_tags[5:]) == {"final/miou", "final/pix_acc", "final/abs_err", "final/rel_err", "final/delta_m"}
    hparams = content["_hparams_/session_start_info"].session_start_info.hparams
    assert (hparams["method"].string_value, hparams["weighting"].string_value, hparams["seed"].string_value,
            hparams["tasks"].string_value) == ("adam", "ew", "3", "semantic+depth")  # the seed shown as 3, not 3.0000
    assert next(i for i in experiment.hparam_infos if i.name == "seed").type == api_pb2.DataType.Value("DATA_TYPE_STRING")
    assert hparams["data"].string_value == "synthcity 32x64" and hparams["classes"].number_value == 19
    summary = json.loads((run_dir / "summary.json").read_text())
    for kind in ("final", "last10"):
        [point] = events.Scalars(f"{kind}/miou")
        assert point.step == EPOCHS and point.value == pytest.approx(summary[kind]["miou"])
        assert events.Scalars(f"{kind}/delta_m")[0].value == pytest.approx(summary["delta_m"][kind])
