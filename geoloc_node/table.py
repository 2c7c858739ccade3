"""The region table: the file of aerial-tile hash codes that the vehicle loads.

Layout of a ``.gltab`` file (little-endian, no pickle)::

    offset 0   8 bytes   magic b"GEOLOCRT"
    offset 8   u32       format version
    offset 12  u32       header length L (bytes of UTF-8 JSON)
    offset 16  32 bytes  sha256 of the header JSON
    offset 48  L bytes   header JSON (TableHeader, including every section's offset, dtype, shape and sha256)
    ...        sections, each starting on a 64-byte boundary:
               codes       uint8   [heading_bins, N, bits/8]   bin-major, so each bin is one contiguous block to scan
               latlon_e7   int32   [N, 2]                      WGS84 lat, lon in 1e-7 degree (about 1 cm, as OSM)
               en          float32 [N, 2]                      east, north in metres on the header's tangent plane
               cell_start  int64   [rows * cols + 1]           spatial grid: tiles sorted by cell, row-major

Tiles are stored sorted by grid cell, so that the tiles of one row of cells are one contiguous slice: a window search
reads a few slices and its cost follows the window, not the table. Sections are opened with ``np.memmap``: a table of
10 million tiles costs no RAM until a query touches it. Writes go to a temporary file that is fsynced and then renamed,
so a crash never leaves half a table under the real name.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .codes import as_codes, check_bits
from .errors import EmptyTableError, TableError
from .geodesy import LocalFrame, check_latlon

MAGIC = b"GEOLOCRT"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sII32s")  # magic, version, header length, header sha256
_ALIGN = 64
_MAX_HEADER = 16 * 1024 * 1024
_SECTIONS = ("codes", "latlon_e7", "en", "cell_start")


@dataclass(frozen=True)
class Grid:
    """Square cells of ``cell_m`` metres covering the tiles; cell (row, col) starts at (east0, north0)."""

    east0: float
    north0: float
    cell_m: float
    rows: int
    cols: int

    def cell_of(self, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the cells holding the given points (clipped to the grid)."""
        col = np.clip(((east - self.east0) // self.cell_m).astype(np.int64), 0, self.cols - 1)
        row = np.clip(((north - self.north0) // self.cell_m).astype(np.int64), 0, self.rows - 1)
        return row, col


@dataclass(frozen=True)
class TableHeader:
    """Everything a reader needs to trust and interpret a table, stored as JSON at the head of the file."""

    format_version: int
    n_tiles: int
    bits: int
    heading_bins: int
    tile_size_m: float
    stride_m: float
    encoder_fingerprint: str
    origin_lat: float
    origin_lon: float
    grid: Grid
    provenance: dict = field(default_factory=dict)
    sections: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> TableHeader:
        d = json.loads(raw.decode("utf-8"))
        d["grid"] = Grid(**d["grid"])
        return cls(**d)


@dataclass
class RegionTable:
    """An opened region table. Arrays are read-only memory maps; use :mod:`geoloc_node.search` to query it."""

    path: Path
    header: TableHeader
    codes: np.ndarray  # uint8 [heading_bins, N, bits/8]
    latlon_e7: np.ndarray  # int32 [N, 2]
    en: np.ndarray  # float32 [N, 2]
    cell_start: np.ndarray  # int64 [rows * cols + 1]
    frame: LocalFrame

    @property
    def n_tiles(self) -> int:
        return self.header.n_tiles

    @property
    def bits(self) -> int:
        return self.header.bits

    @property
    def heading_bins(self) -> int:
        return self.header.heading_bins

    @property
    def grid(self) -> Grid:
        return self.header.grid

    def latlon(self, indices=None) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 degrees of the given tiles (all tiles when ``indices`` is None)."""
        e7 = self.latlon_e7 if indices is None else self.latlon_e7[np.asarray(indices)]
        return e7[..., 0] * 1e-7, e7[..., 1] * 1e-7

    def heading_bin(self, heading_deg: float) -> int:
        """Bin of a compass heading: bin b is centred on b * 360 / heading_bins degrees (bin 0 looks north)."""
        if not math.isfinite(heading_deg):
            raise ValueError(f"heading must be a finite number of degrees, got {heading_deg!r}")
        width = 360.0 / self.heading_bins
        return int(math.floor((heading_deg % 360.0) / width + 0.5)) % self.heading_bins

    def coverage(self) -> dict:
        """Extent of the table in the local frame (metres) and in tiles, for diagnostics and reports."""
        g = self.grid
        return {"tiles": self.n_tiles, "east_min": g.east0, "north_min": g.north0,
                "east_max": g.east0 + g.cols * g.cell_m, "north_max": g.north0 + g.rows * g.cell_m,
                "origin_lat": self.header.origin_lat, "origin_lon": self.header.origin_lon}


def default_provenance(**extra) -> dict:
    """Who made a table, when and with what: stored in the header so that a table found on a vehicle explains itself."""
    return {"created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tool": f"geoloc_node {__version__}", "host": platform.node(), **extra}


def write_table(path, codes, lat, lon, *, bits: int, tile_size_m: float, stride_m: float,
                encoder_fingerprint: str, provenance: dict | None = None, origin: tuple[float, float] | None = None,
                cell_m: float | None = None) -> Path:
    """Write a region table atomically and return its path.

    ``codes`` is uint8 [N, bits/8] (one heading bin, panoramas) or [N, heading_bins, bits/8]; ``lat``/``lon`` are the
    tile centres in WGS84 degrees. The tiles are reordered by grid cell; their coordinates travel with them.
    """
    codes = as_codes(codes, bits)
    if codes.ndim == 2:
        codes = codes[:, None, :]
    if codes.ndim != 3:
        raise ValueError(f"codes must be [N, bytes] or [N, heading_bins, bytes], got shape {codes.shape}")
    return write_table_chunks(path, [(0, codes)], lat, lon, bits=bits, heading_bins=codes.shape[1],
                              tile_size_m=tile_size_m, stride_m=stride_m, encoder_fingerprint=encoder_fingerprint,
                              provenance=provenance, origin=origin, cell_m=cell_m, verify=False)


def write_table_chunks(path, code_chunks, lat, lon, *, bits: int, heading_bins: int, tile_size_m: float,
                       stride_m: float, encoder_fingerprint: str, provenance: dict | None = None,
                       origin: tuple[float, float] | None = None, cell_m: float | None = None,
                       verify: bool = True) -> Path:
    """Write a region table atomically from codes that arrive in chunks, and return its path.

    ``code_chunks`` yields ``(start, codes)``: uint8 [n, heading_bins, bits/8] for tiles ``start .. start + n`` of
    ``lat``/``lon`` (WGS84 degrees of all N tiles); together they must cover every tile exactly once, in any order.
    Each chunk goes straight to its sorted place in the file (a memory map), so the codes never sit in RAM all at once:
    memory follows the largest chunk plus about 40 bytes per tile of coordinates. ``verify``: the temporary file is
    opened and fully checked (every checksum) before it replaces ``path``. Same bytes as :func:`write_table`.
    """
    path = Path(path)
    bits = check_bits(bits)
    n = len(np.asarray(lat))
    if n == 0:
        raise EmptyTableError("cannot write a region table with no tiles")
    lat, lon = check_latlon(lat, lon)
    if lat.shape != (n,) or lon.shape != (n,):
        raise ValueError(f"lat and lon must be 1-D arrays of the same length, got {lat.shape} and {lon.shape}")
    if not (stride_m > 0 and tile_size_m > 0):
        raise ValueError("tile_size_m and stride_m must be positive")
    if not isinstance(encoder_fingerprint, str) or not encoder_fingerprint:
        raise ValueError("encoder_fingerprint must be a non-empty string (the sha256 of the aerial encoder)")
    frame, grid, order, east, north, cell_start = _layout(lat, lon, stride_m, origin, cell_m)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)  # tile i of the input goes to row rank[i] of the file
    nbytes = bits // 8
    arrays = {
        "latlon_e7": np.stack([np.round(lat[order] * 1e7), np.round(lon[order] * 1e7)], axis=1).astype(np.int32),
        "en": np.stack([east[order], north[order]], axis=1).astype(np.float32),
        "cell_start": cell_start,
    }
    shapes = {"codes": ((heading_bins, n, nbytes), np.dtype(np.uint8)),
              **{k: (a.shape, a.dtype) for k, a in arrays.items()}}
    header = TableHeader(format_version=FORMAT_VERSION, n_tiles=n, bits=bits, heading_bins=int(heading_bins),
                         tile_size_m=float(tile_size_m), stride_m=float(stride_m),
                         encoder_fingerprint=encoder_fingerprint, origin_lat=frame.lat0, origin_lon=frame.lon0,
                         grid=grid, provenance=provenance if provenance is not None else default_provenance())
    # sha256 hex digests all have the same length: lay out with placeholders, fill them in once the data is written
    header, raw = _lay_out(header, shapes, dict.fromkeys(shapes, "0" * 64))
    sec = header.sections
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.truncate(sec["cell_start"]["offset"] + cell_start.nbytes)  # the padding between sections reads as zeros
        digests = {"codes": _scatter_codes(tmp, sec["codes"]["offset"], (heading_bins, n, nbytes), code_chunks,
                                           rank)}
        digests.update({k: hashlib.sha256(memoryview(a).cast("B")).hexdigest() for k, a in arrays.items()})
        header, raw_final = _lay_out(header, shapes, digests)
        if len(raw_final) != len(raw):
            raise RuntimeError("table header changed length between layout and write")  # pragma: no cover
        with open(tmp, "r+b") as f:
            f.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(raw_final), hashlib.sha256(raw_final).digest()))
            f.write(raw_final)
            for name, a in arrays.items():
                f.seek(sec[name]["offset"])
                f.write(memoryview(a).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        if verify:
            open_table(tmp, expected_fingerprint=encoder_fingerprint, verify=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _layout(lat, lon, stride_m, origin, cell_m):
    """The table's tangent plane, grid and tile order (sorted by grid cell, stable)."""
    if origin is None:  # centre of the tiles' bounding box: keeps float32 metres precise across the table
        origin = ((lat.min() + lat.max()) / 2.0, (lon.min() + lon.max()) / 2.0)
    frame = LocalFrame(float(origin[0]), float(origin[1]))
    east, north = frame.to_en(lat, lon)
    # About ten strides per cell keeps both the number of cells and the tiles per cell small.
    cell_m = float(cell_m or max(10.0 * stride_m, 50.0))
    east0, north0 = math.floor(east.min() / cell_m) * cell_m, math.floor(north.min() / cell_m) * cell_m
    grid = Grid(east0=east0, north0=north0, cell_m=cell_m,
                rows=int((north.max() - north0) // cell_m) + 1, cols=int((east.max() - east0) // cell_m) + 1)
    row, col = grid.cell_of(east, north)
    cell = row * grid.cols + col
    order = np.argsort(cell, kind="stable")
    cell_start = np.zeros(grid.rows * grid.cols + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=grid.rows * grid.cols), out=cell_start[1:])
    return frame, grid, order, east, north, cell_start


def _scatter_codes(tmp: Path, offset: int, shape: tuple, code_chunks, rank: np.ndarray) -> str:
    """Write each chunk of codes to its sorted rows of the (bin-major) codes section; return the section's sha256.
    Refuses chunks that miss a tile or give one twice: a table with a hole would look valid."""
    bins, n, nbytes = shape
    seen = np.zeros(n, dtype=bool)
    mm = np.memmap(tmp, dtype=np.uint8, mode="r+", offset=offset, shape=shape)
    try:
        for start, chunk in code_chunks:
            chunk = np.asarray(chunk, dtype=np.uint8)
            if chunk.ndim != 3 or chunk.shape[1:] != (bins, nbytes) or not 0 <= start <= n - len(chunk):
                raise ValueError(f"code chunk at {start} has shape {chunk.shape}; expected [n, {bins}, {nbytes}] "
                                 f"within {n} tiles")
            rows = rank[start:start + len(chunk)]
            if seen[start:start + len(chunk)].any():
                raise ValueError(f"code chunk at {start} gives some tiles a second time")
            seen[start:start + len(chunk)] = True
            for b in range(bins):
                mm[b, rows] = chunk[:, b]
        if not seen.all():
            raise ValueError(f"the code chunks left {int((~seen).sum())} of {n} tiles without codes")
        mm.flush()
        h = hashlib.sha256()
        flat = mm.reshape(-1)
        step = 64 << 20
        for i in range(0, flat.size, step):  # hashed in slices: the section is never copied whole
            h.update(memoryview(np.ascontiguousarray(flat[i:i + step])).cast("B"))
        return h.hexdigest()
    finally:
        del mm


def _lay_out(header: TableHeader, shapes: dict, digests: dict) -> tuple[TableHeader, bytes]:
    """The header with its section offsets, and its padded JSON. The offsets depend on the header's length, which
    depends on the offsets: iterate until stable (twice at most)."""
    header = dataclasses.replace(header, sections={})  # the same guess with placeholder and with real digests
    header_len_guess = len(header.to_json()) + 4096
    for _ in range(4):
        offset = _align(_PREFIX.size + header_len_guess)
        sections = {}
        for name in _SECTIONS:
            shape, dtype = shapes[name]
            sections[name] = {"offset": offset, "dtype": dtype.str, "shape": list(shape), "sha256": digests[name]}
            offset = _align(offset + dtype.itemsize * math.prod(shape))
        header = dataclasses.replace(header, sections=sections)
        raw = header.to_json()
        if len(raw) <= header_len_guess:
            return header, raw + b" " * (header_len_guess - len(raw))
        header_len_guess = len(raw) + 1024
    raise RuntimeError("could not lay out the table header")  # pragma: no cover - a header growing without bound


def open_table(path, *, expected_fingerprint: str | None = None, verify: bool = True) -> RegionTable:
    """Open and validate a region table, memory-mapped.

    Raises :class:`TableError` naming the file and the problem when it is missing, truncated, of another format version,
    corrupt (a checksum differs; ``verify=False`` skips the section checksums, not the header's) or made by another
    encoder than ``expected_fingerprint``. A table set folder (:mod:`.table_set`) opens too, as a
    :class:`~geoloc_node.table_set.TableSet` with the same interface.
    """
    path = Path(path)
    if path.is_dir() and (path / "index.json").is_file():
        from .table_set import open_table_set

        return open_table_set(path, expected_fingerprint=expected_fingerprint, verify=verify)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise TableError(path, f"truncated: {size} bytes is shorter than the {_PREFIX.size}-byte prefix")
            magic, version, header_len, header_sha = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise TableError(path, f"not a region table (magic {magic!r}, expected {MAGIC!r})")
            if version != FORMAT_VERSION:
                raise TableError(path, f"format version {version}, but this build reads version {FORMAT_VERSION}; "
                                       "rebuild the table with this version of geoloc build-table")
            if header_len > _MAX_HEADER or _PREFIX.size + header_len > size:
                raise TableError(path, f"truncated or corrupt: header of {header_len} bytes does not fit in "
                                       f"{size} bytes")
            raw = f.read(header_len)
    except FileNotFoundError:
        raise TableError(path, "no such file") from None
    except IsADirectoryError:
        raise TableError(path, "is a directory, not a table file") from None
    if hashlib.sha256(raw).digest() != header_sha:
        raise TableError(path, "corrupt: header checksum does not match")
    try:
        header = TableHeader.from_json(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise TableError(path, f"corrupt: header is not valid ({exc})") from None
    if header.n_tiles < 1:
        raise TableError(path, "the table holds no tiles")
    if expected_fingerprint is not None and header.encoder_fingerprint != expected_fingerprint:
        raise TableError(path, f"made by another encoder: table fingerprint {header.encoder_fingerprint[:16]}..., "
                               f"encoder fingerprint {expected_fingerprint[:16]}...; rebuild the table with this "
                               "encoder or load the matching model")

    arrays = {}
    for name in _SECTIONS:
        sec = header.sections.get(name)
        if sec is None:
            raise TableError(path, f"corrupt: section {name!r} is missing from the header")
        dtype, shape = np.dtype(sec["dtype"]), tuple(sec["shape"])
        end = sec["offset"] + dtype.itemsize * math.prod(shape)
        if end > size:
            raise TableError(path, f"truncated: section {name!r} ends at byte {end} but the file has {size} bytes")
        arr = np.memmap(path, dtype=dtype, mode="r", offset=sec["offset"], shape=shape) if math.prod(shape) else \
            np.zeros(shape, dtype)
        if verify and hashlib.sha256(memoryview(arr).cast("B")).hexdigest() != sec["sha256"]:
            raise TableError(path, f"corrupt: checksum of section {name!r} does not match")
        arrays[name] = arr

    g, n = header.grid, header.n_tiles
    expected = {"codes": (header.heading_bins, n, header.bits // 8), "latlon_e7": (n, 2), "en": (n, 2),
                "cell_start": (g.rows * g.cols + 1,)}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise TableError(path, f"corrupt: section {name!r} has shape {arrays[name].shape}, expected {shape}")
    if arrays["cell_start"][-1] != n:
        raise TableError(path, "corrupt: the spatial grid does not account for every tile")
    return RegionTable(path=path, header=header, frame=LocalFrame(header.origin_lat, header.origin_lon), **arrays)


def _align(offset: int) -> int:
    return (offset + _ALIGN - 1) // _ALIGN * _ALIGN


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable: fsync the directory entry (not possible on every OS, hence the guard)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
