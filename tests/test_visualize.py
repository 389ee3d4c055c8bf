"""evaluation.visualize and tasks/drawing.py: the test-sample panels TensorBoard shows and their cells."""
import numpy as np
import pytest
import torch

from data.labels import class_colours
from evaluation.visualize import CAPTION, GAP, enlarge, sample_panel
from tasks import Task, TaskSettings, build_tasks
from tasks.drawing import (
    CHECKER_GREYS,
    DEPTH_MAX,
    OFFSET_MAX,
    colourize_depth,
    colourize_labels,
    colourize_offsets,
    depth_colours,
    depth_key,
    legend,
    offset_key,
)

THREE = ("semantic", "instance", "depth")


def sample(height, width, classes=7, seed=0):
    """image (3, H, W), labels (H, W) with void, depth (1, H, W) with invalid pixels, instance
    target (3, H, W): one disc whose offsets point at its centre."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, classes, (height, width))
    depth = np.where(rng.random((height, width)) < 0.2, 0.0, rng.random((height, width)) * DEPTH_MAX)
    image = rng.random((3, height, width), dtype=np.float32)
    y, x = np.indices((height, width)).astype(np.float32)
    cy, cx = height / 2, width / 3
    mask = (y - cy) ** 2 + (x - cx) ** 2 < (height / 4) ** 2
    instance = np.stack([(cy - y) * mask, (cx - x) * mask, mask]).astype(np.float32)
    return (image, torch.from_numpy(labels), torch.from_numpy(depth.astype(np.float32))[None],
            torch.from_numpy(instance))


def targets_and_preds(names, labels, depth, instance, classes=7):
    """Per task of `names`: its target, and a prediction as the model gives it."""
    target = {"semantic": labels, "depth": depth, "instance": instance}
    pred = {"semantic": torch.nn.functional.one_hot(labels.clamp(0), classes).permute(2, 0, 1).float().log_softmax(0),
            "depth": depth * 0.5 + 0.1, "instance": instance[:2] * 0.5}
    return [target[n] for n in names], [pred[n] for n in names]


def panel_of(names, height=32, width=64, classes=7):
    image, labels, depth, instance = sample(height, width, classes)
    tasks = build_tasks(names, TaskSettings(classes=classes))
    targets, preds = targets_and_preds([t.name for t in tasks], labels, depth, instance, classes)
    return sample_panel(image, tasks, preds, targets), (labels, depth, instance)


def cell(panel, row, col, cell_h, cell_w):
    """The pixels of grid cell (row, col) of a panel, its caption band excluded."""
    top = row * (CAPTION + cell_h + GAP) + CAPTION
    left = col * (cell_w + GAP)
    return panel[top:top + cell_h, left:left + cell_w]


def grid_shape(rows, columns, cell_h=128, cell_w=256):
    return rows * (CAPTION + cell_h) + (rows - 1) * GAP, columns * cell_w + (columns - 1) * GAP, 3


def is_blank(pixels):
    return (pixels == 255).all()


def is_checker(pixels):
    return np.isin(pixels, CHECKER_GREYS).all(axis=-1)


@pytest.mark.parametrize("height, width", [(32, 64), (64, 128), (128, 256)])
def test_two_tasks_give_a_3x3_grid_of_cells_at_least_256_px_wide(height, width):
    panel, (labels, depth, _) = panel_of(("semantic", "depth"), height, width)
    cell_w, cell_h, factor = 256, 128, 256 // width  # every size here is enlarged to 256 px wide
    assert panel.dtype == np.uint8
    # input | predicted | true semantic; legend | predicted | true depth; depth scale
    assert panel.shape == grid_shape(3, 3)
    assert (cell(panel, 0, 2, cell_h, cell_w) == colourize_labels(enlarge(labels.numpy(), factor), 7)).all()
    assert (cell(panel, 1, 0, cell_h, cell_w) == legend(7, cell_h, cell_w)).all()
    assert (cell(panel, 1, 2, cell_h, cell_w) == colourize_depth(enlarge(depth[0].numpy(), factor))).all()
    assert (cell(panel, 2, 0, cell_h, cell_w) == depth_key(cell_h, cell_w)).all()
    assert is_blank(cell(panel, 2, 1, cell_h, cell_w)) and is_blank(cell(panel, 2, 2, cell_h, cell_w))


def test_three_tasks_give_a_4x3_grid_with_each_tasks_key_left_of_the_next_task():
    panel, (_, depth, instance) = panel_of(THREE)
    assert panel.shape == grid_shape(4, 3)
    mask = enlarge(instance[2].numpy() > 0, 4)
    true_instance = colourize_offsets(enlarge(instance[:2].numpy().transpose(1, 2, 0), 4).transpose(2, 0, 1), mask)
    assert (cell(panel, 1, 0, 128, 256) == legend(7, 128, 256)).all()
    assert (cell(panel, 1, 2, 128, 256) == true_instance).all()
    assert (cell(panel, 1, 1, 128, 256) != true_instance).any()  # the prediction is half the target
    assert (cell(panel, 2, 0, 128, 256) == offset_key(128, 256)).all()
    assert (cell(panel, 2, 2, 128, 256) == colourize_depth(enlarge(depth[0].numpy(), 4))).all()
    assert (cell(panel, 3, 0, 128, 256) == depth_key(128, 256)).all()


def test_single_task_panels():
    semantic, _ = panel_of(("semantic",))
    assert semantic.shape == grid_shape(2, 3)  # input | predicted | true, then the legend
    assert (cell(semantic, 1, 0, 128, 256) == legend(7, 128, 256)).all()
    only_depth, _ = panel_of(("depth",))
    assert only_depth.shape == grid_shape(2, 3)
    assert (cell(only_depth, 1, 0, 128, 256) == depth_key(128, 256)).all()


class Plain(Task):
    """A task without a key, drawing its target's single channel as grey."""

    name = "plain"

    def draw(self, pred, target):
        grey = lambda t: np.repeat((t[0].numpy() * 255).astype(np.uint8)[..., None], 3, axis=2)
        return grey(pred), grey(target)


