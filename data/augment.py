"""The reference augmentation of METHODS §1 as pure functions on numpy arrays.

Random scale-crop (zoom in by s), resize back, horizontal flip. Arrays keep the on-disk
layout: image (H, W, 3), label (H, W), depth (H, W, 1).
"""
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


def scale_crop_flip(image, label, depth, rng, scales=SCALES, depth_rule="divide"):
    """Zoom into a random window by a scale from `scales`, then flip with p = 0.5.

    The window is (int(H/s), int(W/s)) at a uniform random position; it is resized back
    to (H, W), the image bilinearly (cv2, half-pixel centres; the reference used torch's
    align_corners=True, a sub-pixel difference), label and depth by nearest neighbour
    (the same source pixels as torch), so void -1 and invalid depth 0 survive. Depth is
    then divided or multiplied by s (`depth_rule`); 0 stays 0.

    Returns new arrays of the input shapes and dtypes (the inputs themselves when s = 1
    and no flip is drawn); never modifies the inputs. `rng` is a numpy Generator: the
    result is a pure function of its state.
    """
    check_depth_rule(depth_rule)
    height, width = label.shape
    s = scales[rng.integers(len(scales))]
    h, w = int(height / s), int(width / s)
    top = rng.integers(height - h + 1)
    left = rng.integers(width - w + 1)
    flip = rng.random() < 0.5
    if (h, w) == (height, width) and not flip:
        return image, label, depth

    window = image[top:top + h, left:left + w]
    if (h, w) != (height, width):
        window = cv2.resize(window, (width, height), interpolation=cv2.INTER_LINEAR)
    image = cv2.flip(window, 1) if flip else window

    # Nearest neighbour as index arrays: exact, any label dtype, and the flip is free.
    rows = _nearest_index(h, height, top)
    cols = _nearest_index(w, width, left)
    if flip:
        cols = cols[::-1]
    label = label.take(rows, axis=0).take(cols, axis=1)
    depth = depth.take(rows, axis=0).take(cols, axis=1)
    if s != 1:
        if depth_rule == "divide":
            depth /= s
        else:
            depth *= s
    return image, label, depth
