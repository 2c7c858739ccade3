"""Aerial tiles from a real orthophoto: a GeoTIFF (or Cloud-Optimized GeoTIFF, or any raster GDAL reads) in any
projected CRS, with nodata, cut into north-up tiles shard by shard.

* Tile centres lie on a metric grid in the file's own CRS (``stride_m`` apart, the first half a tile inside the
  raster's bounds), so their positions follow from the file's transform and CRS alone.
* A projected CRS's grid north is not true north (meridian convergence: up to about 3 degrees at the edge of a UTM
  zone) and its metre is not a ground metre (scale factor). The model was trained on tiles whose up is true north and
  whose size is ``tile_size_m`` on the ground, so each tile's pixels are warped from the file into the tile's local
  east/north frame: the projection's derivative at the tile centre (pyproj) maps tile metres to file coordinates, the
  file's affine transform maps those to pixels. Where that map is a whole-pixel shift (a north-up file whose CRS is
  locally conformal with the tangent plane, such as the synthetic worlds') the tile is cut without resampling.
* Reads are windowed: one window per shard (a block of ``shard_side`` x ``shard_side`` tile positions), so memory
  follows the shard, never the file. Tiles touching nodata (the file's mask) or reaching past the raster are skipped
  and counted.
* The ground sampling distance is checked against the tile size: a tile of fewer than ``min_tile_px`` or more than
  ``max_tile_px`` pixels means the wrong file, the wrong units or the wrong model, and is refused with the numbers.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TableBuildError


class OrthoError(TableBuildError):
    """The orthophoto cannot be used (the message names the file and the problem)."""


@dataclass(frozen=True)
class TileBatch:
    """Tiles to encode: ``ids`` (grid positions, row-major), uint8 [n, px, px, 3] north-up tiles, WGS84 centres."""

    ids: np.ndarray
    tiles: np.ndarray
    lat: np.ndarray
    lon: np.ndarray


@dataclass
class ShardCounts:
    """What happened to a shard's tile positions: encoded, or skipped (and why)."""

    positions: int = 0
    skipped_nodata: int = 0
    skipped_partial: int = 0


# Largest side of one shard's read window, pixels: 4096^2 RGB plus mask is about 64 MB whatever the GSD.
MAX_WINDOW_PX = 4096
# A tile's warp is treated as a whole-pixel cut when no tile pixel would move by more than this (pixels).
CUT_TOLERANCE_PX = 0.1