def test_a_task_without_a_key_leaves_its_cell_empty():
    image = np.zeros((3, 32, 64), np.float32)
    semantic, plain = build_tasks(["semantic"])[0], Plain()
    value = torch.full((1, 32, 64), 0.5)
    labels = torch.zeros(32, 64, dtype=torch.int64)
    logits = torch.zeros(7, 32, 64)
    last = sample_panel(image, [semantic, plain], [logits, value], [labels, value])
    assert last.shape == grid_shape(2, 3)  # no last row: the last task has no key
    assert (cell(last, 1, 1, 128, 256) == 127).all()
    first = sample_panel(image, [plain, semantic], [value, logits], [value, labels])
    assert first.shape == grid_shape(3, 3)
    assert is_blank(cell(first, 1, 0, 128, 256)) and (cell(first, 2, 0, 128, 256) == legend(7, 128, 256)).all()


def test_predictions_are_shown_where_their_target_counts():
    panel, (labels, depth, instance) = panel_of(THREE)
    factor = 4
    for row, void in ((0, labels.numpy() < 0), (1, instance[2].numpy() == 0), (2, depth[0].numpy() == 0)):
        predicted, true = cell(panel, row, 1, 128, 256), cell(panel, row, 2, 128, 256)
        assert (is_checker(predicted) == is_checker(true)).all()
        assert (is_checker(predicted) == enlarge(void, factor)).all()


