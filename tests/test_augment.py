import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data.augment import DEPTH_RULES, RESAMPLINGS, SCALES, Crop, draw_crop, resize_align_corners
from tasks import TaskSettings
from tasks.depth import DepthTask
from tasks.instance import InstanceTask
from tasks.semantic import SemanticTask

H, W = 32, 64


class Draws:
    """Stands in for a numpy Generator: fixed scale index, window top and left, flip."""

    def __init__(self, scale_index, top, left, flip):
        self._integers = [scale_index, top, left]
        self._flip = flip

    def integers(self, high):
        value = self._integers.pop(0)
        assert 0 <= value < high
        return value

    def random(self):
        return 0.0 if self._flip else 0.99


def scale_crop_flip(image, label, depth, rng, depth_rule="divide"):
    """The dataset's path for one (image, label, depth) sample: one crop, each target through its task."""
    semantic, depth_task = SemanticTask(), DepthTask(TaskSettings(depth_rule=depth_rule))
    crop = draw_crop(rng, *label.shape)
    if crop is None:
        return image, label, depth
    return crop.image(image), semantic.augment(label, crop), depth_task.augment(depth, crop)


def sample():
    """Image of smooth random values, label with a void block, depth 0 exactly where void."""
    rng = np.random.default_rng(0)
    image = rng.random((H, W, 3), dtype=np.float32)
    label = rng.integers(0, 7, (H, W)).astype(np.float32)
    label[12:20, 24:40] = -1  # inside every possible window
    depth = rng.uniform(0.01, 0.5, (H, W, 1)).astype(np.float32)
    depth[label == -1] = 0
    return image, label, depth


def nearest_reference(array, top, left, h, w):
    """torch's interpolate(mode="nearest") of the window, as the reference code does it."""
    window = torch.from_numpy(np.ascontiguousarray(array[top:top + h, left:left + w]))
    channels_first = window.reshape(h, w, -1).permute(2, 0, 1)[None]
    return F.interpolate(channels_first, size=(H, W), mode="nearest")[0].permute(1, 2, 0).reshape(array.shape).numpy()


def test_scale_one_without_flip_is_identity():
    image, label, depth = sample()
    out = scale_crop_flip(image, label, depth, Draws(0, 0, 0, flip=False))
    for a, b in zip(out, (image, label, depth)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_flip_mirrors_every_array():
    image, label, depth = sample()
    out = scale_crop_flip(image, label, depth, Draws(0, 0, 0, flip=True))
    for a, b in zip(out, (image, label, depth)):
        assert a.flags.c_contiguous
        np.testing.assert_array_equal(a, b[:, ::-1])


def test_crop_resize_of_a_known_pattern():
    # Every label pixel holds its own index, so the output says which source pixel it took.
    image, _, depth = sample()
    label = np.arange(H * W, dtype=np.float32).reshape(H, W)
    top, left = 3, 5
    h, w = int(H / 1.5), int(W / 1.5)
    out_image, out_label, _ = scale_crop_flip(image, label, depth, Draws(2, top, left, flip=False))
    rows = top + np.floor(np.arange(H) * h / H).astype(int)
    cols = left + np.floor(np.arange(W) * w / W).astype(int)
    np.testing.assert_array_equal(out_label, label[rows[:, None], cols])
    np.testing.assert_array_equal(out_label, nearest_reference(label, top, left, h, w))
    np.testing.assert_allclose(out_image, bilinear_reference(image, top, left, h, w), rtol=0, atol=1e-6)


def bilinear_reference(image, top, left, h, w, align_corners=True):
    """torch's bilinear interpolate of the image's window back to (H, W), as the reference code does it."""
    window = torch.from_numpy(np.ascontiguousarray(image[top:top + h, left:left + w])).permute(2, 0, 1)[None]
    return F.interpolate(window, size=(H, W), mode="bilinear", align_corners=align_corners)[0].permute(1, 2, 0).numpy()


def textured(height, width, seed):
    """Independent values per pixel in [0, 1): where the two resamplings differ most."""
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


@pytest.mark.parametrize("scale_index", [1, 2])
@pytest.mark.parametrize("flip", [False, True])
def test_image_resampling_equals_torch_interpolate(scale_index, flip):
    # The default is the reference's F.interpolate(bilinear, align_corners=True) on the same
    # window, to 1e-6 on textured content; opencv (the legacy value) is torch's half-pixel
    # align_corners=False, and differs from the reference by up to about 0.25 here.
    image = textured(H, W, scale_index)
    s = SCALES[scale_index]
    top, left, h, w = 3, 5, int(H / s), int(W / s)
    crop = Crop(s, top, left, h, w, H, W, flip)
    mirror = (lambda a: a[:, ::-1]) if flip else (lambda a: a)
    reference = mirror(bilinear_reference(image, top, left, h, w))
    out = crop.image(image)
    assert out.dtype == np.float32 and out.shape == image.shape and out.flags.c_contiguous
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out, crop.image(image, "align_corners"))
    legacy = crop.image(image, "opencv")
    np.testing.assert_allclose(legacy, mirror(bilinear_reference(image, top, left, h, w, align_corners=False)),
                               rtol=0, atol=1e-5)
    assert np.abs(legacy - reference).max() > 0.05


