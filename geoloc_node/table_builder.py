"""``geoloc build-table``: encode aerial imagery into a region table (the file the vehicle searches).

Two sources:

* a GeoTIFF orthophoto, north-up, in a metric CRS: square tiles of ``tile_size_m`` centred every ``stride_m`` metres
  (only tiles that lie wholly inside the image), read band by band so that memory follows one row of tiles;
* a folder of tile images plus a CSV with columns ``file,lat,lon`` (tile centres in WGS84; tiles north-up).

Encoding runs in batches through the aerial branch of a model (``load_encoder(..., branch="aerial")``). Progress is
saved every few batches beside the output (``<out>.partial.npz``), and when the build is stopped (Ctrl-C, SIGTERM or
SIGHUP: exit code 130); running the same command again resumes from it. A partial file or an existing table made by
another encoder is refused: one table never mixes two encoders' codes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import GeolocError, TableError
from .progress import progress_bar
from .signals import stop_signals_interrupt
from .table import default_provenance, open_table, write_table


class TableBuildError(GeolocError, ValueError):
    """The input imagery, the model or a previous partial build cannot be used (the message names the file)."""


@dataclass(frozen=True)
class BuildConfig:
    """How to cut and encode tiles. ``batch``: tiles per encoder call; ``checkpoint_every``: batches between saves of
    the partial file; ``backend``/``threads``: the encoder runtime (see :func:`geoloc_node.encoders.load_encoder`)."""

    tile_size_m: float = 50.0
    stride_m: float = 10.0
    heading_bins: int | None = None  # codes per tile; None: the model's own (1 for a panorama model)
    batch: int = 64
    checkpoint_every: int = 20
    backend: str = "auto"
    threads: int = 2


# -- sources ---------------------------------------------------------------------------------------------------------
class GeoTiffSource:
    """Tile centres on a regular grid over a north-up GeoTIFF in a metric CRS, read one row of tiles at a time."""

    def __init__(self, path, tile_size_m: float, stride_m: float):
        import rasterio
        from rasterio.errors import RasterioError

        self.path = Path(path)
        if not self.path.exists():
            raise TableBuildError(f"GeoTIFF {self.path}: no such file")
        try:
            self._ds = rasterio.open(self.path)
        except (RasterioError, OSError) as exc:
            raise TableBuildError(f"GeoTIFF {self.path}: cannot be read as a raster ({exc})") from None
        ds = self._ds
        t = ds.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise TableBuildError(f"GeoTIFF {self.path}: not north-up (affine {tuple(t)[:6]}); warp it first")
        if ds.crs is None:
            raise TableBuildError(f"GeoTIFF {self.path}: has no CRS")
        if not ds.crs.is_projected:
            raise TableBuildError(f"GeoTIFF {self.path}: CRS {ds.crs} is not metric; reproject it (e.g. gdalwarp "
                                  "-t_srs EPSG:326xx) so that tiles can be cut in metres")
        if ds.count < 3:
            raise TableBuildError(f"GeoTIFF {self.path}: {ds.count} band(s); an RGB orthophoto needs 3")
        if abs(abs(t.a) - abs(t.e)) > 1e-6 * abs(t.a):
            raise TableBuildError(f"GeoTIFF {self.path}: pixels are not square ({t.a} x {-t.e})")
        self.res = float(t.a)
        self.tile_px = int(round(tile_size_m / self.res))
        if self.tile_px < 8:
            raise TableBuildError(f"GeoTIFF {self.path}: a {tile_size_m} m tile is only {self.tile_px} px")
        x0, y1 = t.c, t.f  # west, north edges
        x1, y0 = x0 + ds.width * self.res, y1 - ds.height * self.res
        half = tile_size_m / 2.0
        xs = np.arange(x0 + half, x1 - half + 1e-6, stride_m)
        ys = np.arange(y1 - half, y0 + half - 1e-6, -stride_m)  # north to south
        if len(xs) == 0 or len(ys) == 0:
            raise TableBuildError(f"GeoTIFF {self.path}: {ds.width * self.res:.0f} x {ds.height * self.res:.0f} m is "
                                  f"smaller than one {tile_size_m} m tile")
        self.xs, self.ys = xs, ys
        self.n = len(xs) * len(ys)
        from pyproj import Transformer

        tr = Transformer.from_crs(ds.crs.to_wkt(), "EPSG:4326", always_xy=True)
        gx, gy = np.meshgrid(xs, ys)
        lon, lat = tr.transform(gx.ravel(), gy.ravel())
        self.lat, self.lon = np.asarray(lat), np.asarray(lon)
        self._band_row = None
        self._band = None

    def fingerprint(self) -> str:
        st = self.path.stat()
        return hashlib.sha256(f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()

    def tiles(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.tile_px, self.tile_px, 3), np.uint8)
        for k, i in enumerate(range(start, stop)):
            r, c = divmod(i, len(self.xs))
            band = self._row_band(r)
            col = int(round((self.xs[c] - self._ds.transform.c) / self.res)) - self.tile_px // 2
            out[k] = band[:, col:col + self.tile_px]
        return out

    def _row_band(self, r: int) -> np.ndarray:
        if self._band_row != r:
            from rasterio.windows import Window

            row0 = int(round((self._ds.transform.f - self.ys[r]) / self.res)) - self.tile_px // 2
            try:
                a = self._ds.read((1, 2, 3), window=Window(0, row0, self._ds.width, self.tile_px))
            except Exception as exc:  # rasterio raises several types for corrupt blocks
                raise TableBuildError(f"GeoTIFF {self.path}: read failed at row {row0} ({exc})") from None
            if a.dtype != np.uint8:
                a = np.clip(a, 0, 255).astype(np.uint8)
            self._band = np.ascontiguousarray(a.transpose(1, 2, 0))
            self._band_row = r
        return self._band

    def close(self):
        self._ds.close()


class TileFolderSource:
    """Tile images in a folder with a CSV ``file,lat,lon`` (centres in WGS84)."""

    def __init__(self, folder, csv_path):
        self.folder, self.csv_path = Path(folder), Path(csv_path)
        if not self.csv_path.exists():
            raise TableBuildError(f"CSV {self.csv_path}: no such file")
        with open(self.csv_path, newline="") as f:
            reader = csv.DictReader(f)
            cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
            need = ("file", "lat", "lon")
            missing = [c for c in need if c not in cols]
            if missing:
                raise TableBuildError(f"CSV {self.csv_path}: missing column(s) {missing}; need {list(need)}, has "
                                      f"{list(cols)}")
            rows = list(reader)
        if not rows:
            raise TableBuildError(f"CSV {self.csv_path}: no rows")
        try:
            self.files = [self.folder / r[cols["file"]].strip() for r in rows]
            self.lat = np.array([float(r[cols["lat"]]) for r in rows])
            self.lon = np.array([float(r[cols["lon"]]) for r in rows])
        except (ValueError, TypeError) as exc:
            raise TableBuildError(f"CSV {self.csv_path}: bad number ({exc})") from None
        self.n = len(rows)

    def fingerprint(self) -> str:
        return hashlib.sha256(self.csv_path.read_bytes()).hexdigest()

    def tiles(self, start: int, stop: int):
        import cv2

        out = []
        for f in self.files[start:stop]:
            im = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if im is None:
                raise TableBuildError(f"tile {f}: missing or not an image")
            out.append(im[:, :, ::-1])
        return out

    def close(self):
        pass


# -- building --------------------------------------------------------------------------------------------------------
def _partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial.npz")


def _check_existing(out: Path, fingerprint: str, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        try:
            fp = open_table(out, verify=False).header.encoder_fingerprint
        except TableError:
            return  # not a valid table: it will be replaced
        if fp != fingerprint:
            raise TableBuildError(f"region table {out}: exists and was made by another encoder ({fp[:16]}... vs "
                                  f"{fingerprint[:16]}...); refusing to mix encoders. Choose another output or pass "
                                  "--overwrite")


def _resume(part: Path, job: dict, codes: np.ndarray, out: Path) -> int:
    """Tiles already encoded by an earlier run of the same job (copied into ``codes``); 0 without a usable partial
    file. A partial file of another encoder is refused: one table never mixes two encoders' codes."""
    if not part.exists():
        return 0
    try:
        with np.load(part, allow_pickle=False) as z:
            pjob = json.loads(str(z["job"]))
            pdone, pcodes = int(z["done"]), z["codes"]
    except Exception as exc:  # noqa: BLE001 - a damaged partial file is just restarted
        print(f"build-table: ignoring unreadable partial file {part} ({exc})", file=sys.stderr)
        return 0
    fp = job["encoder"]
    if pjob.get("encoder") != fp:
        other = str(pjob.get("encoder", ""))[:16]
        raise TableBuildError(f"partial build {part}: made by another encoder ({other}"
                              f"... vs {fp[:16]}...); refusing to mix encoders. Delete it to start over")
    if pjob != job or pcodes.shape != codes.shape:
        return 0
    codes[:pdone] = pcodes[:pdone]
    print(f"build-table: resuming {out} at tile {pdone}/{job['n']}", file=sys.stderr)
    return pdone