def test_offsets_direction_is_hue_and_length_is_brightness_on_a_fixed_scale():
    mask = np.ones((1, 5), bool)
    # right, down, left, up at full length, and right at half length
    offsets = np.array([[[0, 40, 0, -40, 0]], [[40, 0, -40, 0, OFFSET_MAX / 2]]], np.float32)
    rgb = colourize_offsets(offsets, mask)[0].astype(int)
    assert tuple(rgb[0]) == (255, 0, 0)  # right: red, saturated beyond OFFSET_MAX
    assert rgb[1, 1] > rgb[1, 2] and rgb[2, 2] > rgb[2, 0]  # down greenish, left cyan
    assert rgb[3, 2] == 255 and rgb[3, 1] == 0  # up: blue-violet
    assert tuple(rgb[4]) == pytest.approx((128, 0, 0), abs=1)  # half the length, half the brightness
    assert tuple(colourize_offsets(np.zeros((2, 1, 1)), np.ones((1, 1), bool))[0, 0]) == (0, 0, 0)
    # the scale is fixed: the same offset has the same colour beside short and beside long ones
    short = np.array([[[0, 1]], [[2, 3]]], np.float32)
    long = np.array([[[0, 30]], [[2, 30]]], np.float32)
    assert (colourize_offsets(short, np.ones((1, 2), bool))[0, 0] == colourize_offsets(long, np.ones((1, 2), bool))[0, 0]).all()


def test_offsets_outside_instances_are_checkered_and_no_offset_colour_is():
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 20, (2, 64, 64)).astype(np.float32)
    mask = rng.random((64, 64)) < 0.5
    rgb = colourize_offsets(offsets, mask)
    assert (is_checker(rgb) == ~mask).all()


@pytest.mark.parametrize("height, width", [(128, 256), (256, 256), (300, 120)])
def test_keys_fill_their_cell_and_show_their_colours(height, width):
    scale = depth_key(height, width)
    assert scale.shape == (height, width, 3) and scale.dtype == np.uint8
    colours = {tuple(c) for c in scale.reshape(-1, 3)}
    assert {tuple(depth_colours(np.array(v))) for v in (0.0, 1.0)} <= colours
    assert is_checker(scale).any()  # the invalid pattern
    wheel = offset_key(height, width)
    assert wheel.shape == (height, width, 3) and wheel.dtype == np.uint8
    colours = {tuple(c) for c in wheel.reshape(-1, 3)}
    assert len(colours) > 500 and is_checker(wheel).any()  # the wheel's hues and brightnesses; no instance


def test_depth_scale_is_fixed_not_stretched_per_image():
    near, far = np.array([[0.1, 0.4]]), np.array([[0.1, 0.15]])
    assert (colourize_depth(near)[0, 0] == colourize_depth(far)[0, 0]).all()
    assert (colourize_depth(np.array([[DEPTH_MAX * 3]])) == colourize_depth(np.array([[DEPTH_MAX]]))).all()


def test_void_and_invalid_depth_have_a_colour_of_their_own():
    labels = np.full((16, 16), -1)
    assert is_checker(colourize_labels(labels, 7)).all() and is_checker(colourize_depth(np.zeros((16, 16)))).all()
    assert len(np.unique(colourize_labels(labels, 7).reshape(-1, 3), axis=0)) == 2  # a pattern, not black
    everything = np.concatenate([colourize_labels(np.arange(19)[None], 19)[0],
                                 colourize_depth(np.linspace(0.001, DEPTH_MAX, 256)[None])[0]])
    assert not is_checker(everything).any()


def test_labels_are_enlarged_by_nearest_neighbour():
    labels = np.array([[0, 1], [2, -1]])
    assert (enlarge(labels, 3) == np.kron(labels, np.ones((3, 3), int))).all()


@pytest.mark.parametrize("classes", [7, 19])
def test_legend_shows_every_class_colour_and_void(classes):
    key = legend(classes, 128, 256)
    colours = {tuple(c) for c in key.reshape(-1, 3)}
    assert {tuple(c) for c in class_colours(classes)} <= colours
    assert is_checker(key).any()