@pytest.mark.parametrize("size", [(128, 256), (256, 512), (37, 5), (2, 3)])
def test_resize_align_corners_at_other_sizes(size):
    # Real release sizes and odd ones, upsampling from every window size of the protocol
    height, width = size
    image = textured(height, width, 7)
    for s in SCALES[1:]:
        h, w = max(1, int(height / s)), max(1, int(width / s))
        window = torch.from_numpy(np.ascontiguousarray(image[:h, :w])).permute(2, 0, 1)[None]
        reference = F.interpolate(window, size=size, mode="bilinear", align_corners=True)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(resize_align_corners(image[:h, :w], height, width), reference, rtol=0, atol=1e-6)


def test_scale_one_is_exact_under_every_resampling():
    image = textured(H, W, 3)
    crop = Crop(1.0, 0, 0, H, W, H, W, True)
    for resampling in RESAMPLINGS:
        np.testing.assert_array_equal(crop.image(image, resampling), image[:, ::-1])


def test_unknown_resampling_is_refused():
    crop = Crop(1.2, 0, 0, int(H / 1.2), int(W / 1.2), H, W, False)
    with pytest.raises(ValueError, match="align_corners"):
        crop.image(textured(H, W, 0), "cubic")


@pytest.mark.parametrize("rule", DEPTH_RULES)
def test_depth_rule_is_exact(rule):
    image, label, depth = sample()
    top, left, h, w = 2, 7, int(H / 1.2), int(W / 1.2)
    _, _, out = scale_crop_flip(image, label, depth, Draws(1, top, left, flip=False), depth_rule=rule)
    resized = nearest_reference(depth, top, left, h, w)
    expected = resized / np.float32(1.2) if rule == "divide" else resized * np.float32(1.2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def test_unknown_depth_rule_is_refused():
    with pytest.raises(ValueError, match="divide"):
        scale_crop_flip(*sample(), np.random.default_rng(0), depth_rule="inverse")


@pytest.mark.parametrize("seed", range(20))
def test_void_and_invalid_depth_survive(seed):
    image, label, depth = sample()
    _, out_label, out_depth = scale_crop_flip(image, label, depth, np.random.default_rng(seed))
    assert set(np.unique(out_label)) <= set(np.unique(label))
    np.testing.assert_array_equal(out_label == -1, out_depth[..., 0] == 0)
    assert (out_label == -1).any()


@pytest.mark.parametrize("label_dtype", [np.float32, np.int64])
def test_shapes_and_dtypes_kept_and_inputs_untouched(label_dtype):
    image, label, depth = sample()
    label = label.astype(label_dtype)
    copies = [a.copy() for a in (image, label, depth)]
    for seed in range(10):
        out = scale_crop_flip(image, label, depth, np.random.default_rng(seed))
        for a, b in zip(out, copies):
            assert (a.shape, a.dtype) == (b.shape, b.dtype)
    for a, b in zip((image, label, depth), copies):
        np.testing.assert_array_equal(a, b)


def test_every_scale_and_both_flips_are_drawn():
    image, _, depth = sample()
    label = np.arange(H * W, dtype=np.float32).reshape(H, W)
    seen = set()
    for seed in range(60):
        _, out, _ = scale_crop_flip(image, label, depth, np.random.default_rng(seed))
        window_height = len(np.unique(out[:, 0] // W))
        seen.add((window_height, bool(out[0, 0] > out[0, -1])))
    assert seen == {(int(H / s), flip) for s in SCALES for flip in (False, True)}


def instance_target():
    """Two instances with their offsets to the centroid, zero elsewhere."""
    target = np.zeros((H, W, 3), np.float32)
    for top, left, h, w in ((4, 6, 6, 10), (18, 30, 8, 12)):
        rows, cols = np.mgrid[top:top + h, left:left + w]
        target[rows, cols, 0] = (top + (h - 1) / 2) - rows
        target[rows, cols, 1] = (left + (w - 1) / 2) - cols
        target[rows, cols, 2] = 1
    return target


@pytest.mark.parametrize("scale_index, top, left, flip", [(0, 0, 0, True), (1, 2, 3, False), (2, 5, 9, True)])
def test_instance_offsets_stretch_with_the_zoom_and_mirror_with_the_flip(scale_index, top, left, flip):
    target = instance_target()
    crop = draw_crop(Draws(scale_index, top, left, flip), H, W)
    out = InstanceTask().augment(target, crop)
    moved = crop.nearest(target)
    np.testing.assert_array_equal(out[..., 2], moved[..., 2])  # the mask moves like a label
    s = SCALES[scale_index]
    np.testing.assert_allclose(out[..., 0], moved[..., 0] * s, rtol=1e-6)
    np.testing.assert_allclose(out[..., 1], moved[..., 1] * s * (-1 if flip else 1), rtol=1e-6)
    assert not out[out[..., 2] == 0][:, :2].any()  # background offsets stay 0
    np.testing.assert_array_equal(target, instance_target())  # the input is untouched


def test_flipped_offsets_still_point_at_the_mirrored_centroid():
    target = instance_target()
    out = InstanceTask().augment(target, draw_crop(Draws(0, 0, 0, flip=True), H, W))
    rows, cols = np.nonzero(out[..., 2])
    pointed = np.stack([rows + out[rows, cols, 0], cols + out[rows, cols, 1]], axis=1)
    mirrored_centroids = {(4 + 2.5, W - 1 - (6 + 4.5)), (18 + 3.5, W - 1 - (30 + 5.5))}
    assert {tuple(p) for p in np.unique(pointed, axis=0)} == mirrored_centroids
