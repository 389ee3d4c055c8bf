"""data/portable_float.py: exp, log and power to a few ulp, the resize and blur of OpenCV to float32
rounding. That their results do not depend on the CPU is tested through SynthCity's images
(tests/test_synthcity.py, test_a_cpu_without_simd_extensions_writes_the_same_bytes)."""
import math

import cv2
import numpy as np
import pytest

from data import portable_float as pf


def ulps(got, want):
    return np.max(np.abs(got - want) / np.spacing(np.abs(want)))


def test_exp_and_log_of_exact_values():
    assert pf.exp(0.0) == 1.0 and pf.log(1.0) == 0.0
    assert pf.exp(-1.5 * math.log(2)) == pytest.approx(2 ** -1.5, rel=2e-16)
    assert pf.log(np.array([2.0, 0.25, 1024.0])).tolist() == pytest.approx(
        [math.log(2), -2 * math.log(2), 10 * math.log(2)], rel=2e-16)


def test_exp_and_log_agree_with_the_c_library_within_2_ulp():
    x = np.linspace(-700, 700, 20001)
    assert ulps(pf.exp(x), np.array([math.exp(v) for v in x])) <= 2
    y = np.exp(np.linspace(-700, 700, 20001))
    assert ulps(pf.log(y), np.array([math.log(v) for v in y])) <= 2


def test_exp_clamps_its_argument_to_normal_results():
    assert pf.exp(-1e6) == pytest.approx(math.exp(-708), rel=1e-15)
    assert np.isfinite(pf.exp(1e6))


def test_power_of_an_image():
    x = np.random.default_rng(0).random((8, 16, 3))
    x[0, 0] = 0
    for gamma in (0.8, 1.25):
        got = pf.power(x, gamma)
        assert got[0, 0].tolist() == [0, 0, 0]
        np.testing.assert_allclose(got, x ** gamma, rtol=1e-14)


def test_resize_cubic_is_that_of_opencv():
    grid = np.random.default_rng(1).standard_normal((17, 33)).astype(np.float32)
    for height, width in ((64, 128), (32, 64), (17, 33)):
        want = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        np.testing.assert_allclose(pf.resize_cubic(grid, height, width), want, atol=2e-6)
    assert (pf.resize_cubic(np.full((3, 5), 0.25), 32, 64) == 0.25).all()  # the weights sum to 1


@pytest.mark.parametrize("sigma", [0.3, 0.55, 0.8])
def test_gaussian_blur_is_that_of_opencv(sigma):
    image = np.random.default_rng(2).random((32, 64, 3)).astype(np.float32)
    want = cv2.GaussianBlur(image, (3, 3), sigma)  # its default border: reflected about the edge pixel
    np.testing.assert_allclose(pf.gaussian_blur_3x3(image, sigma), want, atol=1e-6)
    # a vertical step: the kernel [e, 1, e] / (1 + 2e) with e = exp(-1 / (2 sigma^2)) across it
    step = np.zeros((4, 6))
    step[:, 3:] = 1
    e = math.exp(-0.5 / sigma ** 2)
    np.testing.assert_allclose(pf.gaussian_blur_3x3(step, sigma)[:, 2:4],
                               [[e / (1 + 2 * e), (1 + e) / (1 + 2 * e)]] * 4, rtol=1e-15)