def _save_partial(part: Path, job: dict, done: int, codes: np.ndarray) -> None:
    tmp = part.with_name(part.name + ".tmp.npz")
    np.savez(tmp, job=json.dumps(job), done=done, codes=codes)
    os.replace(tmp, part)  # atomic: a stop during the save keeps the previous partial file


def _encode_all(enc, source, codes: np.ndarray, done: int, bins: int, cfg: BuildConfig, part: Path, job: dict,
                bar) -> None:
    """Encode tiles ``done..n`` into ``codes``, saving the partial file every ``cfg.checkpoint_every`` batches and
    when stopped (Ctrl-C, SIGTERM, SIGHUP: a KeyboardInterrupt), so that the same command resumes where it stopped."""
    n_batches = 0
    try:
        while done < source.n:
            stop = min(done + cfg.batch, source.n)
            codes[done:stop] = enc.encode_tiles(source.tiles(done, stop), bins)
            bar.update(stop - done)
            done = stop
            n_batches += 1
            if n_batches % cfg.checkpoint_every == 0 and done < source.n:
                _save_partial(part, job, done, codes)
    except KeyboardInterrupt:
        if done > 0:
            _save_partial(part, job, done, codes)
            print(f"build-table: stopped at tile {done}/{source.n}; progress kept in {part}: run the same command "
                  "again to resume", file=sys.stderr)
        raise


