import math

import numpy as np
import pytest

from geoloc_node.codes import hamming
from geoloc_node.errors import CodeLengthError, CoordinateError
from geoloc_node.search import TableSearch
from geoloc_node.table import open_table


def noisy_copy(code, flips, rng):
    bits = np.unpackbits(code)
    bits[rng.choice(bits.size, flips, replace=False)] ^= 1
    return np.packbits(bits)


def test_whole_table_topk_is_exact(small_table):
    t = open_table(small_table[0])
    s = TableSearch(t)
    rng = np.random.default_rng(1)
    for b in range(t.heading_bins):
        target = 1234
        q = noisy_copy(np.asarray(t.codes[b, target]), 30, rng)
        m = s.topk(q, k=5, heading_bin=b)
        brute = hamming(q, np.asarray(t.codes[b]))
        assert m.indices[0] == target and m.distances[0] == 30
        assert np.array_equal(m.distances, np.sort(brute)[:5])
        assert np.array_equal(m.distances, brute[m.indices])
        assert np.allclose(m.en, t.en[m.indices])


def test_window_holds_exactly_the_tiles_within_the_radius(small_table):
    t = open_table(small_table[0])
    s = TableSearch(t)
    en = np.asarray(t.en, dtype=np.float64)
    for (e, n, r) in [(0.0, 0.0, 55.0), (-290.0, 130.0, 80.0), (300.0, 300.0, 25.0), (10.0, -5.0, 1000.0)]:
        got = np.sort(s.window(e, n, r))
        want = np.flatnonzero(np.hypot(en[:, 0] - e, en[:, 1] - n) <= r)
        assert np.array_equal(got, want)


def test_topk_window_matches_brute_force_restricted_to_the_window(small_table):
    t = open_table(small_table[0])
    s = TableSearch(t)
    rng = np.random.default_rng(2)
    q = rng.integers(0, 256, 32, dtype=np.uint8)
    m = s.topk_window(q, 40.0, -20.0, 120.0, k=5, heading_bin=2)
    en = np.asarray(t.en, dtype=np.float64)
    inside = np.flatnonzero(np.hypot(en[:, 0] - 40.0, en[:, 1] + 20.0) <= 120.0)
    brute = hamming(q, np.asarray(t.codes[2, inside]))
    assert np.array_equal(m.distances, np.sort(brute)[:5])
    assert set(m.indices) <= set(inside)


def test_window_outside_coverage_is_empty_and_small_window_returns_fewer(small_table):
    s = TableSearch(open_table(small_table[0]))
    q = np.zeros(32, np.uint8)
    assert len(s.topk_window(q, 50_000.0, 0.0, 100.0)) == 0
    assert len(s.window(-5_000.0, -5_000.0, 10.0)) == 0
    assert len(s.topk_window(q, 0.0, 0.0, 10.5, k=50)) == 5  # centre plus its 4 neighbours at 10 m


def test_bad_queries_get_clear_errors(small_table):
    t = open_table(small_table[0])
    s = TableSearch(t)
    q = np.zeros(32, np.uint8)
    with pytest.raises(CodeLengthError, match="table holds 256-bit"):
        s.topk(np.zeros(16, np.uint8))
    with pytest.raises(CodeLengthError):
        s.topk(np.zeros(32, np.float32))
    with pytest.raises(ValueError, match="larger than the table"):
        s.topk(q, k=t.n_tiles + 1)
    with pytest.raises(ValueError, match="positive integer"):
        s.topk(q, k=0)
    with pytest.raises(ValueError, match="heading bin"):
        s.topk(q, heading_bin=4)
    with pytest.raises(CoordinateError):
        s.topk_window(q, math.nan, 0.0, 100.0)
    with pytest.raises(ValueError, match="radius"):
        s.window(0.0, 0.0, -1.0)
    with pytest.raises(CodeLengthError):
        s.topk_window(np.zeros(8, np.uint8), 50_000.0, 0.0, 100.0)  # refused even where the window is empty
