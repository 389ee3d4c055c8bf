"""The reference augmentation (docs/methods.md, "Augmentation") as pure functions on numpy arrays.

Random scale-crop (zoom in by s), resize back, horizontal flip. `draw_crop` draws one
crop; the image follows it here, and each task's target follows it through its task's
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


def check_depth_rule(depth_rule):
    if depth_rule not in DEPTH_RULES:
        raise ValueError(f"depth rule must be one of {DEPTH_RULES}, got {depth_rule!r}")


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

    def image(self, image):
        """The window resized back bilinearly (cv2, half-pixel centres; the reference used
        torch's align_corners=True, a sub-pixel difference), then flipped."""
        window = image[self.top:self.top + self.h, self.left:self.left + self.w]
        if (self.h, self.w) != (self.height, self.width):
            window = cv2.resize(window, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
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
