"""robust.median is np.median, bit for bit (the track check's and the visual update's decisions depend on it)."""

import math

import numpy as np
import pytest

from geoloc_node.robust import median, median_and_spread


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 257, 1000, 4097])
def test_median_is_numpys_bit_for_bit(n):
    rng = np.random.default_rng(n)
    for values in (rng.normal(0.0, 30.0, n), np.round(rng.normal(0.0, 3.0, n)) * 0.1,  # ties
                   rng.integers(0, 256, n).astype(np.float64) / 3.0, np.full(n, 0.1)):
        want = float(np.median(values))
        got = median(values)
        assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want), (n, got, want)


def test_median_of_values_with_a_nan_is_nan_and_the_input_is_untouched():
    values = np.array([3.0, np.nan, 1.0, 2.0])
    copy = values.copy()
    assert math.isnan(median(values))
    assert np.array_equal(values, copy, equal_nan=True)


def test_other_inputs_go_to_numpy():
    assert median(np.array([1, 2, 3, 10], dtype=np.int32)) == 2.5
    assert median([4.0, 1.0, 2.0]) == 2.0
    assert median(np.arange(6, dtype=np.float32).reshape(2, 3)) == 2.5
    with pytest.warns(RuntimeWarning):
        assert math.isnan(median(np.zeros(0)))


def test_median_and_spread_is_the_robust_spread_with_its_floor():
    rng = np.random.default_rng(3)
    for values in (rng.normal(128.0, 8.0, 4001), rng.normal(0.0, 1.0, (16, 300))):
        med = float(np.median(values))
        assert median_and_spread(values, 0.25) == (med, max(1.4826 * float(np.median(np.abs(values - med))), 0.25))
    assert median_and_spread(np.full(50, 7.0), 0.5) == (7.0, 0.5)  # a flat row: the floor, not a division by 0
