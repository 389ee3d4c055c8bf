"""Images for TensorBoard: segmentation in the Cityscapes colours, depth as a colour map."""
import cv2
import numpy as np

from data.labels import class_colours

VOID_COLOUR = (0, 0, 0)


def colourize_labels(labels, num_classes):
    """(H, W) integer labels → (H, W, 3) uint8 RGB; void and out-of-range pixels black."""
    palette = np.array(list(class_colours(num_classes)) + [VOID_COLOUR], dtype=np.uint8)
    labels = np.asarray(labels).astype(np.int64)
    index = np.where((labels >= 0) & (labels < num_classes), labels, num_classes)
    return palette[index]


def colourize_depth(depth, vmax):
    """(H, W) inverse depth → (H, W, 3) uint8 RGB on a fixed scale [0, vmax]; invalid (0) black."""
    depth = np.asarray(depth, dtype=np.float32)
    scaled = np.clip(depth / max(vmax, 1e-12), 0.0, 1.0)
    rgb = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_MAGMA)[..., ::-1]
    rgb = rgb.copy()
    rgb[depth <= 0] = 0
    return rgb


def sample_panel(image, predicted, true, num_classes):
    """One row: input | predicted | true segmentation | predicted | true depth, for the
    tasks present in `predicted` and `true` (dicts keyed "semantic", "depth").

    image (3, H, W) float in [0, 1]; labels (H, W) integers; depth (H, W). Predicted depth is
    drawn on the true depth's scale and masked where the target is invalid, so the two
    depth panels compare like for like. Returns (H, n·W, 3) uint8.
    """
    panels = [(np.clip(np.transpose(image, (1, 2, 0)), 0, 1) * 255).astype(np.uint8)]
    if "semantic" in true:
        panels += [colourize_labels(predicted["semantic"], num_classes), colourize_labels(true["semantic"], num_classes)]
    if "depth" in true:
        target = true["depth"]
        vmax = float(np.max(target)) if np.any(target > 0) else 1.0
        panels += [colourize_depth(np.where(target > 0, predicted["depth"], 0.0), vmax), colourize_depth(target, vmax)]
    return np.concatenate(panels, axis=1)
