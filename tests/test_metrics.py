import math

import pytest
import torch

from evaluation.metrics import SplitMeter
from tasks import TaskSettings
from tasks.depth import DepthTask
from tasks.instance import InstanceTask
from tasks.meters import ConfusionMatrix, DepthErrors, confusion_counts, depth_error_sums, iou_per_class, miou, pix_acc
from tasks.semantic import SemanticMeter, SemanticTask

# 2x2 image, one void pixel: counted pairs (target, pred) = (0,0), (1,1), (1,2).
PRED = torch.tensor([[[0, 1], [1, 2]]])
TARGET = torch.tensor([[[0, 1], [-1, 1]]])
CM = [[1, 0, 0], [0, 1, 1], [0, 0, 0]]


def test_confusion_counts_by_hand_ignores_void():
    cm = confusion_counts(PRED, TARGET, 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == CM


def test_targets_outside_range_are_ignored():
    target = torch.tensor([[[0, 255], [3, 1]]])  # 255 and 3 are outside [0, 3)
    pred = torch.tensor([[[0, 2], [2, 1]]])
    assert confusion_counts(pred, target, 3).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_log_probs_are_argmaxed_over_dim_1():
    log_probs = torch.nn.functional.one_hot(PRED, 3).permute(0, 3, 1, 2).float().log_softmax(dim=1)
    assert confusion_counts(log_probs, TARGET, 3).tolist() == CM


def test_bincount_on_int64_and_narrow_input_dtypes():
    # Labels arrive as int64 from the loader; narrower ints (and float -1 void) must count the same.
    cm = confusion_counts(PRED.to(torch.uint8), TARGET.to(torch.int32), 3)
    assert cm.dtype == torch.int64 and cm.tolist() == CM
    assert confusion_counts(PRED, TARGET.float(), 3).tolist() == CM


def test_prediction_outside_range_is_an_error():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        confusion_counts(torch.tensor([[[0, 3]]]), torch.tensor([[[0, 1]]]), 3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        confusion_counts(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long), 3)


def test_pix_acc_iou_miou_by_hand():
    cm = torch.tensor(CM)
    assert pix_acc(cm) == pytest.approx(2 / 3)
    # class 0: 1/(1+1-1); class 1: 1/(2+1-1); class 2 is predicted but never a target: 0/(0+1-0).
    assert iou_per_class(cm).tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert miou(cm) == pytest.approx(0.5)


def test_class_absent_from_split_is_left_out_of_miou():
    cm = confusion_counts(PRED, TARGET, 4)  # class 3 never occurs in target or prediction
    iou = iou_per_class(cm)
    assert math.isnan(iou[3])
    assert miou(cm) == pytest.approx(0.5)  # not 1.5 / 4


def test_empty_matrix_gives_nan():
    cm = torch.zeros(3, 3, dtype=torch.int64)
    assert math.isnan(pix_acc(cm)) and math.isnan(miou(cm))


def test_confusion_matrix_matches_brute_force_over_batches_and_resets():
    gen = torch.Generator().manual_seed(0)
    preds = [torch.randint(0, 5, (2, 4, 6), generator=gen) for _ in range(3)]
    targets = [torch.randint(-1, 5, (2, 4, 6), generator=gen) for _ in range(3)]
    expected = torch.zeros(5, 5, dtype=torch.int64)
    for p, t in zip(preds, targets):
        for pi, ti in zip(p.flatten().tolist(), t.flatten().tolist()):
            if ti >= 0:
                expected[ti, pi] += 1
    meter = ConfusionMatrix(5)
    for p, t in zip(preds, targets):
        meter.update(p, t)
    assert torch.equal(meter.mat, expected)
    assert meter.pix_acc() == pytest.approx(expected.diagonal().sum().item() / expected.sum().item())
    meter.reset()
    assert meter.mat.sum() == 0 and math.isnan(meter.miou())


# Depth, uneven batches: batch-mean and pixel-weighted differ.
#   batch 1: 2 valid pixels, |p-t| = 1, 0 -> means abs 0.5, rel (1/1 + 0/2)/2 = 0.5
#   batch 2: 4 valid pixels, t = 4, p = 5 -> means abs 1, rel 0.25
#   batch 3: no valid pixel -> contributes nothing
DEPTH_BATCHES = [
    (torch.tensor([[2.0, 2.0], [5.0, 5.0]]), torch.tensor([[1.0, 2.0], [0.0, 0.0]])),
    (torch.full((2, 2), 5.0), torch.full((2, 2), 4.0)),
    (torch.full((2, 2), 3.0), torch.zeros(2, 2)),
]


def _as_b1hw(x):
    return x[None, None]


def test_depth_error_sums_by_hand():
    pred, target = DEPTH_BATCHES[0]
    abs_sum, rel_sum, n = depth_error_sums(_as_b1hw(pred), _as_b1hw(target))
    assert abs_sum.dtype == torch.float64
    assert (abs_sum.item(), rel_sum.item(), n.item()) == (1.0, 1.0, 2.0)


def test_batch_mean_and_pixel_weighted_differ_on_uneven_batches():
    meter = DepthErrors()
    for pred, target in DEPTH_BATCHES:
        meter.update(_as_b1hw(pred), _as_b1hw(target))
    assert meter.abs_err() == pytest.approx((0.5 + 1.0) / 2)
    assert meter.rel_err() == pytest.approx((0.5 + 0.25) / 2)
    assert meter.abs_err_px() == pytest.approx((1 + 0 + 4 * 1) / 6)
    assert meter.rel_err_px() == pytest.approx((1 + 0 + 4 * 0.25) / 6)


def test_depth_without_any_valid_pixel_is_nan_and_reset_clears():
    meter = DepthErrors()
    meter.update(_as_b1hw(DEPTH_BATCHES[2][0]), _as_b1hw(DEPTH_BATCHES[2][1]))
    assert all(math.isnan(v) for v in (meter.abs_err(), meter.rel_err(), meter.abs_err_px(), meter.rel_err_px()))
    meter.update(_as_b1hw(DEPTH_BATCHES[1][0]), _as_b1hw(DEPTH_BATCHES[1][1]))
    assert meter.abs_err() == pytest.approx(1.0)
    meter.reset()
    assert math.isnan(meter.abs_err())
    meter.update(_as_b1hw(DEPTH_BATCHES[0][0]), _as_b1hw(DEPTH_BATCHES[0][1]))
    assert meter.abs_err() == pytest.approx(0.5) and meter.abs_err_px() == pytest.approx(0.5)


def _semantic_batch():
    log_probs = torch.nn.functional.one_hot(PRED, 3).permute(0, 3, 1, 2).float().log_softmax(dim=1)
    return log_probs, TARGET


NAMES = ("a", "b", "c")


class NamedClasses(SemanticTask):
    """The semantic task with made-up class names, for confusion matrices of a few classes."""

    def __init__(self, names):
        super().__init__(TaskSettings(classes=len(names)))
        self.names = names

    def meter(self, device="cpu"):
        return SemanticMeter(self.names, device)


def meter_of(*tasks):
    return SplitMeter([NamedClasses(NAMES) if t == "semantic" else t for t in tasks])


def test_split_meter_both_tasks():
    meter = meter_of("semantic", DepthTask())
    log_probs, target = _semantic_batch()
    (d1, t1), (d2, t2) = DEPTH_BATCHES[:2]
    meter.update([log_probs, _as_b1hw(d1)], [target, _as_b1hw(t1)], [1.0, 0.5])
    meter.update([log_probs, _as_b1hw(d2)], [target, _as_b1hw(t2)], [torch.tensor(3.0), 1.5])
    out = meter.compute()
    assert list(out) == ["loss_semantic", "loss_depth", "miou", "pix_acc", "class_iou",
                         "abs_err", "rel_err", "abs_err_px", "rel_err_px"]  # the order metrics.jsonl keeps
    assert all(type(v) is float for k, v in out.items() if k != "class_iou")
    assert out["loss_semantic"] == 2.0 and out["loss_depth"] == 1.0
    assert out["miou"] == pytest.approx(0.5) and out["pix_acc"] == pytest.approx(2 / 3)
    assert out["abs_err"] == pytest.approx(0.75) and out["abs_err_px"] == pytest.approx(5 / 6)
    meter.reset()
    out = meter.compute()
    assert out.pop("class_iou") == dict.fromkeys(NAMES)  # undefined: None, never NaN
    assert all(math.isnan(v) for v in out.values())


def test_split_meter_single_task_keys():
    log_probs, target = _semantic_batch()
    seg = meter_of("semantic")
    seg.update([log_probs], [target], [1.0])
    assert set(seg.compute()) == {"loss_semantic", "miou", "pix_acc", "class_iou"}
    depth = meter_of(DepthTask())
    depth.update([_as_b1hw(DEPTH_BATCHES[0][0])], [_as_b1hw(DEPTH_BATCHES[0][1])], [1.0])
    assert set(depth.compute()) == {"loss_depth", "abs_err", "rel_err", "abs_err_px", "rel_err_px"}


def test_split_meter_rejects_no_tasks_and_wrong_lengths():
    with pytest.raises(ValueError, match="at least one task"):
        SplitMeter([])
    with pytest.raises(ValueError, match="per task"):
        meter_of("semantic", DepthTask()).update([PRED], [TARGET], [1.0])


def test_class_iou_by_hand_names_each_class_and_leaves_an_absent_one_undefined():
    """CM rows (target) [1 0 0 0], [0 1 1 0], zeros: IoU a = 1/1, b = 1/(2+1-1), c = 0/(0+1-0);
    d is in neither prediction nor target: None."""
    meter = SplitMeter([NamedClasses(("a", "b", "c", "d"))])
    meter.update([PRED], [TARGET], [0.0])
    out = meter.compute()
    assert out["class_iou"] == {"a": 1.0, "b": 0.5, "c": 0.0, "d": None}
    assert out["miou"] == pytest.approx(0.5)  # the mean over the defined classes


def test_class_names_default_to_the_label_tables():
    from data.labels import CATEGORY_NAMES, TRAIN_ID_NAMES

    for classes, names in ((7, CATEGORY_NAMES), (19, TRAIN_ID_NAMES)):
        assert SemanticTask(TaskSettings(classes=classes)).meter().names == names


def test_inst_err_is_pixel_weighted_over_the_split():
    """Batch 1: one instance pixel with errors (1, 2); batch 2: three with (0, 0), (1, 1), (3, 0):
    (1 + 2 + 0 + 0 + 1 + 1 + 3 + 0) / (2 · 4) = 1, where a mean of batch means would give 1.0625."""
    meter = InstanceTask().meter()
    target = torch.zeros(1, 3, 1, 4)
    target[0, 2, 0, 0] = 1
    meter.update(torch.tensor([[[[1.0, 5, 5, 5]], [[2.0, 5, 5, 5]]]]), target)
    target = torch.zeros(1, 3, 1, 4)
    target[0, 2, 0, 1:] = 1
    target[0, 0, 0, 1:] = torch.tensor([1.0, 1.0, 1.0])
    meter.update(torch.tensor([[[[7.0, 1, 2, 4]], [[7.0, 0, 1, 0]]]]), target)
    assert meter.compute() == {"inst_err": pytest.approx(1.0)}
    assert math.isnan(InstanceTask().meter().compute()["inst_err"])



def test_summary_averages_class_iou_per_class_where_defined():
    from evaluation.run_record import summarize

    ious = [{"a": 0.2, "b": None}, {"a": 0.4, "b": 0.6}, {"a": 0.9, "b": None}]
    rows = [{"epoch": i, "test": {"miou": 0.5, "class_iou": iou}} for i, iou in enumerate(ious)]
    rows.append({"epoch": 3, "test": {"miou": 0.5, "class_iou": {"a": None, "b": None}}})
    assert summarize(rows, None, None)["last10"]["class_iou"] == {"a": pytest.approx(0.5), "b": 0.6}
    assert summarize(rows[3:], None, None)["last10"]["class_iou"] == {"a": None, "b": None}


@pytest.mark.parametrize("epochs, averaged", [(1, 1), (4, 4), (10, 10), (13, 10)])
def test_the_last10_mean_says_how_many_epochs_it_averages(epochs, averaged):
    from evaluation.console import final_table
    from evaluation.run_record import summarize

    rows = [{"epoch": i, "test": {"miou": float(i)}} for i in range(epochs)]
    summary = summarize(rows, None, None)
    assert summary["last10_epochs"] == averaged
    assert summary["last10"]["miou"] == pytest.approx(sum(range(epochs - averaged, epochs)) / averaged)
    assert f"last-{averaged} mean" in final_table(summary, None, None)
