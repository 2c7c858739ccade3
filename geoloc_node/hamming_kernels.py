"""Compiled Hamming scans (numba): the inner loops of the search, one pass, no temporary arrays.

Why numba and not numpy or faiss here: a window search touches a few thousand tiles spread over several row slices
of the table's grid. In numpy, gathering those rows and their positions costs about 100 us each (fancy indexing),
ten times the 0.1 ms budget; faiss's per-call overhead alone is about 20 us per slice. One compiled loop that walks the
slices, checks the radius, popcounts and keeps a small sorted top-k does all of it in one pass over contiguous memory.

Codes arrive as uint64 words ([N, bits/64]); the SWAR popcount below is the idiom LLVM turns into a single ``popcnt``
instruction on CPUs that have one. ``cache=True`` keeps the compiled code between runs (first call compiles, ~1 s).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_S1, _S2, _S4, _S56 = np.uint64(1), np.uint64(2), np.uint64(4), np.uint64(56)


@njit(inline="always")
def _popcount(x):
    x = x - ((x >> _S1) & _M1)
    x = (x & _M2) + ((x >> _S2) & _M2)
    x = (x + (x >> _S4)) & _M4
    return np.int32((x * _H01) >> _S56)


@njit(inline="always")
def _distance(codes, i, q):
    d = np.int32(0)
    for j in range(q.shape[0]):
        d += _popcount(codes[i, j] ^ q[j])
    return d


@njit(inline="always")
def _insert(best_d, best_i, d, i):
    """Insert (d, i) into the ascending top-k arrays; ties keep the lower index first (it arrives first)."""
    p = best_d.shape[0] - 1
    while p > 0 and best_d[p - 1] > d:
        best_d[p] = best_d[p - 1]
        best_i[p] = best_i[p - 1]
        p -= 1
    best_d[p] = d
    best_i[p] = i


@njit(cache=True, nogil=True)
def scan_topk(codes, q, k):
    """Exact top-k over all rows of ``codes`` (uint64 [N, W]); returns (distances int32 [k], indices int64 [k])."""
    best_d = np.full(k, np.int32(2**30), np.int32)
    best_i = np.full(k, -1, np.int64)
    worst = best_d[k - 1]
    for i in range(codes.shape[0]):
        d = _distance(codes, i, q)
        if d < worst:
            _insert(best_d, best_i, d, i)
            worst = best_d[k - 1]
    return best_d, best_i


@njit(cache=True, nogil=True)
def window_topk(codes, en, starts, ends, q, east, north, radius2, k):
    """Exact top-k among tiles in the slices [starts[s], ends[s]) whose centre lies within sqrt(radius2) metres.

    Returns (distances, indices, count): only the first min(k, count) entries are valid.
    """
    best_d = np.full(k, np.int32(2**30), np.int32)
    best_i = np.full(k, -1, np.int64)
    worst = best_d[k - 1]
    count = 0
    for s in range(starts.shape[0]):
        for i in range(starts[s], ends[s]):
            de = en[i, 0] - east
            dn = en[i, 1] - north
            if de * de + dn * dn > radius2:
                continue
            count += 1
            d = _distance(codes, i, q)
            if d < worst:
                _insert(best_d, best_i, d, i)
                worst = best_d[k - 1]
    return best_d, best_i, count


@njit(cache=True, nogil=True)
def window_all(codes, en, starts, ends, q, east, north, radius2):
    """Every tile within the radius with its Hamming distance: (indices int64 [m], distances int32 [m])."""
    total = 0
    for s in range(starts.shape[0]):
        total += ends[s] - starts[s]
    idx = np.empty(total, np.int64)
    dist = np.empty(total, np.int32)
    m = 0
    for s in range(starts.shape[0]):
        for i in range(starts[s], ends[s]):
            de = en[i, 0] - east
            dn = en[i, 1] - north
            if de * de + dn * dn <= radius2:
                idx[m] = i
                if q.shape[0] > 0:
                    dist[m] = _distance(codes, i, q)
                m += 1
    return idx[:m], dist[:m]
