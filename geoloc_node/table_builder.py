"""``geoloc build-table``: encode aerial imagery into a region table (the file the vehicle searches).

Two sources:

* an orthophoto (GeoTIFF, Cloud-Optimized GeoTIFF, any raster GDAL reads) in any projected CRS, with nodata: square
  north-up tiles of ``tile_size_m`` centred every ``stride_m`` metres on the file's grid, warped into each tile's local
  east/north frame (:mod:`.ortho`); tiles touching nodata or the raster's edge are skipped and counted;
* a folder of tile images plus a CSV with columns ``file,lat,lon`` (tile centres in WGS84; tiles north-up).

The work is cut into shards (geographic cells of ``shard_side`` x ``shard_side`` tile positions, :mod:`.build_shards`).
An engine encodes the shards: this process, or Ray Data workers (``--ray``, :mod:`.ray_build`); each finished shard is
written atomically under ``<out>.build/``, so a build stopped in any way (Ctrl-C, SIGTERM, SIGHUP: exit code 130; even
``kill -9`` or a power cut) loses at most the shard in flight per worker, and running the same command again resumes.
Then the table is assembled shard by shard (codes never all in memory), written atomically, validated, and the shard
folder removed. The same inputs give the same bytes whatever the engine, the number of workers or the interruptions
(the header's ``created_utc`` is the build's start, or ``SOURCE_DATE_EPOCH`` when set). Shards of another encoder are
refused: one table never mixes two encoders' codes.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .build_shards import ShardStore, encode_shard
from .errors import TableBuildError, TableError
from .ortho import OrthoSource
from .progress import progress_bar
from .signals import stop_signals_interrupt
from .table import default_provenance, open_table, write_table_chunks
from .tile_folder import TileFolderSource

__all__ = ["BuildConfig", "BuildResult", "TableBuildError", "build_table", "build_table_from_geotiff",
           "build_table_from_tiles"]


@dataclass(frozen=True)
class BuildConfig:
    """How to cut and encode tiles. ``batch``: tiles per encoder call; ``shard_side``: a shard is this many by this many
    tile positions (4,096 tiles, 640 m at a 10 m stride: a kill loses at most that much work per worker);
    ``backend``/``threads``: the encoder runtime, per worker (see :func:`geoloc_node.encoders.load_encoder`);
    ``ray``: None for this process, "local" for a Ray started here, or a Ray cluster address; ``ray_workers``: encoder
    actors (default: one per ``threads`` CPUs of the cluster, or one per GPU); ``progress_every_s``: off a terminal, a
    progress line (tiles/s, ETA) this often; ``set_cell_m``: the output is a table set (:mod:`.table_set`) of cells
    of this many metres."""

    tile_size_m: float = 50.0
    stride_m: float = 10.0
    heading_bins: int | None = None  # codes per tile; None: the model's own (1 for a panorama model)
    batch: int = 64
    shard_side: int = 64
    backend: str = "auto"
    threads: int = 2
    ray: str | None = None
    ray_workers: int | None = None
    progress_every_s: float = 30.0
    set_cell_m: float | None = None  # write a table set of cells this size (a folder) instead of one file


@dataclass
class BuildResult:
    """What a build did: the table, its tiles, the skipped positions, and this run's share of the work."""

    path: Path
    tiles: int
    positions: int
    skipped_nodata: int
    skipped_partial: int
    shards: int
    shards_resumed: int  # finished by an earlier run and kept
    positions_encoded: int  # by this run
    seconds: float
    engine: str
    workers: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def tiles_per_s(self) -> float:
        return self.positions_encoded / self.seconds if self.seconds > 0 else 0.0


