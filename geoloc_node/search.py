"""Exact top-k Hamming search over a region table: the whole table, or a geographic window around a prior.

Choice of engine (measured by ``benchmarks/bench_search.py``, see README "Benchmarks"):

* whole table: faiss's ``knn_hamming`` (the scan behind ``IndexBinaryFlat``) on the memory-mapped codes. It runs a
  popcount scan with a bounded heap in C++ and reads the bin's contiguous block in place, so nothing is copied into an
  index; numpy's ``bitwise_count`` path was over 10x slower at 44k tiles, and an exact scan is what the paper does.
* window: the table's grid gives a few contiguous row slices; the tiles in them are filtered by distance, and their
  Hamming distances are computed with numpy. Its cost follows the number of tiles in the window (the per-call overhead
  of faiss would dominate at a few thousand tiles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .codes import as_codes
from .errors import CodeLengthError, CoordinateError
from .table import RegionTable


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
    """Searches one opened :class:`~geoloc_node.table.RegionTable`."""

    def __init__(self, table: RegionTable, config: SearchConfig = SearchConfig()):
        self.table = table
        self.config = config
        self._faiss = None

    # -- whole table -------------------------------------------------------------------------------------------
    def topk(self, code: np.ndarray, k: int = 5, heading_bin: int = 0) -> Matches:
        """Exact top-k over every tile of the table (cold start, kidnapped vehicle)."""
        q = self._query(code)
        k = self._check_k(k)
        if k > self.table.n_tiles:
            raise ValueError(f"k={k} is larger than the table ({self.table.n_tiles} tiles)")
        block = self.table.codes[self._check_bin(heading_bin)]
        faiss = self._faiss_module()
        dist, idx = faiss.knn_hamming(q[None, :], block, k)
        return self._matches(idx[0].astype(np.int64), dist[0].astype(np.int32))

    # -- geographic window ---------------------------------------------------------------------------------------
    def window(self, east: float, north: float, radius_m: float) -> np.ndarray:
        """Indices of the tiles whose centres lie within ``radius_m`` of (east, north); empty outside the coverage."""
        if not (math.isfinite(east) and math.isfinite(north)):
            raise CoordinateError(f"window centre must be finite, got ({east}, {north})")
        if not (math.isfinite(radius_m) and radius_m > 0):
            raise ValueError(f"window radius must be a positive number of metres, got {radius_m}")
        g = self.table.grid
        c0 = math.floor((east - radius_m - g.east0) / g.cell_m)
        c1 = math.floor((east + radius_m - g.east0) / g.cell_m)
        r0 = math.floor((north - radius_m - g.north0) / g.cell_m)
        r1 = math.floor((north + radius_m - g.north0) / g.cell_m)
        c0, c1, r0, r1 = max(c0, 0), min(c1, g.cols - 1), max(r0, 0), min(r1, g.rows - 1)
        if c0 > c1 or r0 > r1:
            return np.empty(0, dtype=np.int64)
        rows = np.arange(r0, r1 + 1) * g.cols
        starts = self.table.cell_start[rows + c0]
        ends = self.table.cell_start[rows + c1 + 1]
        cand = np.concatenate([np.arange(s, e) for s, e in zip(starts.tolist(), ends.tolist())])
        if cand.size == 0:
            return cand.astype(np.int64)
        en = self.table.en[cand]
        d2 = (en[:, 0] - east) ** 2 + (en[:, 1] - north) ** 2
        return cand[d2 <= radius_m * radius_m]

    def distances(self, code: np.ndarray, indices: np.ndarray, heading_bin: int = 0) -> np.ndarray:
        """Hamming distances from ``code`` to the given tiles (int32, same order)."""
        q = self._query(code)
        block = self.table.codes[self._check_bin(heading_bin)]
        sub = block[indices]
        if q.size % 8 == 0:  # compare 64 bits at a time: 8x fewer elements for numpy to walk
            sub, q = sub.view(np.uint64), q.view(np.uint64)
        return np.bitwise_count(sub ^ q).sum(axis=1, dtype=np.int32)

    def topk_window(self, code: np.ndarray, east: float, north: float, radius_m: float, k: int = 5,
                    heading_bin: int = 0) -> Matches:
        """Exact top-k among the tiles within ``radius_m`` of (east, north); fewer than k when the window holds fewer,
        none when it lies outside the table."""
        k = self._check_k(k)
        idx = self.window(east, north, radius_m)
        if idx.size == 0:
            self._query(code)  # still refuse a malformed code
            return self._matches(idx, np.empty(0, dtype=np.int32))
        dist = self.distances(code, idx, heading_bin)
        if idx.size > k:
            part = np.argpartition(dist, k - 1)[:k]
            idx, dist = idx[part], dist[part]
        order = np.lexsort((idx, dist))  # ties broken by index: deterministic results
        return self._matches(idx[order], dist[order])

    # -- helpers -----------------------------------------------------------------------------------------------
    def _query(self, code) -> np.ndarray:
        q = np.ascontiguousarray(as_codes(code))
        if q.ndim != 1:
            raise CodeLengthError(f"query must be one packed code (1-D), got shape {q.shape}")
        if q.shape[0] * 8 != self.table.bits:
            raise CodeLengthError(f"query code has {q.shape[0] * 8} bits but the table holds "
                                  f"{self.table.bits}-bit codes")
        return q

    def _check_bin(self, heading_bin: int) -> int:
        if not 0 <= int(heading_bin) < self.table.heading_bins:
            raise ValueError(f"heading bin {heading_bin} outside [0, {self.table.heading_bins})")
        return int(heading_bin)

    @staticmethod
    def _check_k(k: int) -> int:
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        return int(k)

    def _matches(self, idx: np.ndarray, dist: np.ndarray) -> Matches:
        return Matches(indices=idx, distances=dist, en=np.asarray(self.table.en[idx], dtype=np.float64))

    def _faiss_module(self):
        if self._faiss is None:
            import faiss  # imported on first whole-table search: window-only users never load it

            faiss.omp_set_num_threads(max(1, int(self.config.threads)))
            self._faiss = faiss
        return self._faiss
