"""Region table sets: one logical table kept as a folder of ordinary ``.gltab`` files, one per geographic cell.

A country-sized region is 1e7-1e8 tiles (0.5-5 GB of panorama codes, 80 GB with 24 heading bins). As one file, every
whole-table search pages all of it in; as a set, a window search around the filter's prior opens only the cells near
it, a whole-set search (cold start) walks the cells one after another while at most ``max_open`` stay mapped, and a
cell can be replaced or copied alone. Layout of a set folder::

    index.json            the set's header (as a table's: bits, heading bins, tile size, stride, encoder fingerprint,
                          origin, provenance) and one entry per cell file: name, tiles, offset of its first tile in the
                          set, bounding box of its tile centres (metres, set frame), sha256 of the file's header
    cell_+0001_-0002.gltab ...   ordinary region tables, all on the set's tangent plane (same origin and grid cell)

Tile ``i`` of the set is tile ``i - offset`` of the cell whose range holds it, so indices, ``en`` and ``latlon`` mean
what they mean for one table. :func:`geoloc_node.table.open_table` opens a set folder as it opens a file and returns a
:class:`TableSet` (a :class:`~geoloc_node.table.RegionTable` whose arrays are views over the cells);
:class:`geoloc_node.search.TableSearch` searches it cell by cell (:mod:`.search_set`). The folder is written under a
temporary name and renamed into place whole, and ``index.json`` names each cell's header checksum, so a set is never
seen half-written or with a cell from elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .errors import TableError
from .geodesy import LocalFrame
from .table import _PREFIX, Grid, RegionTable, TableHeader, _layout, open_table, write_table

INDEX = "index.json"
SET_FORMAT = "geoloc-table-set"
SET_VERSION = 1


def is_table_set(path) -> bool:
    return (Path(path) / INDEX).is_file()


# -- writing ---------------------------------------------------------------------------------------------------------
def write_table_set(path, codes, lat, lon, *, bits: int, tile_size_m: float, stride_m: float,
                    encoder_fingerprint: str, shard_m: float = 2000.0, provenance: dict | None = None,
                    origin: tuple[float, float] | None = None, cell_m: float | None = None) -> Path:
    """Write a table set from arrays (as :func:`geoloc_node.table.write_table` takes them): the tiles are split into
    square cells of ``shard_m`` metres of the set's tangent plane."""
    codes = np.asarray(codes)
    if codes.ndim == 2:
        codes = codes[:, None, :]
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    if origin is None:  # the same choice as write_table: the bounding box's centre
        origin = ((lat.min() + lat.max()) / 2.0, (lon.min() + lon.max()) / 2.0)
    frame = LocalFrame(float(origin[0]), float(origin[1]))
    # cells are cut by the float32 metres a table stores (a tile on a cell's edge goes where split_table puts it)
    east, north = (a.astype(np.float32).astype(np.float64) for a in frame.to_en(lat, lon))
    grid = _layout(lat, lon, stride_m, origin, cell_m)[1]  # the grid one file of these tiles would have
    return _write_cells(Path(path), east, north, lambda idx: (codes[idx], lat[idx], lon[idx]), frame, grid,
                        bits=bits, heading_bins=codes.shape[1], tile_size_m=tile_size_m, stride_m=stride_m,
                        encoder_fingerprint=encoder_fingerprint, shard_m=shard_m, provenance=provenance)


def split_table(table_path, out_path, shard_m: float = 2000.0) -> Path:
    """Split one region table file into a set of cells of ``shard_m`` metres; memory follows one cell."""
    t = open_table(table_path, verify=True)
    h = t.header
    en = np.asarray(t.en, dtype=np.float64)

    def take(idx):
        lat, lon = t.latlon(idx)
        return np.asarray(t.codes[:, idx]).transpose(1, 0, 2), lat, lon

    return _write_cells(Path(out_path), en[:, 0], en[:, 1], take, t.frame, h.grid, bits=h.bits,
                        heading_bins=h.heading_bins, tile_size_m=h.tile_size_m, stride_m=h.stride_m,
                        encoder_fingerprint=h.encoder_fingerprint, shard_m=shard_m,
                        provenance={**h.provenance, "split_from": str(table_path)})


