"""Images for TensorBoard: one test sample as a captioned grid of input, predictions and targets.

Segmentation in the Cityscapes colours beside a legend of the class names; inverse depth on
one fixed colour scale, the same for every image, epoch and run, with a colour bar; void
labels and invalid depth as a light grey checker, which no class colour and no depth colour is.
Pure numpy/cv2: (H, W, 3) uint8 RGB in, the same out.
"""
import math

import cv2
import numpy as np

from data.labels import class_colours, class_names

# The release's inverse depth is disparity / 256: 0.5 is about 4 m away, nearer than almost
# every pixel (SynthCity's test split: 99th percentile 0.39). Larger values take the top colour.
DEPTH_MAX = 0.5
DEPTH_TICKS = 6  # 0, 0.1, ..., 0.5
MIN_CELL_WIDTH = 256  # px: images are enlarged by a whole factor to at least this width
CAPTION, GAP, BAR = 18, 4, 40  # px: caption band above each cell, space between cells, colour bar strip
CHECKER, CHECKER_GREYS = 8, (205, 235)  # px squares of the void / invalid pattern
BACKGROUND, INK = 255, (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def enlarge(array, factor):
    """Nearest-neighbour enlargement by a whole factor: each pixel becomes factor x factor."""
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def checker(height, width, square=CHECKER):
    """(H, W, 3) uint8: the pattern that marks void labels and invalid depth."""
    rows, cols = np.indices((height, width)) // square
    grey = np.where((rows + cols) % 2 == 0, *CHECKER_GREYS).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def colourize_labels(labels, num_classes):
    """(H, W) integer labels → (H, W, 3) uint8 RGB; void and out-of-range labels checkered."""
    labels = np.asarray(labels).astype(np.int64)
    valid = (labels >= 0) & (labels < num_classes)
    rgb = np.array(class_colours(num_classes), dtype=np.uint8)[np.where(valid, labels, 0)]
    return np.where(valid[..., None], rgb, checker(*labels.shape))


def depth_colours(values):
    """Values in [0, 1] → (..., 3) uint8 RGB of the magma colour map."""
    # NaN only in the panels of a diverged epoch, which the run refuses right after drawing them
    levels = (np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_MAGMA)[:, 0, ::-1].reshape(*levels.shape, 3)


def colourize_depth(depth):
    """(H, W) inverse depth → (H, W, 3) uint8 RGB on the fixed scale [0, DEPTH_MAX]; invalid (0) checkered."""
    depth = np.asarray(depth, dtype=np.float32)
    return np.where((depth > 0)[..., None], depth_colours(depth / DEPTH_MAX), checker(*depth.shape))


def put_text(canvas, text, x, baseline, scale=0.45):
    cv2.putText(canvas, text, (x, baseline), FONT, scale, INK, 1, cv2.LINE_AA)


def legend(num_classes, height, width):
    """(height, width, 3): a colour swatch and the name of each class, and void, in as few
    columns as keep a row at least 12 px high (19 classes fit a 128 x 256 cell)."""
    names = [*class_names(num_classes), "void"]
    columns = next(c for c in range(1, len(names) + 1) if height // math.ceil(len(names) / c) >= 12)
    per_column = math.ceil(len(names) / columns)
    row_h, col_w = height // per_column, width // columns
    swatch = row_h - 3
    swatches = [np.full((swatch, swatch, 3), c, np.uint8) for c in class_colours(num_classes)]
    swatches.append(checker(swatch, swatch, max(swatch // 3, 1)))
    widest = max(cv2.getTextSize(name, FONT, 1.0, 1)[0][0] for name in names)
    scale = min(0.45, swatch / 22, (col_w - swatch - 8) / widest)  # 22 px: the font's height at scale 1
    canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
    for i, (name, patch) in enumerate(zip(names, swatches)):
        x, y = (i // per_column) * col_w + 2, (i % per_column) * row_h
        canvas[y + 1:y + 1 + swatch, x:x + swatch] = patch
        put_text(canvas, name, x + swatch + 4, y + row_h - 3, scale)
    return canvas


def colour_bar(width, left, right):
    """(BAR, width, 3): the depth colour scale between x = left and right, ticked 0 … DEPTH_MAX
    (the top tick "+": larger values share its colour); its name and the invalid pattern to its left."""
    strip = np.full((BAR, width, 3), BACKGROUND, np.uint8)
    strip[2:14, left:right] = depth_colours(np.linspace(0.0, 1.0, right - left))[None]
    for i, value in enumerate(np.linspace(0.0, DEPTH_MAX, DEPTH_TICKS)):
        x = left + round(i * (right - left - 1) / (DEPTH_TICKS - 1))
        strip[14:19, x] = INK
        label = f"{value:g}" + ("+" if i == DEPTH_TICKS - 1 else "")
        text_w = cv2.getTextSize(label, FONT, 0.4, 1)[0][0]
        put_text(strip, label, min(max(x - text_w // 2, left), right - text_w), 33, 0.4)
    x = max(left - 110, 0)
    put_text(strip, "inverse depth", x, 12, 0.4)
    strip[21:37, x:x + 16] = checker(16, 16, 4)
    put_text(strip, "invalid", x + 22, 33, 0.4)
    return strip


def sample_panel(image, predicted, true, num_classes):
    """A captioned grid for the tasks present in `predicted` and `true` (dicts keyed "semantic",
    "depth"). Both tasks: input | predicted | true segmentation over class legend | predicted |
    true depth, with the depth colour bar below; segmentation only: input | predicted | true |
    legend; depth only: input | predicted | true depth, with the colour bar.

    image (3, H, W) float in [0, 1]; labels (H, W) integers; depth (H, W). Every cell is
    enlarged by the same whole factor to at least MIN_CELL_WIDTH px (nearest-neighbour, so a
    cell pixel is one predicted pixel). Predictions are shown only where their target counts
    (not void, valid depth): both panels of a task show the same checkered areas.
    Returns (height, width, 3) uint8 RGB.
    """
    height, width = image.shape[1:]
    factor = max(1, math.ceil(MIN_CELL_WIDTH / width))
    rgb = (np.clip(np.transpose(image, (1, 2, 0)), 0, 1) * 255).astype(np.uint8)
    first = [("input", enlarge(rgb, factor))]
    if "semantic" in true:
        target = true["semantic"]
        shown = np.where((target >= 0) & (target < num_classes), predicted["semantic"], -1)
        first += [("predicted segmentation", colourize_labels(enlarge(shown, factor), num_classes)),
                  ("true segmentation", colourize_labels(enlarge(target, factor), num_classes))]
        key = ("class colours", legend(num_classes, height * factor, width * factor))
    rows = [first + [key]] if "semantic" in true else [first]
    if "depth" in true:
        target = true["depth"]
        depth = [("predicted depth", colourize_depth(enlarge(np.where(target > 0, predicted["depth"], 0.0), factor))),
                 ("true depth", colourize_depth(enlarge(target, factor)))]
        rows = [first, [key] + depth] if "semantic" in true else [first[:1] + depth]
    return grid(rows, with_bar="depth" in true)


def grid(rows, with_bar):
    """Rows of (caption, cell) pairs of one cell size → one image; the colour bar, if asked,
    under the last two cells of the last row."""
    cell_h, cell_w = rows[0][0][1].shape[:2]
    columns = max(len(row) for row in rows)
    width = columns * cell_w + (columns - 1) * GAP
    bands = []
    for row in rows:
        band = np.full((CAPTION + cell_h, width, 3), BACKGROUND, np.uint8)
        for i, (caption, cell) in enumerate(row):
            x = i * (cell_w + GAP)
            put_text(band, caption, x + 2, CAPTION - 5)
            band[CAPTION:, x:x + cell_w] = cell
        bands += [band, np.full((GAP, width, 3), BACKGROUND, np.uint8)]
    bands.pop()
    if with_bar:
        bands.append(colour_bar(width, width - 2 * cell_w - GAP, width))
    return np.concatenate(bands, axis=0)
