"""data.instances.instance_target: offsets to instance centroids from an instance-id map."""
import numpy as np
import pytest

from data.instances import instance_target


def loop_target(ids):
    """The target the slow way: one instance at a time, pixel by pixel."""
    target = np.zeros((*ids.shape, 3), np.float64)
    for instance in np.unique(ids[ids >= 1000]):
        rows, cols = np.nonzero(ids == instance)
        cy, cx = rows.mean(), cols.mean()
        for r, c in zip(rows, cols):
            target[r, c] = (cy - r, cx - c, 1)
    return target


def test_known_centroids():
    ids = np.zeros((6, 8), np.int32)
    ids[1:3, 1:4] = 26001        # a 2x3 block: centroid (1.5, 2)
    ids[4, 6] = 24001            # one pixel: its own centroid, offset 0 but on the mask
    ids[0, 7] = ids[5, 7] = 24002  # two pixels far apart: one instance, centroid (2.5, 7)
    ids[5, 0] = 26              # a plain label id (< 1000): background
    t = instance_target(ids)
    assert t.dtype == np.float32 and t.shape == (6, 8, 3)
    np.testing.assert_array_equal(t[1, 1], (0.5, 1, 1))
    np.testing.assert_array_equal(t[2, 3], (-0.5, -1, 1))
    np.testing.assert_array_equal(t[4, 6], (0, 0, 1))
    np.testing.assert_array_equal(t[0, 7], (2.5, 0, 1))
    np.testing.assert_array_equal(t[5, 7], (-2.5, 0, 1))
    background = ids < 1000
    assert (t[background] == 0).all()
    assert t[..., 2].sum() == 6 + 1 + 2


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64])
def test_matches_a_per_instance_loop(dtype):
    rng = np.random.default_rng(0)
    ids = rng.choice([0, 7, 26, 24001, 24002, 26001, 26002, 33001], (24, 40)).astype(dtype)
    np.testing.assert_allclose(instance_target(ids), loop_target(ids).astype(np.float32), rtol=0, atol=1e-6)


def test_no_instances_gives_zeros():
    assert not instance_target(np.full((4, 5), 7, np.uint16)).any()


def test_offsets_sum_to_zero_per_instance():
    rng = np.random.default_rng(1)
    ids = rng.integers(998, 1010, (32, 64))
    t = instance_target(ids).astype(np.float64)
    for instance in np.unique(ids[ids >= 1000]):
        assert np.abs(t[ids == instance, :2].sum(0)).max() < 1e-4


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 1), np.int32), np.zeros(4, np.int32)])
def test_rejects_what_is_not_an_integer_map(bad):
    with pytest.raises(ValueError, match="integer instance-id map"):
        instance_target(bad)
