"""Drawing helpers for the tasks' TensorBoard cells (Task.draw, Task.key): segmentation in the
Cityscapes colours beside a legend of the class names; inverse depth on one fixed colour
scale, the same for every image, epoch and run, with its scale as the key; instance offsets
as hue (direction) and brightness (length, full from OFFSET_MAX px) beside a colour wheel.
Void labels, invalid depth and non-instance pixels are a light grey checker, which no class
colour, depth colour or offset colour is. Pure numpy/cv2: (H, W, 3) uint8 RGB out.
evaluation/visualize.py puts the cells together into a panel.
"""
import math

import cv2
import numpy as np

from data.labels import class_colours, class_names

# The release's inverse depth is disparity / 256: 0.5 is about 4 m away, nearer than almost
# every pixel (SynthCity's test split: 99th percentile 0.39). Larger values take the top colour.
DEPTH_MAX = 0.5
DEPTH_TICKS = 6  # 0, 0.1, ..., 0.5
# Instance offsets (pixels of the stored image) take full brightness from this length on: about
# the half-height of a car or a person near the camera in the 128x256 release.
OFFSET_MAX = 32
CHECKER, CHECKER_GREYS = 8, (205, 235)  # px squares of the void / invalid pattern
BACKGROUND, INK = 255, (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX


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


def _tick_labels():
    """The depth scale's ticks: (fraction of the scale, label); the top one "+": larger values share its colour."""
    values = np.linspace(0.0, DEPTH_MAX, DEPTH_TICKS)
    return [(i / (DEPTH_TICKS - 1), f"{v:g}" + ("+" if i == DEPTH_TICKS - 1 else "")) for i, v in enumerate(values)]


def depth_key(height, width):
    """(height, width, 3): the depth colour scale, ticked 0 … DEPTH_MAX, under its name, and the
    invalid pattern. A horizontal bar in a cell at least as wide as high, else a vertical one
    (DEPTH_MAX at the top)."""
    canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
    put_text(canvas, "inverse depth", 4, 14, 0.4)
    if width >= height:
        left, right = 8, width - 24  # room for the top tick's label
        bar_top, bar_bottom = 22, 22 + max(8, min(24, height // 5))
        canvas[bar_top:bar_bottom, left:right] = depth_colours(np.linspace(0.0, 1.0, right - left))[None]
        for fraction, label in _tick_labels():
            x = left + round(fraction * (right - left - 1))
            canvas[bar_bottom:bar_bottom + 5, x] = INK
            text_w = cv2.getTextSize(label, FONT, 0.4, 1)[0][0]
            put_text(canvas, label, min(max(x - text_w // 2, 0), width - text_w), bar_bottom + 19, 0.4)
        swatch_top = bar_bottom + 28
        swatch_x = left
    else:
        top, bottom = 24, height - 28  # the invalid swatch below
        left, bar_w = 8, max(8, min(24, width // 5))
        bar = depth_colours(np.linspace(1.0, 0.0, max(bottom - top, 1)))[:, None]
        canvas[top:bottom, left:left + bar_w] = bar
        for fraction, label in _tick_labels():
            y = bottom - 1 - round(fraction * (bottom - top - 1))
            canvas[y, left + bar_w:left + bar_w + 5] = INK
            put_text(canvas, label, left + bar_w + 8, min(max(y + 5, 12), height - 1), 0.4)
        swatch_top, swatch_x = bottom + 8, left
    side = 16
    if swatch_top + side <= height:
        canvas[swatch_top:swatch_top + side, swatch_x:swatch_x + side] = checker(side, side, 4)
        put_text(canvas, "invalid", swatch_x + side + 6, swatch_top + 12, 0.4)
    return canvas


def offset_colours(offsets):
    """(2, ...) offsets (dy, dx) in pixels → (..., 3) uint8 RGB: the direction as hue (right red,
    down yellow-green, left cyan, up blue-violet, around the HSV circle), the length as brightness,
    black at 0 and full from OFFSET_MAX px on."""
    dy, dx = np.nan_to_num(np.asarray(offsets, dtype=np.float32))
    hue = np.degrees(np.arctan2(dy, dx)) % 360
    hsv = np.stack([hue, np.ones_like(hue), np.clip(np.hypot(dy, dx) / OFFSET_MAX, 0.0, 1.0)], axis=-1)
    rgb = cv2.cvtColor(hsv.reshape(-1, 1, 3).astype(np.float32), cv2.COLOR_HSV2RGB).reshape(hsv.shape)
    return (np.clip(rgb, 0.0, 1.0) * 255).round().astype(np.uint8)


def colourize_offsets(offsets, mask):
    """(2, H, W) offsets (dy, dx) to the instance centre, in pixels → (H, W, 3) uint8 RGB on the
    fixed scale of offset_colours; checkered where `mask` ((H, W) bool) is False (no instance)."""
    mask = np.asarray(mask, dtype=bool)
    return np.where(mask[..., None], offset_colours(offsets), checker(*mask.shape))


OFFSET_CAPTION = ("offset to the", "instance centre", "hue: direction", "brightness: length,", f"full from {OFFSET_MAX} px")


def offset_key(height, width):
    """(height, width, 3): the colour wheel of colourize_offsets (each point has the colour of the
    offset from the wheel's centre to it, the rim at OFFSET_MAX px), its caption and the
    no-instance pattern."""
    canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
    text_h = (len(OFFSET_CAPTION) + 1) * 16 + 4
    beside = width >= height  # the caption beside the wheel, else below it
    side = max(min(height - 8, width * 2 // 5) if beside else min(width - 8, height - text_h - 4), 1)
    top, left = ((height - side) // 2, 4) if beside else (4, (width - side) // 2)
    y, x = (np.indices((side, side)) - (side - 1) / 2) / max(side / 2, 1) * OFFSET_MAX
    wheel = offset_colours(np.stack([y, x]))
    inside = np.hypot(y, x) <= OFFSET_MAX
    canvas[top:top + side, left:left + side] = np.where(inside[..., None], wheel, BACKGROUND)
    text_x, text_y = (left + side + 8, 14) if beside else (4, top + side + 14)
    widest = max(cv2.getTextSize(line, FONT, 1.0, 1)[0][0] for line in (*OFFSET_CAPTION, "no instance"))
    scale = min(0.4, max(width - text_x - 26, 1) / widest)
    for i, line in enumerate(OFFSET_CAPTION):
        put_text(canvas, line, text_x, text_y + i * 16, scale)
    swatch_top = text_y + len(OFFSET_CAPTION) * 16 - 8
    if swatch_top + 16 <= height:
        canvas[swatch_top:swatch_top + 16, text_x:text_x + 16] = checker(16, 16, 4)
        put_text(canvas, "no instance", text_x + 22, swatch_top + 12, scale)
    return canvas