def _build(source, aerial_model_path, out_path, cfg: BuildConfig, progress: bool, overwrite: bool,
           provenance: dict) -> Path:
    from .encoders import load_encoder

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    enc = load_encoder(aerial_model_path, backend=cfg.backend, branch="aerial", threads=cfg.threads)
    try:
        bins = enc.heading_bins if cfg.heading_bins is None else int(cfg.heading_bins)
        if enc.mode == "panorama" and bins != 1:
            raise TableBuildError(f"model {aerial_model_path}: a panorama model takes heading_bins=1")
        view = enc.aerial_view
        if view.kind == "projective" and not math.isclose(view.tile_size_m, cfg.tile_size_m, rel_tol=1e-6):
            # the ground-plane projection works in metres: a tile of another size would be drawn at the wrong scale
            raise TableBuildError(f"model {aerial_model_path} draws {view.tile_size_m:g} m tiles; this table's tiles "
                                  f"are {cfg.tile_size_m:g} m (use --tile-size-m {view.tile_size_m:g})")
        fp = enc.aerial_fingerprint
        _check_existing(out, fp, overwrite)
        job = {"encoder": fp, "source": source.fingerprint(), "n": int(source.n), "tile_size_m": cfg.tile_size_m,
               "stride_m": cfg.stride_m, "heading_bins": bins, "bits": enc.bits}
        codes = np.zeros((source.n, bins, enc.bits // 8), np.uint8)
        part = _partial_path(out)
        done = _resume(part, job, codes, out)
        t0 = time.perf_counter()
        with progress_bar(total=source.n, initial=done, enabled=progress, unit="tile",
                          desc=f"build-table {out.name}") as bar:
            _encode_all(enc, source, codes, done, bins, cfg, part, job, bar)
        elapsed = time.perf_counter() - t0
        prov = default_provenance(source=provenance, model=str(aerial_model_path), model_name=enc.spec.name,
                                  backend=enc.backend, encode_seconds=round(elapsed, 2))
        write_table(out, codes if bins > 1 else codes[:, 0], source.lat, source.lon, bits=enc.bits,
                    tile_size_m=cfg.tile_size_m, stride_m=cfg.stride_m, encoder_fingerprint=fp, provenance=prov)
        part.unlink(missing_ok=True)
        return out
    finally:
        enc.close()


def build_table_from_geotiff(geotiff_path, aerial_model_path, out_path, tile_size_m: float = 50.0,
                             stride_m: float = 10.0, heading_bins: int | None = None, batch: int = 64,
                             progress: bool = True, backend: str = "auto", threads: int = 2,
                             overwrite: bool = False) -> Path:
    """Encode a GeoTIFF orthophoto into a region table at ``out_path`` (resumable; see the module doc)."""
    cfg = BuildConfig(tile_size_m=tile_size_m, stride_m=stride_m, heading_bins=heading_bins, batch=batch,
                      backend=backend, threads=threads)
    _check_cfg(cfg)
    src = GeoTiffSource(geotiff_path, tile_size_m, stride_m)
    try:
        return _build(src, aerial_model_path, out_path, cfg, progress, overwrite,
                      {"geotiff": str(geotiff_path), "tiles": src.n, "resolution_m": src.res})
    finally:
        src.close()


def build_table_from_tiles(tiles_dir, csv_path, aerial_model_path, out_path, tile_size_m: float = 50.0,
                           stride_m: float = 10.0, heading_bins: int | None = None, batch: int = 64,
                           progress: bool = True, backend: str = "auto", threads: int = 2,
                           overwrite: bool = False) -> Path:
    """Encode a folder of north-up tiles listed in a CSV (``file,lat,lon``) into a region table."""
    cfg = BuildConfig(tile_size_m=tile_size_m, stride_m=stride_m, heading_bins=heading_bins, batch=batch,
                      backend=backend, threads=threads)
    _check_cfg(cfg)
    src = TileFolderSource(tiles_dir, csv_path)
    return _build(src, aerial_model_path, out_path, cfg, progress, overwrite, {"tiles_dir": str(tiles_dir),
                                                                              "csv": str(csv_path)})


def _check_cfg(cfg: BuildConfig) -> None:
    if not (cfg.tile_size_m > 0 and cfg.stride_m > 0 and math.isfinite(cfg.tile_size_m + cfg.stride_m)):
        raise TableBuildError("tile_size_m and stride_m must be positive")
    if (cfg.heading_bins is not None and cfg.heading_bins < 1) or cfg.batch < 1:
        raise TableBuildError("heading_bins and batch must be >= 1")


# -- CLI -------------------------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    d = BuildConfig()
    p = subparsers.add_parser("build-table", help="encode aerial imagery into a region table",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--geotiff", help="north-up RGB orthophoto in a metric CRS")
    src.add_argument("--tiles", help="folder of north-up tile images (with --csv)")
    p.add_argument("--csv", help="CSV with columns file,lat,lon (with --tiles)")
    p.add_argument("--model", default=None, help="model sidecar JSON or aerial ONNX (default: the shipped panorama "
                                                 "model)")
    p.add_argument("--out", required=True, help="region table to write (.gltab)")
    p.add_argument("--tile-size-m", type=float, default=None, help="ground size of a tile (default: the model's, "
                                                                   f"{d.tile_size_m:g} m for older models)")
    p.add_argument("--stride-m", type=float, default=d.stride_m)
    p.add_argument("--heading-bins", type=int, default=None, help="pinhole models: codes per tile (default: the "
                                                                  "model's; 1 for panorama models)")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--backend", default=d.backend, choices=["auto", "onnxruntime", "tensorrt", "torch"])
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--overwrite", action="store_true", help="replace an existing table made by another encoder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (there is none anyway when stderr "
                                                               "is not a terminal)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .encoders import ModelFileError

    model = args.model
    try:
        if model is None:
            from .models import shipped_model_path

            model = shipped_model_path()
        tile_size_m = args.tile_size_m
        if tile_size_m is None:
            from .encoders import find_spec

            tile_size_m = find_spec(model)[0].aerial.tile_size_m
        kw = dict(tile_size_m=tile_size_m, stride_m=args.stride_m, heading_bins=args.heading_bins,
                  batch=args.batch, progress=not args.no_progress, backend=args.backend, threads=args.threads,
                  overwrite=args.overwrite)
        if args.tiles and not args.csv:
            print("geoloc build-table: --tiles needs --csv", file=sys.stderr)
            return 2
        # SIGTERM (timeout, systemd, docker stop) and SIGHUP (a closed SSH session) stop the build as Ctrl-C does:
        # the partial file is saved and the same command resumes
        with stop_signals_interrupt():
            if args.geotiff:
                out = build_table_from_geotiff(args.geotiff, model, args.out, **kw)
            else:
                out = build_table_from_tiles(args.tiles, args.csv, model, args.out, **kw)
    except (TableBuildError, ModelFileError, TableError, FileNotFoundError, ValueError) as exc:
        print(f"geoloc build-table: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"geoloc build-table: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    t = open_table(out, verify=False)
    print(f"wrote {out}: {t.n_tiles} tiles, {t.bits} bits, {t.heading_bins} heading bin(s), encoder "
          f"{t.header.encoder_fingerprint[:16]}..., {t.header.provenance.get('encode_seconds')} s encoding")
    return 0
