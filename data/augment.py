"""The reference augmentation (docs/methods.md, "Augmentation") as pure functions on numpy arrays.

Random scale-crop (zoom in by s), resize back, horizontal flip. `draw_crop` draws one
crop; the image follows it here (bilinearly, as `RESAMPLINGS` names), and each task's target follows it through its task's
`augment` (tasks/), by nearest neighbour plus whatever the zoom and the flip mean for its
values (depth scales, instance offsets stretch and mirror). Arrays keep the on-disk layout
(H, W[, C]).
"""
from typing import NamedTuple

import cv2
import numpy as np

SCALES = (1.0, 1.2, 1.5)
# How depth follows a zoom by s. "divide": the reference code (right for metric depth),
# the default so numbers stay comparable. "multiply": right for inverse depth, which the
# release stores (an object s times larger looks s times closer).
DEPTH_RULES = ("divide", "multiply")
# How the image window is resized back. "align_corners": the reference code's
# torch.nn.functional.interpolate(mode="bilinear", align_corners=True), the default;
# "opencv": cv2.resize's half-pixel bilinear, what runs before the setting existed used.
RESAMPLINGS = ("align_corners", "opencv")


def check_resampling(resampling):
    if resampling not in RESAMPLINGS:
        raise ValueError(f"image resampling must be one of {RESAMPLINGS}, got {resampling!r}")


def check_depth_rule(depth_rule):
    if depth_rule not in DEPTH_RULES:
        raise ValueError(f"depth rule must be one of {DEPTH_RULES}, got {depth_rule!r}")


def _corner_weights(size_in, size_out):
    """For each output pixel of an align_corners resize, its two source pixels and the weight
    of the second. The output grid's end points sit on the input's end points, so pixel i
    reads position i * (size_in - 1) / (size_out - 1). The ratio and the positions are float32,
    as torch computes them for float32 images, so the weights carry the same rounding."""
    ratio = np.float32((size_in - 1) / (size_out - 1)) if size_out > 1 else np.float32(0)
    position = np.arange(size_out, dtype=np.float32) * ratio
    first = np.minimum(position.astype(np.intp), size_in - 1)
    return first, np.minimum(first + 1, size_in - 1), position - first.astype(np.float32)


def resize_align_corners(window, height, width):
    """Bilinear resize of an (h, w, C) array to (height, width, C) with align_corners=True
    semantics: one linear pass along the columns, then one along the rows, in the array's
    dtype (equal to torch's interpolate to float32 rounding, tests/test_augment.py)."""
    h, w, channels = window.shape
    rows_a, rows_b, row_weight = _corner_weights(h, height)
    cols_a, cols_b, col_weight = _corner_weights(w, width)
    flat = np.ascontiguousarray(window).reshape(h, w * channels)
    lanes = np.arange(channels)
    left = flat.take((cols_a[:, None] * channels + lanes).ravel(), axis=1)
    right = flat.take((cols_b[:, None] * channels + lanes).ravel(), axis=1)
    right -= left
    right *= np.repeat(col_weight, channels).astype(flat.dtype, copy=False)
    left += right  # (h, width * C)
    top, bottom = left.take(rows_a, axis=0), left.take(rows_b, axis=0)
    bottom -= top
    bottom *= row_weight.astype(flat.dtype, copy=False)[:, None]
    top += bottom
    return top.reshape(height, width, channels)


def _nearest_index(size_in, size_out, start):
    """Source index of each output pixel, as torch's interpolate(mode="nearest")."""
    return start + np.minimum((np.arange(size_out) * (size_in / size_out)).astype(np.intp), size_in - 1)


class Crop(NamedTuple):
    """One drawn zoom: the window (top, left, h, w) of an (height, width) sample, scale s, flip."""

    scale: float
    top: int
    left: int
    h: int
    w: int
    height: int
    width: int
    flip: bool

    def image(self, image, resampling="align_corners"):
        """The (H, W, C) image's window resized back bilinearly, then flipped: with
        `resampling` "align_corners" as the reference code (torch's interpolate with
        align_corners=True), with "opencv" as cv2.resize (half-pixel centres; up to 0.25
        apart on textured content)."""
        check_resampling(resampling)
        window = image[self.top:self.top + self.h, self.left:self.left + self.w]
        if (self.h, self.w) != (self.height, self.width):
            if resampling == "opencv":
                window = cv2.resize(window, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
            else:
                window = resize_align_corners(window, self.height, self.width)
        return cv2.flip(window, 1) if self.flip else window

    def nearest(self, array):
        """The window resized back by nearest neighbour (the same source pixels as torch), then
        flipped: a new array, any dtype, values such as void -1 and invalid 0 kept."""
        rows = _nearest_index(self.h, self.height, self.top)
        cols = _nearest_index(self.w, self.width, self.left)
        if self.flip:
            cols = cols[::-1]
        return array.take(rows, axis=0).take(cols, axis=1)


def draw_crop(rng, height, width, scales=SCALES):
    """A zoom by a scale from `scales` into a window of (int(H/s), int(W/s)) at a uniform
    random position, flipped with p = 0.5; None when it changes nothing (s = 1, no flip).
    `rng` is a numpy Generator: the crop is a pure function of its state."""
    s = scales[rng.integers(len(scales))]
    h, w = int(height / s), int(width / s)
    top = rng.integers(height - h + 1)
    left = rng.integers(width - w + 1)
    flip = rng.random() < 0.5
    if (h, w) == (height, width) and not flip:
        return None
    return Crop(s, int(top), int(left), h, w, height, width, bool(flip))


def scale_depth(depth, scale, depth_rule="divide"):
    """Depth after a zoom by `scale`: divided or multiplied by it (`depth_rule`); 0 stays 0. A new array."""
    check_depth_rule(depth_rule)
    if scale == 1:
        return depth
    return depth / np.float32(scale) if depth_rule == "divide" else depth * np.float32(scale)
