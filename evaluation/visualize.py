"""Images for TensorBoard: one test sample as a captioned grid of input, predictions and targets.

Each task draws its cells (Task.draw, Task.key in tasks/, with the helpers of tasks/drawing.py);
this module enlarges the sample, lays the cells out in rows, one per task, and captions them.
Pure numpy: (H, W, 3) uint8 RGB in, the same out.
"""
import math

import numpy as np

from tasks.drawing import BACKGROUND, put_text

MIN_CELL_WIDTH = 256  # px: images are enlarged by a whole factor to at least this width
CAPTION, GAP = 18, 4  # px: caption band above each cell, space between cells


def enlarge(array, factor):
    """Nearest-neighbour enlargement by a whole factor: each pixel becomes factor x factor."""
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def _enlarge_sample(array, factor):
    """A prediction or target of one sample, (..., H, W) tensor or array, enlarged by nearest neighbour."""
    if factor == 1:
        return array
    if isinstance(array, np.ndarray):
        return np.repeat(np.repeat(array, factor, axis=-2), factor, axis=-1)
    return array.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def sample_panel(image, tasks, preds, targets):
    """A captioned grid of one test sample: its input, and per task its prediction, its target
    and its key (a legend, a scale; Task.key may have none):

        input          | predicted <task 0> | true <task 0>
        key of task 0  | predicted <task 1> | true <task 1>
        ...
        key of the last task

    image (3, H, W) float in [0, 1]; tasks: the run's Task objects; preds and targets: one per
    task, as the model and the dataset give them for one sample (no batch dimension, the last
    two dimensions H, W). Every cell is enlarged by the same whole factor to at least
    MIN_CELL_WIDTH px: the prediction and target are enlarged by nearest neighbour before
    Task.draw draws them (a cell pixel is one predicted pixel, and the void / invalid checker
    keeps its size), the keys are drawn at the cell size. Task.draw shows a prediction only
    where its target counts: both cells of a task show the same checkered areas.
    Returns (height, width, 3) uint8 RGB.
    """
    height, width = image.shape[1:]
    factor = max(1, math.ceil(MIN_CELL_WIDTH / width))
    cell_h, cell_w = height * factor, width * factor
    rgb = (np.clip(np.transpose(image, (1, 2, 0)), 0, 1) * 255).astype(np.uint8)
    left = ("input", enlarge(rgb, factor))  # the first cell of the next row
    rows = []
    for task, pred, target in zip(tasks, preds, targets, strict=True):
        predicted, true = task.draw(_enlarge_sample(pred, factor), _enlarge_sample(target, factor))
        rows.append([left, (f"predicted {task.name}", predicted), (f"true {task.name}", true)])
        key = task.key(cell_h, cell_w)
        left = None if key is None else (f"{task.name} colours", key)
    if left is not None:
        rows.append([left])
    return grid(rows)


def grid(rows):
    """Rows of (caption, cell) pairs, or None for an empty cell, of one cell size (the first
    row's first cell's) → one image, a caption band above each row of cells."""
    cell_h, cell_w = rows[0][0][1].shape[:2]
    columns = max(len(row) for row in rows)
    width = columns * cell_w + (columns - 1) * GAP
    bands = []
    for row in rows:
        band = np.full((CAPTION + cell_h, width, 3), BACKGROUND, np.uint8)
        for i, entry in enumerate(row):
            if entry is None:
                continue
            caption, cell = entry
            if cell.shape != (cell_h, cell_w, 3):
                raise ValueError(f"panel cell {caption!r} is {cell.shape}, expected ({cell_h}, {cell_w}, 3)")
            x = i * (cell_w + GAP)
            put_text(band, caption, x + 2, CAPTION - 5)
            band[CAPTION:, x:x + cell_w] = cell
        bands += [band, np.full((GAP, width, 3), BACKGROUND, np.uint8)]
    bands.pop()
    return np.concatenate(bands, axis=0)
