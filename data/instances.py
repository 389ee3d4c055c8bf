"""The instance target (tasks/instance.py) from an instance-id map: offsets to each instance's centroid.

Ids follow the gtFine *_instanceIds.png convention: an id >= 1000 (label id * 1000 + n)
marks one object instance of a "thing" class; anything else (a plain label id, 0) is
background. Used by data.prepare_cityscapes and data.synthcity alike.
"""
import numpy as np

FIRST_INSTANCE_ID = 1000


def instance_target(ids):
    """The (H, W, 3) float32 target of an (H, W) integer instance-id map.

    Channels 0-1: the offset (dy, dx) in pixels from each pixel of an instance to the
    centroid (mean row, mean column) of that instance's pixels, offset = centroid - pixel
    position; channel 2: 1 on instance pixels, 0 elsewhere, where the offsets are 0.
    Centroids are those of the map as given: resize the ids first, then call this.
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"expected an (H, W) integer instance-id map, got a {ids.dtype} array of shape {ids.shape}")
    height, width = ids.shape
    target = np.zeros((height * width, 3), np.float32)
    pixels = np.flatnonzero(ids.ravel() >= FIRST_INSTANCE_ID)
    if pixels.size:
        _, instance = np.unique(ids.ravel()[pixels], return_inverse=True)  # 0..n-1 per pixel
        rows, cols = np.divmod(pixels, width)
        count = np.bincount(instance)
        centre_row = np.bincount(instance, weights=rows) / count
        centre_col = np.bincount(instance, weights=cols) / count
        target[pixels, 0] = centre_row[instance] - rows
        target[pixels, 1] = centre_col[instance] - cols
        target[pixels, 2] = 1
    return target.reshape(height, width, 3)