def build_table(source, aerial_model_path, out_path, cfg: BuildConfig, progress: bool = True,
                overwrite: bool = False) -> BuildResult:
    """Encode every shard of ``source`` not yet on disk, then assemble, write and validate the table."""
    from .encoders import find_spec

    t0 = time.perf_counter()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = find_spec(aerial_model_path)[0]
    bins = _check_model(spec, aerial_model_path, cfg)
    fp = spec.aerial.sha256
    _check_existing(out, fp, overwrite)
    job = {"encoder": fp, "source": source.fingerprint(), "recipe": source.recipe(), "positions": source.n_positions,
           "shards": source.n_shards, "tile_size_m": cfg.tile_size_m, "stride_m": cfg.stride_m, "heading_bins": bins,
           "bits": spec.bits, "backend": cfg.backend}
    store = ShardStore(out)
    job = store.open_job(job)
    done = store.done()
    pending = [s for s in range(source.n_shards) if s not in done]
    if done:
        print(f"build-table: resuming {out}: {len(done)} of {source.n_shards} shards already encoded",
              file=sys.stderr)
    before = sum(_shard_positions(source, s) for s in done)
    engine, workers = ("ray", 0) if cfg.ray else ("local", 1)
    with progress_bar(total=source.n_positions, initial=before, enabled=progress, unit="tile",
                      desc=f"build-table {out.name}", log_every_s=cfg.progress_every_s) as bar:
        try:
            if cfg.ray:
                from .ray_build import encode_shards_on_ray

                workers, encode_s = encode_shards_on_ray(source.recipe(), aerial_model_path, pending, cfg, bins,
                                                         store.save, bar.update)
            else:
                t_enc = time.perf_counter()
                _encode_here(source, aerial_model_path, pending, cfg, bins, store, bar)
                encode_s = time.perf_counter() - t_enc
        except KeyboardInterrupt:
            kept = len(store.done())
            print(f"build-table: stopped with {kept} of {source.n_shards} shards kept in {store.dir}: run the same "
                  "command again to resume", file=sys.stderr)
            raise
    if cfg.set_cell_m:  # one file first (the same bytes as ever), then cut into cells; the file goes
        from .table_set import split_table

        single = out.with_name(f".{out.name}.single.gltab")
        result = _assemble(store, source, single, spec, cfg, job, aerial_model_path, bins)
        split_table(single, out, shard_m=cfg.set_cell_m)
        single.unlink()
        result.path = out
    else:
        result = _assemble(store, source, out, spec, cfg, job, aerial_model_path, bins)
    store.remove()
    result.shards_resumed = len(done)
    result.positions_encoded = source.n_positions - before
    result.seconds = time.perf_counter() - t0
    result.engine, result.workers = engine, workers
    result.extra["encode_seconds"] = round(encode_s, 2)  # the shards alone: no Ray start, no assembly
    return result


def _encode_here(source, model_path, pending, cfg: BuildConfig, bins: int, store: ShardStore, bar) -> None:
    """The plain engine: this process encodes the shards one after another."""
    from .encoders import load_encoder

    enc = load_encoder(model_path, backend=cfg.backend, branch="aerial", threads=cfg.threads)
    try:
        for shard in pending:
            store.save(encode_shard(source, shard, enc, bins, cfg.batch, bar.update))
    finally:
        enc.close()


def _assemble(store: ShardStore, source, out: Path, spec, cfg: BuildConfig, job: dict, model_path,
              bins: int) -> BuildResult:
    """The table from the shard files, in shard order (so the bytes never depend on which worker finished first):
    coordinates of all tiles first (the table's layout needs them), then the codes streamed shard by shard."""
    lat, lon, sizes = [], [], []
    nodata = partial = 0
    for s in range(source.n_shards):
        r = store.load(s)
        lat.append(r.lat)
        lon.append(r.lon)
        sizes.append(len(r.ids))
        nodata += r.counts.skipped_nodata
        partial += r.counts.skipped_partial
    lat, lon = np.concatenate(lat), np.concatenate(lon)
    if len(lat) == 0:
        raise TableBuildError(f"{_source_name(source)}: no usable tile: all {source.n_positions} positions were "
                              f"skipped ({nodata} touch nodata, {partial} reach past the raster)")
    starts = np.concatenate([[0], np.cumsum(sizes)])

    def chunks():
        for s in range(source.n_shards):
            if sizes[s]:
                yield int(starts[s]), store.load(s).codes

    prov = default_provenance(source=source.describe(), model=str(model_path), model_name=spec.name,
                              backend=cfg.backend, skipped_nodata=nodata, skipped_partial=partial,
                              created_utc=job["created_utc"])
    write_table_chunks(out, chunks(), lat, lon, bits=spec.bits, heading_bins=bins, tile_size_m=cfg.tile_size_m,
                       stride_m=cfg.stride_m, encoder_fingerprint=spec.aerial.sha256, provenance=prov, verify=True)
    return BuildResult(path=out, tiles=len(lat), positions=source.n_positions, skipped_nodata=nodata,
                       skipped_partial=partial, shards=source.n_shards, shards_resumed=0, positions_encoded=0,
                       seconds=0.0, engine="")


