"""evaluation.visualize: the test-sample panels TensorBoard shows."""
import numpy as np
import pytest

from data.labels import class_colours
from evaluation.visualize import (
    BAR,
    CAPTION,
    CHECKER_GREYS,
    DEPTH_MAX,
    GAP,
    colourize_depth,
    colourize_labels,
    enlarge,
    legend,
    sample_panel,
)


def sample(height, width, classes=7, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, classes, (height, width))
    depth = np.where(rng.random((height, width)) < 0.2, 0.0, rng.random((height, width)) * DEPTH_MAX)
    image = rng.random((3, height, width), dtype=np.float32)
    return image, labels, depth.astype(np.float32)


def cell(panel, row, col, cell_h, cell_w):
    """The pixels of grid cell (row, col) of a panel, its caption band excluded."""
    top = row * (CAPTION + cell_h + GAP) + CAPTION
    left = col * (cell_w + GAP)
    return panel[top:top + cell_h, left:left + cell_w]


def is_checker(pixels):
    return np.isin(pixels, CHECKER_GREYS).all(axis=-1)


@pytest.mark.parametrize("height, width", [(32, 64), (64, 128), (128, 256)])
def test_both_tasks_give_a_2x3_grid_of_cells_at_least_256_px_wide(height, width):
    image, labels, depth = sample(height, width)
    panel = sample_panel(image, {"semantic": labels.clip(0), "depth": depth}, {"semantic": labels, "depth": depth}, 7)
    cell_w, cell_h = 256, 128  # every size here is enlarged to 256 px wide
    assert panel.dtype == np.uint8
    assert panel.shape == (2 * (CAPTION + cell_h) + GAP + BAR, 3 * cell_w + 2 * GAP, 3)
    assert (cell(panel, 0, 2, cell_h, cell_w) == colourize_labels(enlarge(labels, cell_w // width), 7)).all()
    assert (cell(panel, 1, 2, cell_h, cell_w) == colourize_depth(enlarge(depth, cell_w // width))).all()


def test_single_task_panels():
    image, labels, depth = sample(32, 64)
    semantic = sample_panel(image, {"semantic": labels.clip(0)}, {"semantic": labels}, 7)
    assert semantic.shape == (CAPTION + 128, 4 * 256 + 3 * GAP, 3)  # input | predicted | true | legend
    assert (cell(semantic, 0, 3, 128, 256) == legend(7, 128, 256)).all()
    only_depth = sample_panel(image, {"depth": depth}, {"depth": depth}, 7)
    assert only_depth.shape == (CAPTION + 128 + BAR, 3 * 256 + 2 * GAP, 3)  # input | predicted | true, colour bar


def test_predictions_are_shown_where_their_target_counts():
    image, labels, depth = sample(32, 64)
    predicted = {"semantic": np.zeros_like(labels), "depth": np.full_like(depth, 0.1)}
    panel = sample_panel(image, predicted, {"semantic": labels, "depth": depth}, 7)
    factor = 4
    assert (is_checker(cell(panel, 0, 1, 128, 256)) == is_checker(cell(panel, 0, 2, 128, 256))).all()
    assert (is_checker(cell(panel, 0, 1, 128, 256)) == enlarge(labels < 0, factor)).all()
    assert (is_checker(cell(panel, 1, 1, 128, 256)) == enlarge(depth == 0, factor)).all()


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
