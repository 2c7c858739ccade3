"""Aerial/ground training pairs in the CVUSA folder-and-CSV layout, and a loader that reads that layout back.

Layout written by :func:`export_pairs` (the same as the CVUSA subset, so one loader serves both)::

    ROOT/bingmap/19/0000001.jpg        aerial tile, north up, centred on the ground camera
    ROOT/streetview/panos/0000001.jpg  ground panorama (or pinhole view)
    ROOT/splits/train-19zl.csv         rows: bingmap/19/0000001.jpg,streetview/panos/0000001.jpg
    ROOT/splits/val-19zl.csv
    ROOT/synth_locations.csv           header: index,split,aerial_path,ground_path,lat,lon,east,north,heading_deg
    ROOT/synth_pairs.json              how the set was made: world origin, tile size, conventions

Panoramas follow :func:`~geoloc_node.synth.render.render_panorama`, with north in the centre column by default
(``north_at_center``, as in north-aligned CVUSA panoramas): column ``j`` looks at compass azimuth ``180 + 360 j / W``.

The train/val split is geographic: locations are grouped in square cells of ``2 * min_val_distance_m``, whole cells
go to val, and any train location closer than ``min_val_distance_m`` to a val location is dropped (not moved), so no
val location has a train location within that distance.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree

from ..errors import GeolocError
from .grid import Material
from .render import aerial_tile, random_style, render_panorama, render_pinhole

SPLIT_FILES = {"train": "train-19zl.csv", "val": "val-19zl.csv"}
LOCATIONS_FILE = "synth_locations.csv"


class PairsError(GeolocError, ValueError):
    """A pairs set cannot be written or read."""


@dataclass
class PairsConfig:
    """How many pairs, of what, split how. Defaults: 1000 CVUSA-like pairs, 20% of the area held out for val."""

    count: int = 1000
    seed: int = 0
    tile_size_m: float = 50.0  # ground side of an aerial tile
    tile_px: int = 256
    camera: str = "panorama"  # or "pinhole" (a forward vehicle camera at a random heading)
    image_size: tuple[int, int] = (128, 512)
    hfov_deg: float = 90.0
    north_at_center: bool = True
    randomize: bool = True  # lighting, colour cast, noise and parked cars differ per sample
    val_fraction: float = 0.2
    min_val_distance_m: float = 50.0
    jpeg_quality: int = 95

    def validate(self) -> None:
        if not (1 <= self.count <= 1_000_000):
            raise PairsError(f"count={self.count} is out of range [1, 1000000]")
        if not (5.0 <= self.tile_size_m <= 1000.0) or not (16 <= self.tile_px <= 2048):
            raise PairsError(f"tile {self.tile_size_m:g} m / {self.tile_px} px is out of range (5-1000 m, 16-2048 px)")
        if self.camera not in ("panorama", "pinhole"):
            raise PairsError(f"camera {self.camera!r} is not 'panorama' or 'pinhole'")
        if not (0.0 < self.val_fraction < 1.0):
            raise PairsError(f"val_fraction={self.val_fraction:g} must be between 0 and 1")
        if self.min_val_distance_m < 0:
            raise PairsError("min_val_distance_m must be >= 0")


def sample_locations(world, rng: np.random.Generator, count: int, margin_m: float) -> np.ndarray:
    """``count`` (east, north) points on road cells, at least ``margin_m`` inside the world's edge."""
    rows, cols = np.nonzero(world.material == Material.ROAD)
    east, north = world.grid.to_en(cols + 0.5, rows + 0.5)
    keep = (np.abs(east) <= world.config.size_m / 2 - margin_m) & (np.abs(north) <= world.config.size_m / 2 - margin_m)
    if keep.sum() == 0:
        raise PairsError("the world has no road far enough from its edge to take pictures from")
    choice = rng.choice(np.nonzero(keep)[0], size=count, replace=True)
    jitter = rng.uniform(-0.5, 0.5, (count, 2)) * world.config.resolution_m
    return np.stack([east[choice], north[choice]], axis=1) + jitter


def geographic_split(points: np.ndarray, rng: np.random.Generator, val_fraction: float,
                     min_distance_m: float) -> np.ndarray:
    """Per point: "val", "train" or "" (dropped: a train point too close to a val point)."""
    cell = max(2.0 * min_distance_m, 1.0)
    keys = np.floor(points / cell).astype(np.int64)
    cells, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    val_cells = rng.random(len(cells)) < val_fraction
    if not val_cells.any():
        val_cells[rng.integers(len(cells))] = True
    if val_cells.all() and len(cells) > 1:
        val_cells[rng.integers(len(cells))] = False
    split = np.where(val_cells[inverse], "val", "train").astype(object)
    val_points = points[split == "val"]
    if len(val_points) and min_distance_m > 0:
        distance, _ = cKDTree(val_points).query(points, k=1)
        split[(split == "train") & (distance < min_distance_m)] = ""
    return split