def _shard_positions(source, shard: int) -> int:
    if isinstance(source, OrthoSource):
        r, c = source.shard_positions(shard)
        return len(r) * len(c)
    return min(source.shard_side ** 2, source.n_positions - shard * source.shard_side ** 2)


def _source_name(source) -> str:
    return f"GeoTIFF {source.path}" if isinstance(source, OrthoSource) else f"CSV {source.csv_path}"


def _check_model(spec, model_path, cfg: BuildConfig) -> int:
    """Heading bins of the table; refuses settings the model cannot use."""
    bins = spec.heading_bins if cfg.heading_bins is None else int(cfg.heading_bins)
    if spec.mode == "panorama" and bins != 1:
        raise TableBuildError(f"model {model_path}: a panorama model takes heading_bins=1")
    aerial = spec.aerial
    if aerial.preprocess == "projective" and not math.isclose(aerial.tile_size_m, cfg.tile_size_m, rel_tol=1e-6):
        # the ground-plane projection works in metres: a tile of another size would be drawn at the wrong scale
        raise TableBuildError(f"model {model_path} draws {aerial.tile_size_m:g} m tiles; this table's tiles "
                              f"are {cfg.tile_size_m:g} m (use --tile-size-m {aerial.tile_size_m:g})")
    return bins


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


def build_table_from_geotiff(geotiff_path, aerial_model_path, out_path, tile_size_m: float = 50.0,
                             stride_m: float = 10.0, heading_bins: int | None = None, batch: int = 64,
                             progress: bool = True, backend: str = "auto", threads: int = 2,
                             overwrite: bool = False, **more) -> Path:
    """Encode an orthophoto into a region table at ``out_path`` (resumable; see the module doc). ``more``: other
    :class:`BuildConfig` fields (``shard_side``, ``ray``, ``ray_workers``)."""
    cfg = BuildConfig(tile_size_m=tile_size_m, stride_m=stride_m, heading_bins=heading_bins, batch=batch,
                      backend=backend, threads=threads, **more)
    return build_geotiff(geotiff_path, aerial_model_path, out_path, cfg, progress, overwrite).path


def build_geotiff(geotiff_path, aerial_model_path, out_path, cfg: BuildConfig, progress: bool = True,
                  overwrite: bool = False) -> BuildResult:
    _check_cfg(cfg)
    src = OrthoSource(geotiff_path, cfg.tile_size_m, cfg.stride_m, shard_side=cfg.shard_side)
    try:
        return build_table(src, aerial_model_path, out_path, cfg, progress, overwrite)
    finally:
        src.close()


def build_table_from_tiles(tiles_dir, csv_path, aerial_model_path, out_path, tile_size_m: float = 50.0,
                           stride_m: float = 10.0, heading_bins: int | None = None, batch: int = 64,
                           progress: bool = True, backend: str = "auto", threads: int = 2,
                           overwrite: bool = False, **more) -> Path:
    """Encode a folder of north-up tiles listed in a CSV (``file,lat,lon``) into a region table."""
    cfg = BuildConfig(tile_size_m=tile_size_m, stride_m=stride_m, heading_bins=heading_bins, batch=batch,
                      backend=backend, threads=threads, **more)
    _check_cfg(cfg)
    src = TileFolderSource(tiles_dir, csv_path, shard_side=cfg.shard_side)
    return build_table(src, aerial_model_path, out_path, cfg, progress, overwrite).path


