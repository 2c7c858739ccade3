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


def tied_table(tmp_path, n_distinct=7):
    """A table whose codes repeat every ``n_distinct`` tiles (in the table's own tile order): many equal distances."""
    from tablehelpers import ORIGIN, grid_tiles

    from geoloc_node.table import write_table

    rng = np.random.default_rng(5)
    lat, lon, _, _ = grid_tiles(size_m=200.0)
    distinct = rng.integers(0, 256, (n_distinct, 32), dtype=np.uint8)
    path = write_table(tmp_path / "tied.gltab", distinct[np.arange(len(lat)) % n_distinct], lat, lon, bits=256,
                       tile_size_m=50, stride_m=10, encoder_fingerprint="f" * 64, origin=ORIGIN)
    return open_table(path)


def test_whole_table_ties_come_in_tile_order(tmp_path):
    """Exact top-k is the first k tiles of a stable sort by distance: equal distances keep the lower tile index."""
    t = tied_table(tmp_path)
    s = TableSearch(t)
    codes = np.asarray(t.codes[0])
    for q in (codes[0], codes[3], np.zeros(32, np.uint8)):
        brute = hamming(q, codes)
        want = np.argsort(brute, kind="stable")[:12]
        m = s.topk(q, k=12)
        assert np.array_equal(m.indices, want)
        assert np.array_equal(m.distances, brute[want])
        assert m.indices.dtype == np.int64 and m.distances.dtype == np.int32 and m.en.dtype == np.float64
        assert np.array_equal(m.en, np.asarray(t.en, dtype=np.float64)[want])


def test_whole_table_results_are_the_callers_and_every_query_form_agrees(small_table):
    t = open_table(small_table[0])
    s = TableSearch(t)
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 256, (2, 64), dtype=np.uint8)
    first = s.topk(wide[0, ::2], k=5)  # a strided view: not the fast path
    kept = (first.indices.copy(), first.distances.copy())
    second = s.topk(np.ascontiguousarray(wide[1, ::2]), k=5)
    assert np.array_equal(first.indices, kept[0]) and np.array_equal(first.distances, kept[1])  # not overwritten
    assert not np.array_equal(first.indices, second.indices)
    again = s.topk(np.ascontiguousarray(wide[0, ::2]), k=np.int64(5), heading_bin=np.int64(0))
    assert np.array_equal(again.indices, first.indices) and np.array_equal(again.distances, first.distances)
    row = s.topk(t.codes[1, 77], heading_bin=1)  # a memory-mapped row of the table itself
    assert row.indices[0] == 77 and row.distances[0] == 0


def test_whole_table_checks_hold_after_the_first_query(small_table):
    s = TableSearch(open_table(small_table[0]))
    q = np.zeros(32, np.uint8)
    s.topk(q, k=5)
    with pytest.raises(CodeLengthError, match="table holds 256-bit"):
        s.topk(np.zeros(16, np.uint8), k=5)
    with pytest.raises(CodeLengthError):
        s.topk(np.zeros(32, np.float32), k=5)
    with pytest.raises(CodeLengthError):
        s.topk(np.zeros((1, 32), np.uint8), k=5)
    with pytest.raises(CodeLengthError, match="table holds"):  # a bad code is named before a bad k, as always
        s.topk(np.zeros(16, np.uint8), k=0)
    with pytest.raises(ValueError, match="heading bin"):
        s.topk(q, k=5, heading_bin=-1)


def test_whole_table_search_from_several_threads_gives_each_its_own_answer(small_table):
    from concurrent.futures import ThreadPoolExecutor

    t = open_table(small_table[0])
    s = TableSearch(t)
    rng = np.random.default_rng(4)
    queries = [rng.integers(0, 256, 32, dtype=np.uint8) for _ in range(64)]
    serial = [s.topk(q, k=5, heading_bin=i % 4).indices for i, q in enumerate(queries)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda iq: s.topk(iq[1], k=5, heading_bin=iq[0] % 4).indices,
                                 enumerate(queries * 8)))
    assert all(np.array_equal(a, serial[i % 64]) for i, a in enumerate(parallel))


def test_window_ties_come_in_tile_order(tmp_path):
    t = tied_table(tmp_path)
    s = TableSearch(t)
    en = np.asarray(t.en, dtype=np.float64)
    inside = np.flatnonzero(np.hypot(en[:, 0] - 20.0, en[:, 1] - 10.0) <= 60.0)
    q = np.asarray(t.codes[0, 5])
    brute = hamming(q, np.asarray(t.codes[0, inside]))
    want = inside[np.argsort(brute, kind="stable")[:9]]
    m = s.topk_window(q, 20.0, 10.0, 60.0, k=9)
    assert np.array_equal(m.indices, want)
