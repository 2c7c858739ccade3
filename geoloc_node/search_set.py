"""Search over a table set (:mod:`.table_set`) with the methods and results of :class:`.search.TableSearch`.

A window search asks only the cells whose tile bounding box meets the window (usually one to four), so its cost and
the memory it maps follow the window, not the set. A whole-set top-k (cold start) asks every cell in turn and merges
their exact top-k; at most ``TableSet.max_open`` cells stay mapped, so even that keeps memory bounded. Results are
set tile indices, best first, equal distances in tile order: the same answers as one table holding the same tiles.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import CoordinateError
from .search import Matches, SearchConfig, TableSearch, checked_heading_bin, checked_query

_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_D = np.empty(0, dtype=np.int32)


class TableSetSearch:
    """Searches an opened :class:`~geoloc_node.table_set.TableSet` cell by cell."""

    def __init__(self, table, config: SearchConfig = SearchConfig()):
        self.table = table
        self.config = config

    # -- whole set ---------------------------------------------------------------------------------------------------
    def topk(self, code: np.ndarray, k: int = 5, heading_bin: int = 0) -> Matches:
        k = TableSearch._check_k(k)
        if k > self.table.n_tiles:
            raise ValueError(f"k={k} is larger than the table ({self.table.n_tiles} tiles)")
        q = self._query(code)
        b = self._check_bin(heading_bin)
        best = None
        for s, info in enumerate(self.table.shards):  # merged as it goes: one cell's answer held at a time
            best = _best_of([(self._cell(s).topk(q, min(k, int(info["n_tiles"])), b), info["offset"])] +
                            ([(best, 0)] if best is not None else []), k)
        return best

    def warm_up(self) -> None:
        """Compile / load the window kernels (see :meth:`TableSearch.warm_up`) on the first cell."""
        self._cell(0).warm_up()

    # -- geographic window ---------------------------------------------------------------------------------------
    def window(self, east: float, north: float, radius_m: float) -> np.ndarray:
        parts = [self._cell(s).window(east, north, radius_m) + self.table.offset(s)
                 for s in self._near(east, north, radius_m)]
        return np.concatenate(parts) if parts else _EMPTY_I

    def window_distances(self, code: np.ndarray, east: float, north: float, radius_m: float,
                         heading_bin: int = 0) -> tuple[np.ndarray, np.ndarray]:
        q = self._query(code)
        b = self._check_bin(heading_bin)
        idx, dist = [], []
        for s in self._near(east, north, radius_m):
            i, d = self._cell(s).window_distances(q, east, north, radius_m, b)
            idx.append(i + self.table.offset(s))
            dist.append(d)
        return (np.concatenate(idx), np.concatenate(dist)) if idx else (_EMPTY_I, _EMPTY_D)

    def distances(self, code: np.ndarray, indices: np.ndarray, heading_bin: int = 0) -> np.ndarray:
        q = self._query(code)
        b = self._check_bin(heading_bin)
        indices = np.asarray(indices, dtype=np.int64)
        shard, local = self.table.locate(indices)
        out = np.empty(len(indices), dtype=np.int32)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self._cell(int(s)).distances(q, local[sel], b)
        return out

    def topk_window(self, code: np.ndarray, east: float, north: float, radius_m: float, k: int = 5,
                    heading_bin: int = 0) -> Matches:
        k = TableSearch._check_k(k)
        q = self._query(code)
        b = self._check_bin(heading_bin)
        found = [(self._cell(s).topk_window(q, east, north, radius_m, k, b), self.table.offset(s))
                 for s in self._near(east, north, radius_m)]
        if len(found) == 1:  # the usual window: one cell, its answer as it is
            m, off = found[0]
            return Matches(indices=m.indices + off, distances=m.distances, en=m.en)
        if not found:
            return Matches(indices=_EMPTY_I, distances=_EMPTY_D, en=np.empty((0, 2)))
        return _best_of(found, k)

    # -- helpers -----------------------------------------------------------------------------------------------
    def _near(self, east: float, north: float, radius_m: float):
        """Cells that may hold tiles of the window: by the cell grid (a tile's cell is its position over the set's
        cell size, so the window's square spans these cells), else by the cells' bounding boxes."""
        if not (math.isfinite(east) and math.isfinite(north)):
            raise CoordinateError(f"window centre must be finite, got ({east}, {north})")
        if not (math.isfinite(radius_m) and radius_m > 0):
            raise ValueError(f"window radius must be a positive number of metres, got {radius_m}")
        t = self.table
        m = t.shard_m
        if m > 0 and len(t.by_cell) == len(t.shards):
            c0, c1 = math.floor((east - radius_m) / m), math.floor((east + radius_m) / m)
            r0, r1 = math.floor((north - radius_m) / m), math.floor((north + radius_m) / m)
            if (c1 - c0 + 1) * (r1 - r0 + 1) <= len(t.shards):
                got = (t.by_cell.get((r, c)) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1))
                return [k for k in got if k is not None]
        bb = t.bboxes
        hit = (bb[:, 0] <= east + radius_m) & (bb[:, 2] >= east - radius_m) & \
              (bb[:, 1] <= north + radius_m) & (bb[:, 3] >= north - radius_m)
        return np.flatnonzero(hit)

    def _cell(self, shard: int) -> TableSearch:
        return self.table.cell_search(int(shard), self.config)

    def _query(self, code) -> np.ndarray:
        return checked_query(code, self.table.bits)

    def _check_bin(self, heading_bin: int) -> int:
        return checked_heading_bin(heading_bin, self.table.heading_bins)



def _best_of(found: list, k: int) -> Matches:
    """The k best of several cells' matches ``[(matches, offset of the cell), ...]`` by (distance, set tile index):
    one table's order of equal distances."""
    dist = np.concatenate([m.distances for m, _ in found])
    idx = np.concatenate([m.indices + off for m, off in found])
    order = np.lexsort((idx, dist))[:k]
    return Matches(indices=idx[order], distances=dist[order], en=np.concatenate([m.en for m, _ in found])[order])