def export_pairs(world, root, config: PairsConfig | None = None, progress=None) -> dict:
    """Render ``config.count`` pairs into a new folder ``root`` (written beside it, renamed when complete)."""
    config = config or PairsConfig()
    config.validate()
    root = Path(root)
    if root.exists():
        raise PairsError(f"output {root} already exists; choose a new path or remove it first")
    rng = np.random.default_rng(config.seed)
    points = sample_locations(world, rng, config.count, margin_m=config.tile_size_m / 2)
    split = geographic_split(points, rng, config.val_fraction, config.min_val_distance_m)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the set is an ordinary output folder
    try:
        counts = _write_pairs(world, tmp, config, points, split, rng, progress)
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"root": str(root), **counts}


def _write_pairs(world, out: Path, config: PairsConfig, points, split, rng, progress) -> dict:
    (out / "bingmap" / "19").mkdir(parents=True)
    (out / "streetview" / "panos").mkdir(parents=True)
    (out / "splits").mkdir()
    lat, lon = world.frame.to_latlon(points[:, 0], points[:, 1])
    rows = {"train": [], "val": []}
    locations = []
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
    written = 0
    for i, ((east, north), which) in enumerate(zip(points, split, strict=True)):
        if not which:
            continue
        written += 1
        name = f"{written:07d}.jpg"
        aerial_path, ground_path = f"bingmap/19/{name}", f"streetview/panos/{name}"
        style = random_style(rng, world, east, north) if config.randomize else None
        if config.camera == "panorama":
            heading = 180.0 if config.north_at_center else 0.0
            ground = render_panorama(world, east, north, heading, size=config.image_size, style=style)
        else:
            heading = float(rng.uniform(0, 360))
            ground = render_pinhole(world, east, north, heading, config.hfov_deg, config.image_size, style=style)
        tile = aerial_tile(world, east, north, config.tile_size_m, config.tile_px)
        cv2.imwrite(str(out / aerial_path), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR), jpeg)
        cv2.imwrite(str(out / ground_path), cv2.cvtColor(ground, cv2.COLOR_RGB2BGR), jpeg)
        rows[which].append((aerial_path, ground_path))
        locations.append((written, which, aerial_path, ground_path, f"{lat[i]:.9f}", f"{lon[i]:.9f}",
                          f"{east:.3f}", f"{north:.3f}", f"{heading:.3f}"))
        if progress is not None:
            progress(written)
    for which, file_name in SPLIT_FILES.items():
        with open(out / "splits" / file_name, "w", newline="") as stream:
            csv.writer(stream).writerows(rows[which])
    with open(out / LOCATIONS_FILE, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["index", "split", "aerial_path", "ground_path", "lat", "lon", "east", "north", "heading_deg"])
        writer.writerows(locations)
    meta = {"format": "geoloc_node.synth.pairs", "version": 1, "layout": "CVUSA (bingmap/19, streetview/panos, splits)",
            "origin": {"lat": world.config.origin_lat, "lon": world.config.origin_lon},
            "world": {"size_m": world.config.size_m, "seed": world.config.seed, "layout": world.source.get("layout")},
            "panorama_columns": "column j looks at compass azimuth heading_deg + 360 j / W (clockwise)",
            "aerial": "north up, centred on the ground camera", "config": asdict(config),
            "counts": {"train": len(rows["train"]), "val": len(rows["val"]),
                       "dropped_near_val": int(np.sum(split == ""))}}
    (out / "synth_pairs.json").write_text(json.dumps(meta, indent=1))
    return meta["counts"]


# -- loader ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairRecord:
    aerial_path: Path
    ground_path: Path
    lat: float  # NaN when the set has no locations file (the real CVUSA splits carry none)
    lon: float


class CvusaPairs:
    """The pairs of one split of a CVUSA-layout folder (synthetic or the real CVUSA subset).

    ``pairs[i]`` -> ``(aerial_rgb, ground_rgb, record)`` with uint8 RGB arrays (H, W, 3); ``pairs.records`` lists
    paths and lat/lon without reading images. Split files are looked up as ``ROOT/splits/<name>`` then ``ROOT/<name>``.
    """

    def __init__(self, root, split: str = "train"):
        self.root = Path(root)
        if split not in SPLIT_FILES:
            raise PairsError(f"split {split!r} is not one of {sorted(SPLIT_FILES)}")
        candidates = [self.root / "splits" / SPLIT_FILES[split], self.root / SPLIT_FILES[split]]
        split_file = next((p for p in candidates if p.is_file()), None)
        if split_file is None:
            raise PairsError(f"{self.root} has no {SPLIT_FILES[split]} (looked in splits/ and the root)")
        locations = self._read_locations()
        records = []
        with open(split_file, newline="") as stream:
            for line_no, row in enumerate(csv.reader(stream), start=1):
                if not row:
                    continue
                if len(row) < 2:
                    raise PairsError(f"{split_file}:{line_no}: expected aerial_path,ground_path")
                lat, lon = locations.get(row[1].strip(), (math.nan, math.nan))
                records.append(PairRecord(self.root / row[0].strip(), self.root / row[1].strip(), lat, lon))
        self.records = records

    def _read_locations(self) -> dict[str, tuple[float, float]]:
        path = self.root / LOCATIONS_FILE
        if not path.is_file():
            return {}
        with open(path, newline="") as stream:
            return {row["ground_path"]: (float(row["lat"]), float(row["lon"])) for row in csv.DictReader(stream)}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        return _read_rgb(record.aerial_path), _read_rgb(record.ground_path), record


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PairsError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