def _write_cells(out: Path, east, north, take, frame: LocalFrame, grid: Grid, *, bits, heading_bins, tile_size_m,
                 stride_m, encoder_fingerprint, shard_m, provenance) -> Path:
    """Cells of ``shard_m`` metres, each an ordinary table on the set's plane and grid cell size; ``grid``: the set's
    (what one file of all the tiles would have: coverage and the filter's bounds read it)."""
    if not (shard_m > 0 and math.isfinite(shard_m)):
        raise ValueError(f"shard_m must be a positive number of metres, got {shard_m}")
    if len(east) == 0:
        raise ValueError("cannot write a table set with no tiles")
    col = np.floor(np.asarray(east) / shard_m).astype(np.int64)
    row = np.floor(np.asarray(north) / shard_m).astype(np.int64)
    order = np.lexsort((col, row))  # cells row-major, south to north; tiles keep their order within a cell
    key = row[order] * (1 << 32) + col[order]
    bounds = np.flatnonzero(np.diff(key)) + 1
    groups = np.split(order, bounds)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shards, offset = [], 0
        for idx in groups:
            r, c = int(row[idx[0]]), int(col[idx[0]])
            name = f"cell_{r:+05d}_{c:+05d}.gltab"
            codes, lat, lon = take(np.sort(idx))
            write_table(tmp / name, codes, lat, lon, bits=bits, tile_size_m=tile_size_m, stride_m=stride_m,
                        encoder_fingerprint=encoder_fingerprint, provenance={**(provenance or {}), "set_cell": [r, c]},
                        origin=(frame.lat0, frame.lon0), cell_m=grid.cell_m)
            cell = open_table(tmp / name, verify=False)
            en = np.asarray(cell.en, dtype=np.float64)
            shards.append({"file": name, "cell": [r, c], "n_tiles": cell.n_tiles, "offset": offset,
                           "bbox": [float(en[:, 0].min()), float(en[:, 1].min()), float(en[:, 0].max()),
                                    float(en[:, 1].max())],
                           "header_sha256": _header_sha(tmp / name)})
            offset += cell.n_tiles
        index = {"format": SET_FORMAT, "format_version": SET_VERSION, "n_tiles": offset, "bits": int(bits),
                 "heading_bins": int(heading_bins), "tile_size_m": float(tile_size_m), "stride_m": float(stride_m),
                 "encoder_fingerprint": encoder_fingerprint, "origin_lat": frame.lat0, "origin_lon": frame.lon0,
                 "grid": dataclasses.asdict(grid), "shard_m": float(shard_m), "provenance": provenance or {},
                 "shards": shards}
        (tmp / INDEX).write_text(json.dumps(index, indent=1))
        _fsync_tree(tmp)
        if out.exists():  # replace a previous set: move it aside first (a folder cannot be renamed over a folder)
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _header_sha(path: Path) -> str:
    with open(path, "rb") as f:
        return _PREFIX.unpack(f.read(_PREFIX.size))[3].hex()


