"""Exact top-k Hamming search over a region table: the whole table, or a geographic window around a prior.

Choice of engine (measured by ``benchmarks/bench_search.py``; numbers in README "Benchmarks"):

* whole table: faiss's ``hammings_knn_hc`` (the scan behind ``IndexBinaryFlat.search``) run directly on the
  memory-mapped codes, so nothing is copied into an index. At 44k x 256 bits it measured about 0.1 ms against 0.14 ms
  for our own compiled loop and 2 ms for a numpy ``bitwise_count`` scan; at 1e6 tiles 3.9 ms against 6.6 ms. The call
  is prepared once per (thread, heading bin, k) (:class:`_FaissScan`): ``faiss.knn_hamming`` built its result heap
  and pointers on every call, and at 44k tiles took 0.107 ms per query against 0.089 ms for ``IndexBinaryFlat.search``
  on the same codes; prepared, 0.093 ms (``bench_search.py --versus-faiss``). At 1e6 and 1e7 tiles the scan itself
  dominates: all three within 10 %.
* window: the table's grid gives a few contiguous row slices, and one compiled loop (:mod:`.hamming_kernels`) walks
  them, checks the radius and keeps the top-k: about 0.05 ms for 5,000 tiles, whatever the size of the table. numpy
  spent 0.4 ms gathering the same rows; faiss's per-call overhead is 0.02 ms per slice.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from . import hamming_kernels
from .codes import as_codes, popcount
from .errors import CodeLengthError, CoordinateError
from .table import RegionTable

_EMPTY = np.empty(0, dtype=np.int64)
_NO_QUERY = np.empty(0, dtype=np.uint64)
_UINT8 = np.dtype(np.uint8)


@dataclass(frozen=True)
class Matches:
    """Result of a search, best first: tile indices into the table, Hamming distances, tile positions (metres)."""

    indices: np.ndarray  # int64 [m]
    distances: np.ndarray  # int32 [m]
    en: np.ndarray  # float64 [m, 2]

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class SearchConfig:
    """How to search. ``threads``: faiss OpenMP threads for whole-table scans; 1 leaves the rest of the vehicle's CPU
    alone (a window search is single-threaded anyway)."""

    threads: int = 1


class TableSearch:
    """Searches one opened :class:`~geoloc_node.table.RegionTable`. Given a table set
    (:class:`~geoloc_node.table_set.TableSet`) it returns a :class:`~geoloc_node.search_set.TableSetSearch`, which has
    the same methods and searches the set cell by cell: callers need not know which they hold."""

    def __new__(cls, table=None, config: SearchConfig = SearchConfig()):
        if cls is TableSearch and getattr(table, "is_table_set", False):
            from .search_set import TableSetSearch

            return TableSetSearch(table, config)
        return super().__new__(cls)

    def __init__(self, table: RegionTable, config: SearchConfig = SearchConfig()):
        self.table = table
        self.config = config
        self._faiss = None
        # Plain ndarray views of the memory maps (no copy): the compiled kernels and indexing skip np.memmap overhead.
        self._codes = np.asarray(table.codes)  # [bins, N, bits/8]
        self._words = self._codes.view(np.uint64)  # [bins, N, bits/64]
        self._en = np.asarray(table.en)
        self._cell_start = np.asarray(table.cell_start)
        self._query_shape = (table.bits // 8,)
        self._local = threading.local()  # per thread: {(heading bin, k): _FaissScan}, whose buffers are not shared

    # -- whole table -------------------------------------------------------------------------------------------
    def topk(self, code: np.ndarray, k: int = 5, heading_bin: int = 0) -> Matches:
        """Exact top-k over every tile of the table (cold start, kidnapped vehicle), best first; equal distances in
        tile order."""
        if not (type(code) is np.ndarray and code.dtype is _UINT8 and code.shape == self._query_shape):
            code = self._query(code)  # anything but a plain 1-D uint8 code of the right length: full checks, errors
        scans = self._local.__dict__.setdefault("scans", {})
        scan = scans.get((heading_bin, k)) if type(heading_bin) is int and type(k) is int else None
        if scan is None:
            scan = self._prepare_scan(scans, k, heading_bin)
        dist, idx = scan(code)
        return Matches(indices=idx, distances=dist, en=self._en.take(idx, axis=0).astype(np.float64))

    def _prepare_scan(self, scans: dict, k, heading_bin) -> _FaissScan:
        """Validate (k, heading bin) and return this thread's prepared scan for them, made on first use: a known
        pair of plain ints skips this, so the checks run once per pair."""
        k = self._check_k(k)
        if k > self.table.n_tiles:
            raise ValueError(f"k={k} is larger than the table ({self.table.n_tiles} tiles)")
        b = self._check_bin(heading_bin)
        if (b, k) not in scans:
            scans[(b, k)] = _FaissScan(self._faiss_module(), self._codes[b], k)
        return scans[(b, k)]

    def warm_up(self) -> None:
        """Run each compiled kernel once on this table. The first call of a numba kernel loads (or, without a cache,
        compiles) it: 0.7 s here of imports with the GIL held, which in a live node stalls every callback thread at
        the first camera frame. Call it before data flows (the node does, on configure)."""
        if self.table.n_tiles == 0:
            return
        e, n = (float(v) for v in self._en[0])
        zero = np.zeros(self.table.bits // 8, dtype=np.uint8)
        self.window_distances(zero, e, n, 1.0)
        self.topk_window(zero, e, n, 1.0, k=1)
        self.window(e, n, 1.0)

    # -- geographic window ---------------------------------------------------------------------------------------
    def window(self, east: float, north: float, radius_m: float) -> np.ndarray:
        """Indices of the tiles whose centres lie within ``radius_m`` of (east, north); empty outside the coverage."""
        starts, ends = self._slices(east, north, radius_m)
        idx, _ = hamming_kernels.window_all(self._codes64(0), self._en, starts, ends, _NO_QUERY, float(east),
                                            float(north), float(radius_m) ** 2)
        return idx

    def window_distances(self, code: np.ndarray, east: float, north: float, radius_m: float,
                         heading_bin: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Every tile within ``radius_m`` and its Hamming distance to ``code``: (indices, distances). This is what a
        tracking filter scores its particles with."""
        q = self._query(code).view(np.uint64)
        starts, ends = self._slices(east, north, radius_m)
        return hamming_kernels.window_all(self._codes64(heading_bin), self._en, starts, ends, q, float(east),
                                          float(north), float(radius_m) ** 2)

    def distances(self, code: np.ndarray, indices: np.ndarray, heading_bin: int = 0) -> np.ndarray:
        """Hamming distances from ``code`` to the given tiles (int32, same order)."""
        q = self._query(code).view(np.uint64)
        sub = self._codes64(heading_bin)[np.asarray(indices, dtype=np.int64)]
        return popcount(sub ^ q).sum(axis=1, dtype=np.int32)

    def topk_window(self, code: np.ndarray, east: float, north: float, radius_m: float, k: int = 5,
                    heading_bin: int = 0) -> Matches:
        """Exact top-k among the tiles within ``radius_m`` of (east, north); fewer than k when the window holds fewer,
        none when it lies outside the table."""
        k = self._check_k(k)
        q = self._query(code).view(np.uint64)
        starts, ends = self._slices(east, north, radius_m)
        dist, idx, count = hamming_kernels.window_topk(self._codes64(heading_bin), self._en, starts, ends, q,
                                                       float(east), float(north), float(radius_m) ** 2, k)
        m = min(k, count)
        return self._matches(idx[:m], dist[:m])

    def _slices(self, east: float, north: float, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
        """The contiguous tile ranges of the grid rows that the window's bounding box overlaps."""
        if not (math.isfinite(east) and math.isfinite(north)):
            raise CoordinateError(f"window centre must be finite, got ({east}, {north})")
        if not (math.isfinite(radius_m) and radius_m > 0):
            raise ValueError(f"window radius must be a positive number of metres, got {radius_m}")
        g = self.table.grid
        c0 = max(math.floor((east - radius_m - g.east0) / g.cell_m), 0)
        c1 = min(math.floor((east + radius_m - g.east0) / g.cell_m), g.cols - 1)
        r0 = max(math.floor((north - radius_m - g.north0) / g.cell_m), 0)
        r1 = min(math.floor((north + radius_m - g.north0) / g.cell_m), g.rows - 1)
        if c0 > c1 or r0 > r1:
            return _EMPTY, _EMPTY
        rows = np.arange(r0, r1 + 1) * g.cols
        return self._cell_start[rows + c0], self._cell_start[rows + c1 + 1]

    def _codes64(self, heading_bin: int) -> np.ndarray:
        return self._words[self._check_bin(heading_bin)]

    # -- helpers -----------------------------------------------------------------------------------------------
    def _query(self, code) -> np.ndarray:
        return checked_query(code, self.table.bits)

    def _check_bin(self, heading_bin: int) -> int:
        return checked_heading_bin(heading_bin, self.table.heading_bins)

    @staticmethod
    def _check_k(k: int) -> int:
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        return int(k)

    def _matches(self, idx: np.ndarray, dist: np.ndarray) -> Matches:
        return Matches(indices=idx, distances=dist, en=self._en[idx].astype(np.float64))

    def _faiss_module(self):
        if self._faiss is None:
            import faiss  # imported on first whole-table search: window-only users never load it

            faiss.omp_set_num_threads(max(1, int(self.config.threads)))
            self._faiss = faiss
        return self._faiss


class _FaissScan:
    """faiss's exact top-k Hamming scan of one code block, set up once: a query costs a copy and one C call.

    ``hammings_knn_hc`` keeps a max-heap of (distance, index) and admits a tile only when it is strictly closer than
    the current k-th, so of equal distances the lower tile index wins, and the result is sorted by (distance, index).
    The buffers are this object's: one per thread (see :meth:`TableSearch.topk`), results are copied out.
    """

    def __init__(self, faiss, block: np.ndarray, k: int):
        if not block.flags.c_contiguous:
            raise ValueError("the code block must be C-contiguous")
        self.block = block  # holds the memory map that the pointer below points into
        self.query = np.empty(block.shape[1], dtype=np.uint8)
        self.dist = np.empty(k, dtype=np.int32)
        self.idx = np.empty(k, dtype=np.int64)
        self.heap = faiss.int_maxheap_array_t()  # the result heap: 1 query, k entries, over our two buffers
        self.heap.nh, self.heap.k = 1, k
        self.heap.val, self.heap.ids = faiss.swig_ptr(self.dist), faiss.swig_ptr(self.idx)
        self.call = faiss.hammings_knn_hc
        self.args = (self.heap, faiss.swig_ptr(self.query), faiss.swig_ptr(block), block.shape[0], block.shape[1], 1)

    def __call__(self, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.query[:] = code
        self.call(*self.args)  # the last argument, 1: the heap comes back sorted, best first
        return self.dist.copy(), self.idx.copy()


def checked_query(code, bits: int) -> np.ndarray:
    """One packed query code of ``bits`` bits, contiguous; a clear error otherwise (shared by the table-set search)."""
    q = np.ascontiguousarray(as_codes(code))
    if q.ndim != 1:
        raise CodeLengthError(f"query must be one packed code (1-D), got shape {q.shape}")
    if q.shape[0] * 8 != bits:
        raise CodeLengthError(f"query code has {q.shape[0] * 8} bits but the table holds {bits}-bit codes")
    return q


def checked_heading_bin(heading_bin: int, bins: int) -> int:
    if not 0 <= int(heading_bin) < bins:
        raise ValueError(f"heading bin {heading_bin} outside [0, {bins})")
    return int(heading_bin)