class OrthoSource:
    """Tile positions on a metric grid over an orthophoto in a projected CRS, read and warped shard by shard."""

    kind = "geotiff"

    def __init__(self, path, tile_size_m: float, stride_m: float, shard_side: int = 64, min_tile_px: int = 32,
                 max_tile_px: int = 2048):
        import rasterio
        from rasterio.errors import RasterioError

        self.path, self.tile_size_m, self.stride_m = str(path), float(tile_size_m), float(stride_m)
        if "://" not in self.path and not self.path.startswith("/vsi") and not Path(self.path).exists():
            raise OrthoError(f"GeoTIFF {self.path}: no such file")
        try:
            self._ds = ds = rasterio.open(self.path)
        except (RasterioError, OSError) as exc:
            raise OrthoError(f"GeoTIFF {self.path}: cannot be read as a raster ({exc})") from None
        if ds.crs is None:
            raise OrthoError(f"GeoTIFF {self.path}: has no CRS")
        if not ds.crs.is_projected:
            raise OrthoError(f"GeoTIFF {self.path}: CRS {ds.crs} is geographic (degrees); reproject it to a projected "
                             "CRS (e.g. gdalwarp -t_srs EPSG:326xx) so that tiles can be laid out in metres")
        if ds.count < 3:
            raise OrthoError(f"GeoTIFF {self.path}: {ds.count} band(s); an RGB orthophoto needs 3")
        self._unit_m = float(ds.crs.linear_units_factor[1])  # metres per CRS unit (US survey feet exist)
        a = ds.transform
        sx, sy = math.hypot(a.a, a.d), math.hypot(a.b, a.e)
        if abs(sx - sy) > 1e-3 * sx:
            raise OrthoError(f"GeoTIFF {self.path}: pixels are not square ({sx} x {sy} CRS units)")
        self.gsd_m = sx * self._unit_m
        self.tile_px = int(round(self.tile_size_m / self.gsd_m))
        if not min_tile_px <= self.tile_px <= max_tile_px:
            raise OrthoError(
                f"GeoTIFF {self.path}: ground sampling distance {self.gsd_m:.4g} m/px makes a {self.tile_size_m:g} m "
                f"tile {self.tile_px} px; the model needs {min_tile_px}..{max_tile_px} px per tile, i.e. "
                f"{self.tile_size_m / max_tile_px:.3g}..{self.tile_size_m / min_tile_px:.3g} m/px (wrong units, a "
                "wrong file, or resample it, e.g. gdalwarp -tr)")
        self._lay_out_grid(shard_side)
        from pyproj import Transformer

        self._to_wgs84 = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        self._from_wgs84 = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)

    def _lay_out_grid(self, shard_side: int) -> None:
        ds, half_u, step_u = self._ds, self.tile_size_m / 2 / self._unit_m, self.stride_m / self._unit_m
        left, bottom, right, top = ds.bounds  # CRS bounds of the raster (any affine)
        self.xs = np.arange(left + half_u, right - half_u + 1e-6 * step_u, step_u)
        self.ys = np.arange(top - half_u, bottom + half_u - 1e-6 * step_u, -step_u)  # north to south
        if len(self.xs) == 0 or len(self.ys) == 0:
            raise OrthoError(f"GeoTIFF {self.path}: {(right - left) * self._unit_m:.0f} x "
                             f"{(top - bottom) * self._unit_m:.0f} m is smaller than one {self.tile_size_m:g} m tile")
        # A shard's window spans (side - 1) strides plus a tile (plus rotation slack): keep it under MAX_WINDOW_PX.
        fit = int((MAX_WINDOW_PX * self.gsd_m / 1.1 - self.tile_size_m) // self.stride_m) + 1
        self.shard_side = max(1, min(int(shard_side), fit))
        self.rows, self.cols = len(self.ys), len(self.xs)
        self.n_positions = self.rows * self.cols
        self.shard_rows, self.shard_cols = -(-self.rows // self.shard_side), -(-self.cols // self.shard_side)
        self.n_shards = self.shard_rows * self.shard_cols

    # -- description ---------------------------------------------------------------------------------------------
    def recipe(self) -> dict:
        """Everything needed to open the same source elsewhere (a Ray worker): see :func:`open_source`."""
        return {"kind": self.kind, "path": self.path, "tile_size_m": self.tile_size_m, "stride_m": self.stride_m,
                "shard_side": self.shard_side}

    def fingerprint(self) -> str:
        """Identifies the file's content cheaply (size, mtime) and the tile layout."""
        p = Path(self.path)
        stat = f"{p.stat().st_size}|{p.stat().st_mtime_ns}" if p.exists() else "remote"
        return hashlib.sha256(f"{p.name}|{stat}|{self.tile_px}|{self.shard_side}|{self.rows}x{self.cols}".encode()
                              ).hexdigest()

    def describe(self) -> dict:
        return {"geotiff": self.path, "crs": self._ds.crs.to_string(), "gsd_m": round(self.gsd_m, 6),
                "grid": [self.rows, self.cols], "positions": self.n_positions}

    def shard_positions(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        """Grid rows and columns of a shard (a square block of tile positions)."""
        sr, sc = divmod(int(shard), self.shard_cols)
        r = np.arange(sr * self.shard_side, min((sr + 1) * self.shard_side, self.rows))
        c = np.arange(sc * self.shard_side, min((sc + 1) * self.shard_side, self.cols))
        return r, c

    def centre_xy(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """File-CRS coordinates of tile positions (row-major ids)."""
        r, c = np.divmod(np.asarray(ids, dtype=np.int64), self.cols)
        return self.xs[c], self.ys[r]

    # -- reading ---------------------------------------------------------------------------------------------------
    def shard_batches(self, shard: int, batch: int, counts: ShardCounts):
        """Yield the shard's usable tiles in batches of at most ``batch``; ``counts`` is filled in on the way."""
        r, c = self.shard_positions(shard)
        ids = (r[:, None] * self.cols + c[None, :]).ravel()
        counts.positions += len(ids)
        x, y = self.centre_xy(ids)
        lon, lat = self._to_wgs84.transform(x, y)
        lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        maps = self._tile_to_pixel(x, y, lon, lat)  # [n, 2, 3]: tile pixel (u, v, 1) -> file pixel (col, row)
        corners = maps @ self._corners  # [n, 2, 4]: file pixel of each tile's corner pixel centres
        eps = 0.05  # pixels: numerical slack of the projection, far below what resampling would notice
        inside = ((corners[:, 0] >= -eps) & (corners[:, 0] <= self._ds.width - 1 + eps) & (corners[:, 1] >= -eps)
                  & (corners[:, 1] <= self._ds.height - 1 + eps)).all(axis=1)
        counts.skipped_partial += int((~inside).sum())  # reaches past the raster: part of the tile would be made up
        keep_k = np.flatnonzero(inside)
        if len(keep_k) == 0:
            return
        win, img, mask = self._read_window(corners[keep_k])
        tiles, keep = [], []
        for j, k in enumerate(keep_k):
            tile = self._cut(img, mask, maps[k], win)
            if tile is None:
                counts.skipped_nodata += 1
            else:
                tiles.append(tile)
                keep.append(k)
            if tiles and (len(tiles) == batch or j == len(keep_k) - 1):
                sel = np.asarray(keep)
                yield TileBatch(ids[sel], np.stack(tiles), lat[sel], lon[sel])
                tiles, keep = [], []

    @property
    def _corners(self) -> np.ndarray:
        t = self.tile_px - 1
        return np.array([[0, 0, 1], [t, 0, 1], [0, t, 1], [t, t, 1]], dtype=np.float64).T

    def _tile_to_pixel(self, x, y, lon, lat) -> np.ndarray:
        """Per tile, the affine map from tile pixel (u right, v down; centres at integers) to file pixel (centres at
        integers): tile metres -> file CRS through the projection's derivative at the centre, then ~transform."""
        from pyproj import Geod

        d = 10.0  # metres: central differences over +-10 m; the projection is affine to well below a mm there
        geod = Geod(ellps="WGS84")
        n = len(x)
        cols = []
        for az in (90.0, 0.0):  # east, north
            lo1, la1, _ = geod.fwd(lon, lat, np.full(n, az), np.full(n, d))
            lo0, la0, _ = geod.fwd(lon, lat, np.full(n, az + 180.0), np.full(n, d))
            x1, y1 = self._from_wgs84.transform(lo1, la1)
            x0, y0 = self._from_wgs84.transform(lo0, la0)
            cols.append(np.stack([(np.asarray(x1) - x0) / (2 * d), (np.asarray(y1) - y0) / (2 * d)], axis=1))
        jac = np.stack(cols, axis=2)  # [n, 2 (x, y), 2 (east, north)] CRS units per ground metre
        p, t = self.tile_size_m / self.tile_px, self.tile_px
        # (u, v) -> (east, north) metres from the centre; pixel centres at u + 0.5
        to_en = np.array([[p, 0.0, p * (0.5 - t / 2)], [0.0, -p, p * (t / 2 - 0.5)]])
        to_xy = np.einsum("nij,jk->nik", jac, to_en)
        to_xy[:, 0, 2] += x
        to_xy[:, 1, 2] += y
        inv = ~self._ds.transform
        inv_m = np.array([[inv.a, inv.b, inv.c], [inv.d, inv.e, inv.f]])
        out = np.einsum("ij,njk->nik", inv_m[:, :2], to_xy)
        out[:, :, 2] += inv_m[:, 2]
        out[:, :, 2] -= 0.5  # rasterio's pixel (0, 0) is a corner; OpenCV's is a centre
        return out

    def _read_window(self, corners: np.ndarray):
        """One windowed read covering the given tiles' corners (file pixels [n, 2, 4]) and a margin."""
        from rasterio.windows import Window

        c0, r0 = (int(math.floor(corners[:, i].min())) - 2 for i in (0, 1))
        c1, r1 = (int(math.ceil(corners[:, i].max())) + 3 for i in (0, 1))
        win = Window(c0, r0, c1 - c0, r1 - r0)
        try:
            img = self._ds.read((1, 2, 3), window=win, boundless=True, fill_value=0)
            mask = self._ds.dataset_mask(window=win, boundless=True)
        except Exception as exc:  # noqa: BLE001 - rasterio raises several types for corrupt blocks
            raise OrthoError(f"GeoTIFF {self.path}: read failed in window {win} ({exc})") from None
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        return (c0, r0), np.ascontiguousarray(img.transpose(1, 2, 0)), mask

    def _cut(self, img, mask, m, win):
        """The north-up tile of map ``m`` from the window, or None when any of its pixels is nodata."""
        import cv2

        t = self.tile_px
        m = m.copy()
        m[0, 2] -= win[0]
        m[1, 2] -= win[1]
        c0, r0 = int(round(m[0, 2])), int(round(m[1, 2]))
        # how far the worst tile pixel lies from a plain whole-pixel cut
        off = (t - 1) * np.abs(m[:, :2] - np.eye(2)).sum(axis=1).max() + abs(m[0, 2] - c0) + abs(m[1, 2] - r0)
        if off <= CUT_TOLERANCE_PX:
            tm = mask[r0:r0 + t, c0:c0 + t]
            tile = img[r0:r0 + t, c0:c0 + t]
        else:
            inverse = cv2.WARP_INVERSE_MAP
            tm = cv2.warpAffine(mask, m, (t, t), flags=cv2.INTER_NEAREST | inverse, borderValue=0)
            tile = cv2.warpAffine(img, m, (t, t), flags=cv2.INTER_LINEAR | inverse, borderValue=0)
        if tm.min() == 0:
            return None
        return np.ascontiguousarray(tile)

    def close(self) -> None:
        self._ds.close()
