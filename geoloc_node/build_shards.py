"""The unit of work of ``geoloc build-table``: a shard (a geographic cell of tile positions), encoded by whichever
engine runs the build (this process, or Ray workers) and kept on disk until the table is assembled.

``<out>.build/`` holds ``job.json`` (what is being built: encoder, source, layout; when the build started) and one
``shard-NNNNNNN.npz`` per finished shard, each written to a temporary name, fsynced and renamed: a build killed at any
moment (even ``kill -9``) leaves only whole shards, and running the same command again encodes only the missing ones.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TableBuildError
from .ortho import OrthoSource, ShardCounts
from .tile_folder import TileFolderSource


class BuildStateError(TableBuildError):
    """A previous, unfinished build cannot be resumed by this one (the message says why and what to do)."""


@dataclass
class ShardResult:
    """A finished shard: the usable tiles' grid ids, codes [n, bins, bits/8], WGS84 centres; what was skipped."""

    shard: int
    ids: np.ndarray
    codes: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    counts: ShardCounts

    def arrays(self) -> dict:
        c = self.counts
        return {"shard": np.int64(self.shard), "ids": self.ids, "codes": self.codes, "lat": self.lat,
                "lon": self.lon, "counts": np.array([c.positions, c.skipped_nodata, c.skipped_partial], np.int64)}

    @classmethod
    def from_arrays(cls, d) -> ShardResult:
        counts = ShardCounts(*(int(v) for v in np.asarray(d["counts"]).reshape(3)))
        return cls(int(np.asarray(d["shard"]).reshape(())), np.asarray(d["ids"], np.int64),
                   np.asarray(d["codes"], np.uint8), np.asarray(d["lat"], np.float64),
                   np.asarray(d["lon"], np.float64), counts)


def open_source(recipe: dict):
    """A tile source from its :meth:`recipe` (so that a Ray worker opens the same source as the driver)."""
    r = dict(recipe)
    kind = r.pop("kind")
    if kind == "geotiff":
        return OrthoSource(r["path"], r["tile_size_m"], r["stride_m"], shard_side=r["shard_side"])
    if kind == "tiles":
        return TileFolderSource(r["folder"], r["csv_path"], shard_side=r["shard_side"])
    raise ValueError(f"unknown tile source kind {kind!r}")


def encode_shard(source, shard: int, enc, bins: int, batch: int, on_positions=None) -> ShardResult:
    """Read, warp and encode one shard; memory follows the shard's read window plus one batch of tiles."""
    counts = ShardCounts()
    ids, codes, lat, lon = [], [], [], []
    encoded = 0
    for b in source.shard_batches(shard, batch, counts):
        codes.append(enc.encode_tiles(b.tiles, bins))
        ids.append(b.ids)
        lat.append(b.lat)
        lon.append(b.lon)
        encoded += len(b.ids)
        if on_positions is not None:  # progress in tile positions: encoded ones as they go, skipped ones at the end
            on_positions(len(b.ids))
    if on_positions is not None:
        on_positions(counts.positions - encoded)
    nbytes = enc.bits // 8
    return ShardResult(shard, _cat(ids, np.int64, (0,)), _cat(codes, np.uint8, (0, bins, nbytes)),
                       _cat(lat, np.float64, (0,)), _cat(lon, np.float64, (0,)), counts)


def _cat(parts: list, dtype, empty_shape: tuple) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(empty_shape, dtype)


class ShardStore:
    """The shard files of one build, beside its output."""

    def __init__(self, out: Path):
        self.dir = out.with_name(out.name + ".build")

    def path(self, shard: int) -> Path:
        return self.dir / f"shard-{int(shard):07d}.npz"

    def open_job(self, job: dict) -> dict:
        """Start the job, or resume the unfinished one of the same job. Returns the stored job, with its start time.
        Shards of another encoder are refused (one table never mixes encoders); of other settings, discarded."""
        jpath = self.dir / "job.json"
        if jpath.exists():
            try:
                old = json.loads(jpath.read_text())
            except (OSError, ValueError):
                old = {}
            if old.get("encoder") not in (None, job["encoder"]):
                raise BuildStateError(f"unfinished build {self.dir}: made by another encoder "
                                      f"({str(old['encoder'])[:16]}... vs {job['encoder'][:16]}...); refusing to mix "
                                      "encoders. Delete it to start over")
            if {k: v for k, v in old.items() if k != "created_utc"} == job:
                return old
            shutil.rmtree(self.dir)  # the same output with other settings: those shards are of no use
        self.dir.mkdir(parents=True, exist_ok=True)
        stored = {**job, "created_utc": _created_utc()}
        _atomic_write(jpath, json.dumps(stored, sort_keys=True).encode())
        return stored

    def done(self) -> set[int]:
        """Shards whose files are complete (a file is only ever renamed into place whole)."""
        return {int(p.name[6:13]) for p in self.dir.glob("shard-*.npz") if len(p.name) == 17}

    def save(self, result: ShardResult) -> None:
        import io

        buf = io.BytesIO()
        np.savez(buf, **result.arrays())
        _atomic_write(self.path(result.shard), buf.getbuffer())

    def load(self, shard: int) -> ShardResult:
        with np.load(self.path(shard), allow_pickle=False) as z:
            return ShardResult.from_arrays(z)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _created_utc() -> str:
    """When the table was made: SOURCE_DATE_EPOCH when set (reproducible builds: byte-identical tables from
    identical inputs), else now. Kept in job.json so that a resumed build says when it began."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc))
    return when.isoformat(timespec="seconds")


def _atomic_write(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