def _check_cfg(cfg: BuildConfig) -> None:
    if not (cfg.tile_size_m > 0 and cfg.stride_m > 0 and math.isfinite(cfg.tile_size_m + cfg.stride_m)):
        raise TableBuildError("tile_size_m and stride_m must be positive")
    if (cfg.heading_bins is not None and cfg.heading_bins < 1) or cfg.batch < 1 or cfg.shard_side < 1:
        raise TableBuildError("heading_bins, batch and shard_side must be >= 1")
    if cfg.ray_workers is not None and cfg.ray_workers < 1:
        raise TableBuildError("ray_workers must be >= 1")
    if cfg.set_cell_m is not None and not (cfg.set_cell_m > 0 and math.isfinite(cfg.set_cell_m)):
        raise TableBuildError("set_cell_m must be a positive number of metres")


# -- CLI -------------------------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    d = BuildConfig()
    p = subparsers.add_parser("build-table", help="encode aerial imagery into a region table",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--geotiff", help="RGB orthophoto (GeoTIFF, COG, any GDAL raster; a path or /vsicurl/ URL) in a "
                                       "projected CRS; nodata is skipped")
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
    p.add_argument("--shard-side", type=int, default=d.shard_side, help="a shard (the unit of work, of resuming and "
                                                                        "of a Ray task) is this many by this many "
                                                                        "tile positions")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="encode with Ray Data: without ADDRESS a Ray started on this machine, with one (e.g. "
                        "ray://head:10001 or auto) that cluster; the GeoTIFF and model must be readable by every "
                        "worker at the same path (see docs/tables.md)")
    p.add_argument("--set-cell-m", type=float, default=None, help="write a table set (a folder: index + one table "
                                                                   "per cell of this many metres) instead of one file")
    p.add_argument("--ray-workers", type=int, default=None, help="encoder actors (default: the cluster's CPUs / "
                                                                 "--threads, or its GPUs)")
    p.add_argument("--backend", default=d.backend, choices=["auto", "onnxruntime", "tensorrt", "torch"])
    p.add_argument("--threads", type=int, default=d.threads, help="encoder threads (per Ray worker with --ray)")
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
        cfg = BuildConfig(tile_size_m=tile_size_m, stride_m=args.stride_m, heading_bins=args.heading_bins,
                          batch=args.batch, shard_side=args.shard_side, backend=args.backend, threads=args.threads,
                          ray=args.ray, ray_workers=args.ray_workers, set_cell_m=args.set_cell_m)
        if args.tiles and not args.csv:
            print("geoloc build-table: --tiles needs --csv", file=sys.stderr)
            return 2
        # SIGTERM (timeout, systemd, docker stop) and SIGHUP (a closed SSH session) stop the build as Ctrl-C does:
        # the finished shards stay on disk and the same command resumes
        with stop_signals_interrupt():
            if args.geotiff:
                res = build_geotiff(args.geotiff, model, args.out, cfg, not args.no_progress, args.overwrite)
            else:
                _check_cfg(cfg)
                src = TileFolderSource(args.tiles, args.csv, shard_side=cfg.shard_side)
                res = build_table(src, model, args.out, cfg, not args.no_progress, args.overwrite)
    except (TableBuildError, ModelFileError, TableError, FileNotFoundError, ValueError) as exc:
        print(f"geoloc build-table: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"geoloc build-table: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    t = open_table(res.path, verify=False)
    print(f"wrote {res.path}: {t.n_tiles} tiles, {t.bits} bits, {t.heading_bins} heading bin(s), encoder "
          f"{t.header.encoder_fingerprint[:16]}...; {res.positions} positions, skipped {res.skipped_nodata} on "
          f"nodata and {res.skipped_partial} at the edge; {res.positions_encoded} encoded in {res.seconds:.1f} s "
          f"({res.tiles_per_s:.0f} tiles/s, {res.engine}, {res.workers} worker(s); encoding "
          f"{res.extra['encode_seconds']} s)")
    return 0
