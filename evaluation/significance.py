"""Significance of differences between seeds' results: Welch's t-test, and Holm's step-down
correction over a family of such tests (a table's tests: without it, 35 tests at α = 0.05
would mark about two differences by chance alone)."""
import math
import statistics
import warnings

from scipy import stats


def mean_std(values):
    """(mean, sample std with ddof = 1); the std is None for a single value, where it is undefined."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def welch_p(a, b):
    """Two-sided p-value of Welch's t-test; None where it is undefined (fewer than two
    seeds on a side, or no spread on either side)."""
    if len(a) < 2 or len(b) < 2 or (len(set(a)) == 1 and len(set(b)) == 1):
        return None
    with warnings.catch_warnings():  # scipy warns about identical samples; the NaN is handled here
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.ttest_ind(a, b, equal_var=False).pvalue
    return None if math.isnan(p) else float(p)


def holm(p_values):
    """Holm-adjusted p-values, in the order given; None (an undefined test) stays None and is
    not counted in the family. With the m defined p-values sorted ascending, the i-th (from 0)
    becomes max over j <= i of min(1, (m - j) p_(j)): a test is rejected at level α exactly
    when Holm's step-down procedure rejects it, which holds the family-wise error rate at α
    under any dependence between the tests (the metrics of one run are correlated)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted, running = list(p_values), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[i] = running
    return adjusted


def interval_half_width(std, n, level=0.95):
    """Half the width of the Student-t interval for a mean of `n` seeds with sample std `std`:
    t_{(1 + level)/2, n−1} · std / √n; None for one seed (no std)."""
    if std is None or n < 2:
        return None
    return float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
