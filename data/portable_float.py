"""Float operations on images whose results are the same bytes on every CPU: exp, log, power, a
bicubic resize and a 3x3 Gaussian blur, in float64.

NumPy and OpenCV choose a SIMD code path by the CPU they run on (AVX-512, AVX2, SSE...), and
their transcendental functions (np.exp, np.power) and filters (cv2.resize, cv2.GaussianBlur)
round differently on each, so one computation ends in different last bits on different machines.
IEEE 754 rounds +, -, *, / exactly, on every path; frexp, ldexp, rint, floor, clip and indexing
are exact. The functions here use only those, element by element and in a fixed order (no
reduction such as np.sum or np.dot, whose summation order depends on the path), so their results
do not depend on the CPU (docs/design.md, "SynthCity").
"""
import math

import numpy as np

# ln 2 split so that k * LN2_HI is exact for |k| < 2**11 (fdlibm's constants)
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1 / math.log(2)  # only picks the reduction's k: any rounding of it is harmless
# e**r = sum r**n / n!, |r| <= ln(2) / 2: the terms after n = 13 are below 1e-17 relative
_EXP_TERMS = [1 / math.factorial(n) for n in range(14)]
# log(m) = 2 atanh(s) = 2 (s + s**3 / 3 + ...), |s| <= 0.172: the terms after s**25 are below 1e-17
_ATANH_TERMS = [1 / (2 * n + 1) for n in range(13)]
_SQRT_HALF = 0.7071067811865476
# exp's argument is clamped so that its result stays a normal float64 (no overflow, no subnormals)
_EXP_RANGE = (-708.0, 709.0)


def _horner(coefficients, x):
    """sum coefficients[n] * x**n, innermost term first."""
    total = np.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        total = total * x + c
    return total


def exp(x):
    """e**x, float64, within 2 ulp; x clamped to [-708, 709]."""
    x = np.clip(np.asarray(x, np.float64), *_EXP_RANGE)
    k = np.rint(x * _INV_LN2)
    r = (x - k * LN2_HI) - k * LN2_LO  # x = k ln 2 + r
    return np.ldexp(_horner(_EXP_TERMS, r), k.astype(np.int64))


def log(x):
    """Natural logarithm of x > 0, float64, within 2 ulp."""
    m, e = np.frexp(np.asarray(x, np.float64))  # x = m * 2**e, m in [0.5, 1)
    low = m < _SQRT_HALF
    m = np.where(low, m * 2, m)  # m in [sqrt(1/2), sqrt(2))
    e = (e - low).astype(np.float64)
    s = (m - 1) / (m + 1)
    return e * LN2_HI + (e * LN2_LO + 2 * s * _horner(_ATANH_TERMS, s * s))


def power(base, exponent):
    """base**exponent for base >= 0 (0 where base is 0) and a scalar exponent > 0, float64."""
    base = np.asarray(base, np.float64)
    positive = base > 0
    return np.where(positive, exp(exponent * log(np.where(positive, base, 1.0))), 0.0)


# --- filters: separable, each output a fixed sum of weighted inputs ------------------------


def _weighted_sum(image, axis, taps):
    """sum_k weights_k * image[indices_k] along axis, in the order of taps ((indices, weights) pairs)."""
    total = None
    for indices, weights in taps:
        shape = [1] * image.ndim
        shape[axis] = len(weights)
        term = np.take(image, indices, axis) * np.reshape(weights, shape)
        total = term if total is None else total + term
    return total


def _cubic_taps(n_out, n_in):
    """The 4 (indices, weights) taps of cv2.INTER_CUBIC from n_in to n_out samples: pixel centres
    aligned, Keys' kernel with a = -0.75, edges replicated."""
    a = -0.75
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    left = np.floor(x)
    t = x - left
    u = 1 - t
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * u - (a + 3)) * u * u + 1
    w3 = 1 - w0 - w1 - w2
    first = left.astype(np.int64) - 1
    return [(np.clip(first + k, 0, n_in - 1), w) for k, w in enumerate((w0, w1, w2, w3))]


def resize_cubic(image, height, width):
    """image (h, w, ...) resized to (height, width, ...) as cv2.resize with INTER_CUBIC does
    (along each row first, then down each column), in float64."""
    image = np.asarray(image, np.float64)
    across = _weighted_sum(image, 1, _cubic_taps(width, image.shape[1]))
    return _weighted_sum(across, 0, _cubic_taps(height, image.shape[0]))


def _blur_taps(n, sigma):
    """The 3 taps of a Gaussian of this sigma along n samples, the edge reflected as OpenCV's
    default border does (the neighbour beyond index 0 is index 1)."""
    e = exp(-0.5 / (sigma * sigma))
    side, centre = e / (1 + 2 * e), 1 / (1 + 2 * e)
    i = np.arange(n)
    before, after = np.abs(i - 1), (n - 1) - np.abs(n - 2 - i)
    return [(before, np.full(n, side)), (i, np.full(n, centre)), (after, np.full(n, side))]


def gaussian_blur_3x3(image, sigma):
    """image (h, w, ...) blurred as cv2.GaussianBlur(image, (3, 3), sigma) does, in float64."""
    image = np.asarray(image, np.float64)
    across = _weighted_sum(image, 1, _blur_taps(image.shape[1], sigma))
    return _weighted_sum(across, 0, _blur_taps(image.shape[0], sigma))
