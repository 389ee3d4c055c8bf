"""evaluation.significance: Welch's t-test and Holm's step-down correction."""
import random

import pytest
from scipy import stats

from evaluation.significance import holm, welch_p


def test_welch_p_is_undefined_without_two_seeds_or_spread():
    assert welch_p([1.0], [1.0, 2.0]) is None
    assert welch_p([1.0, 1.0], [2.0, 2.0]) is None
    assert welch_p([1.0, 2.0, 3.0], [4.0, 5.0, 7.0]) == pytest.approx(
        stats.ttest_ind([1, 2, 3], [4, 5, 7], equal_var=False).pvalue)


@pytest.mark.parametrize("p, adjusted", [
    # m = 4, sorted 0.005, 0.01, 0.03, 0.04: 4 x 0.005, 3 x 0.01, 2 x 0.03, then 1 x 0.04 = 0.04
    # raised to the 0.06 before it (adjusted p-values never fall along the sorted order).
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
    # Undefined tests are not in the family: m = 3, 3 x 0.02, 2 x 0.04, 1 x 0.2.
    ([0.02, None, 0.2, 0.04], [0.06, None, 0.2, 0.08]),
    ([0.5, 0.6], [1.0, 1.0]),  # capped at 1
    ([0.3], [0.3]), ([None], [None]), ([], []),
])
def test_holm_adjusted_p_values_by_hand(p, adjusted):
    assert holm(p) == pytest.approx(adjusted)


def test_holm_rejects_what_the_step_down_procedure_rejects():
    """Holm's procedure: with the p-values sorted, reject while p_(i) <= alpha / (m - i), stop at the first that is not."""
    rng = random.Random(0)
    for _ in range(200):
        p = [rng.choice([rng.random() * 0.05, rng.random()]) for _ in range(rng.randint(1, 12))]
        rejected = set()
        for i, (value, index) in enumerate(sorted((v, j) for j, v in enumerate(p))):
            if value > 0.05 / (len(p) - i):
                break
            rejected.add(index)
        assert {j for j, a in enumerate(holm(p)) if a <= 0.05} == rejected