def _fsync_tree(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ---------------------------------------------------------------------------------------------------------
class _SetRows:
    """A read-only view of one section across the cells, indexed by set tile index (row axis ``axis``): what a
    :class:`RegionTable`'s ``en``, ``latlon_e7`` and ``codes`` arrays are for one file. Fancy indexing gathers from the
    cells holding the tiles; ``np.asarray`` of the whole view reads every cell (small sets, tests)."""

    def __init__(self, tset: TableSet, name: str, axis: int, shape: tuple, dtype):
        self._set, self._name, self._axis = tset, name, axis
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), len(shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        lead = ()
        if self._axis == 1:
            if not isinstance(key, tuple) or len(key) != 2:
                raise IndexError("index a set's codes as codes[heading_bin, tiles]")
            lead, key = (key[0],), key[1]
        n = self._set.n_tiles
        if isinstance(key, slice):
            key = np.arange(n)[key]
        idx = np.asarray(key)
        flat = idx.reshape(-1).astype(np.int64)
        if flat.size and (flat.min() < -n or flat.max() >= n):
            raise IndexError(f"tile index out of range for a set of {n} tiles")
        flat = np.where(flat < 0, flat + n, flat)
        shard, local = self._set.locate(flat)
        out = None
        for s in np.unique(shard):
            sel = shard == s
            arr = getattr(self._set.cell(int(s)), self._name)
            part = np.asarray(arr[lead + (local[sel],)]) if lead else np.asarray(arr[local[sel]])
            if out is None:
                out = np.empty((flat.size,) + part.shape[1:], dtype=part.dtype)
            out[sel] = part
        if out is None:  # nothing asked for
            row = self.shape[2:] if self._axis == 1 else self.shape[1:]
            out = np.empty((0,) + tuple(row), dtype=self.dtype)
        return out.reshape(idx.shape + out.shape[1:])  # a scalar index gives one row, as numpy does

    def __array__(self, dtype=None, copy=None):
        if self._axis == 1:
            a = np.concatenate([np.asarray(self._set.cell(s).codes) for s in range(len(self._set.shards))], axis=1)
        else:
            a = self[np.arange(self._set.n_tiles)]
        return a if dtype is None else a.astype(dtype)


@dataclasses.dataclass(eq=False)
class TableSet(RegionTable):
    """An opened table set: the :class:`RegionTable` interface (``n_tiles``, ``bits``, ``heading_bins``, ``grid``,
    ``header``, ``frame``, ``en[idx]``, ``latlon(idx)``, ``coverage()``...) over cells opened on demand, at most
    ``max_open`` mapped at a time (least recently used closed first)."""

    shards: list = dataclasses.field(default_factory=list)
    max_open: int = 64
    verify_cells: bool = False

    is_table_set = True

    def __post_init__(self):
        self._offsets = np.array([s["offset"] for s in self.shards] + [self.header.n_tiles], dtype=np.int64)
        self.bboxes = np.array([s["bbox"] for s in self.shards], dtype=np.float64).reshape(-1, 4)
        self.shard_m = float(self.header.provenance.get("shard_m") or 0.0)
        # cell (row, col) on the shard_m grid -> its index: a window finds its cells by a few lookups
        self.by_cell = {tuple(s["cell"]): k for k, s in enumerate(self.shards) if "cell" in s}
        self._open: OrderedDict[int, dict] = OrderedDict()  # cell -> {table, search}
        self._lock = threading.Lock()
        self.opened_cells = 0  # how many times a cell was mapped (tests and benchmarks read it)
        self._headers: dict[int, TableHeader] = {}  # cells checked once: a few kB each, kept while the set is open

    def locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cell, index within the cell) of set tile indices."""
        shard = np.searchsorted(self._offsets, indices, side="right") - 1
        return shard, indices - self._offsets[shard]

    def offset(self, shard: int) -> int:
        return int(self._offsets[shard])

    def cell(self, shard: int) -> RegionTable:
        """The cell's table, mapped now if it is not (and the least recently used one closed beyond ``max_open``)."""
        return self._entry(shard)["table"]

    def cell_search(self, shard: int, config):
        """The cell's :class:`~geoloc_node.search.TableSearch` (made with the cell, closed with it)."""
        entry = self._entry(shard)
        search = entry.get("search")
        if search is None:
            from .search import TableSearch

            search = entry["search"] = TableSearch(entry["table"], config)
        return search

    def _entry(self, shard: int) -> dict:
        with self._lock:
            entry = self._open.get(shard)
            if entry is not None:
                self._open.move_to_end(shard)
                return entry
        header = self._headers.get(shard)
        if header is None:  # first use: the file is opened and checked against the index
            table = self._open_cell(shard, verify=self.verify_cells)
            self._headers[shard] = table.header
        else:  # mapped again after being closed: its checked header is kept, only the maps are made
            table = _remap(self.path / self.shards[shard]["file"], header, self.frame)
        entry = {"table": table}
        with self._lock:
            self._open[shard] = entry
            self.opened_cells += 1
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)  # its memory maps close when the last reference goes
        return entry

    @property
    def open_cells(self) -> int:
        return len(self._open)

    def _open_cell(self, shard: int, verify: bool) -> RegionTable:
        info = self.shards[shard]
        path = self.path / info["file"]
        t = open_table(path, expected_fingerprint=self.header.encoder_fingerprint, verify=verify)
        if _header_sha(path) != info["header_sha256"] or t.n_tiles != info["n_tiles"]:
            raise TableError(path, f"is not the cell that {self.path / INDEX} names (another file or another "
                                   "version of it); rebuild or re-copy the set")
        h = t.header
        if (h.origin_lat, h.origin_lon) != (self.header.origin_lat, self.header.origin_lon) or \
                h.bits != self.bits or h.heading_bins != self.heading_bins:
            raise TableError(path, "has another origin, code length or heading bins than its set")
        return t

    def verify_all(self) -> None:
        """Every cell opened with all its checksums, one at a time (memory follows one cell)."""
        for s in range(len(self.shards)):
            self._open_cell(s, verify=True)

    def latlon(self, indices=None) -> tuple[np.ndarray, np.ndarray]:
        e7 = np.asarray(self.latlon_e7) if indices is None else self.latlon_e7[np.asarray(indices)]
        return e7[..., 0] * 1e-7, e7[..., 1] * 1e-7


def _remap(path: Path, header: TableHeader, frame: LocalFrame) -> RegionTable:
    """Memory maps of a cell whose header was read and checked before (a cell closed by the LRU and needed again:
    about 0.1 ms instead of parsing and checking the header again). ``frame``: the set's, which every cell shares
    (checked at first open); a new one per cell cost another 0.1 ms of pyproj setup per random jump."""
    import mmap

    with open(path, "rb") as f:  # one map for the four sections (four np.memmap calls cost four times as much)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    arrays = {name: np.frombuffer(mm, dtype=np.dtype(sec["dtype"]), count=math.prod(sec["shape"]),
                                  offset=sec["offset"]).reshape(sec["shape"]) for name, sec in header.sections.items()}
    return RegionTable(path=path, header=header, frame=frame, **arrays)


def open_table_set(path, *, expected_fingerprint: str | None = None, verify: bool = True,
                   max_open: int = 64) -> TableSet:
    """Open a table set folder: the index is read and checked; with ``verify`` every cell is checked in full now
    (one at a time), otherwise each cell's header is checked when the cell is first used."""
    path = Path(path)
    try:
        d = json.loads((path / INDEX).read_text())
    except FileNotFoundError:
        raise TableError(path, f"no {INDEX}: not a table set") from None
    except (OSError, ValueError) as exc:
        raise TableError(path / INDEX, f"corrupt: not valid JSON ({exc})") from None
    if d.get("format") != SET_FORMAT or d.get("format_version") != SET_VERSION:
        raise TableError(path / INDEX, f"not a table set of version {SET_VERSION} ({d.get('format')!r} "
                                       f"{d.get('format_version')!r})")
    try:
        shards = d["shards"]
        n = int(d["n_tiles"])
        offsets = [int(s["offset"]) for s in shards]
        sizes = [int(s["n_tiles"]) for s in shards]
        header = TableHeader(format_version=SET_VERSION, n_tiles=n, bits=int(d["bits"]),
                             heading_bins=int(d["heading_bins"]), tile_size_m=float(d["tile_size_m"]),
                             stride_m=float(d["stride_m"]), encoder_fingerprint=str(d["encoder_fingerprint"]),
                             origin_lat=float(d["origin_lat"]), origin_lon=float(d["origin_lon"]),
                             grid=Grid(**d["grid"]), provenance={**d.get("provenance", {}), "cells": len(shards),
                                                                 "shard_m": d.get("shard_m")})
    except (KeyError, TypeError, ValueError) as exc:
        raise TableError(path / INDEX, f"corrupt: {exc!r} missing or invalid") from None
    if not shards or n < 1:
        raise TableError(path, "the table set holds no tiles")
    if offsets != list(np.cumsum([0] + sizes[:-1])) or sum(sizes) != n:
        raise TableError(path / INDEX, "corrupt: the cells' tile ranges do not add up to the set")
    if expected_fingerprint is not None and header.encoder_fingerprint != expected_fingerprint:
        raise TableError(path, f"made by another encoder: table fingerprint {header.encoder_fingerprint[:16]}..., "
                               f"encoder fingerprint {expected_fingerprint[:16]}...; rebuild the table with this "
                               "encoder or load the matching model")
    nbytes = header.bits // 8
    t = TableSet(path=path, header=header, codes=None, latlon_e7=None, en=None, cell_start=None,
                 frame=LocalFrame(header.origin_lat, header.origin_lon), shards=shards, max_open=max_open)
    t.codes = _SetRows(t, "codes", 1, (header.heading_bins, n, nbytes), np.uint8)
    t.latlon_e7 = _SetRows(t, "latlon_e7", 0, (n, 2), np.int32)
    t.en = _SetRows(t, "en", 0, (n, 2), np.float32)
    for s in range(len(shards)):  # missing files are found now, not in the middle of a drive
        if not (path / shards[s]["file"]).is_file():
            raise TableError(path / shards[s]["file"], "missing: the set's index names it")
    if verify:
        t.verify_all()
    return t
