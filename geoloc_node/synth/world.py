"""A synthetic world: 2.5-D rasters over an ENU grid centred at a WGS84 origin, its orthophoto and its roads.

``make_world(WorldConfig(...))`` lays out a procedural city; ``world_from_osm(pbf, config)`` one from OpenStreetMap.
Both are deterministic: the same config (and input file) gives the same rasters, bit for bit.

Files: ``world.save(dir)`` writes ``world.json`` (config, road graph) and ``world.npz`` (rasters); no pickle.
``world.write_geotiff(path)`` writes the orthophoto in a local ellipsoidal orthographic CRS centred at the origin
(``+proj=ortho +lat_0 +lon_0 +ellps=WGS84``): its x/y are exactly the project's ENU east/north (the tangent plane
of :class:`~geoloc_node.geodesy.LocalFrame`, within micrometres over kilometres), so the affine transform is exact.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import GeolocError
from ..geodesy import LocalFrame
from . import procedural
from .aerial import make_orthophoto
from .canvas import Canvas
from .grid import Grid, Material, RoadGraph

FORMAT_VERSION = 1
SIZE_RANGE_M = (100.0, 5000.0)
RESOLUTION_RANGE_M = (0.1, 2.0)
MAX_CELLS_PER_SIDE = 10000  # 100 M cells: about 1 GB of rasters, the most one machine of this class holds comfortably


class WorldError(GeolocError, ValueError):
    """A world cannot be built, read or written from what was given."""


@dataclass(frozen=True)
class WorldConfig:
    """How to build a world. Every field has a usable default: a 1.5 km city at 0.5 m/px in Zurich."""

    size_m: float = 1500.0  # side of the square region, metres
    resolution_m: float = 0.5  # ground sampling distance of all rasters and of the orthophoto
    origin_lat: float = 47.3769  # WGS84 centre of the region (the ENU origin)
    origin_lon: float = 8.5417
    seed: int = 0
    block_m: float = 110.0  # procedural: mean distance between junctions of the road grid
    sun_azimuth_deg: float = 150.0  # aerial capture: compass azimuth of the sun
    sun_elevation_deg: float = 50.0
    aerial_shadows: bool = True
    aerial_noise_std: float = 3.0  # sensor noise of the orthophoto, grey levels
    osm_default_building_height_m: float = 12.0  # OSM: for buildings without height or building:levels
    osm_level_height_m: float = 3.2

    def validate(self) -> None:
        lo, hi = SIZE_RANGE_M
        if not (lo <= self.size_m <= hi):
            raise WorldError(f"size_m={self.size_m:g} is out of range [{lo:g}, {hi:g}] metres")
        lo, hi = RESOLUTION_RANGE_M
        if not (lo <= self.resolution_m <= hi):
            raise WorldError(f"resolution_m={self.resolution_m:g} is out of range [{lo:g}, {hi:g}] metres per pixel")
        if self.size_m / self.resolution_m > MAX_CELLS_PER_SIDE:
            raise WorldError(f"size_m / resolution_m = {self.size_m / self.resolution_m:.0f} cells per side is more "
                             f"than {MAX_CELLS_PER_SIDE}; use a coarser resolution or a smaller world")
        if not (-85.0 <= self.origin_lat <= 85.0 and -180.0 <= self.origin_lon <= 180.0):
            raise WorldError(f"origin ({self.origin_lat}, {self.origin_lon}) is not a valid WGS84 position "
                             "(|lat| <= 85, |lon| <= 180)")
        if not (30.0 <= self.block_m <= 400.0):
            raise WorldError(f"block_m={self.block_m:g} is out of range [30, 400] metres")
        if not (5.0 <= self.sun_elevation_deg <= 90.0):
            raise WorldError(f"sun_elevation_deg={self.sun_elevation_deg:g} is out of range [5, 90]")

    @classmethod
    def from_json(cls, data: dict) -> WorldConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class World:
    """Rasters of a world on a north-up grid centred at the origin (see :mod:`.grid` for the cell convention)."""

    config: WorldConfig
    height: np.ndarray  # (H, W) float32, metres above the ground plane of the top surface
    material: np.ndarray  # (H, W) uint8, :class:`Material`
    top_rgb: np.ndarray  # (H, W, 3) uint8, colour seen from above (unlit albedo with texture)
    facade_rgb: np.ndarray  # (H, W, 3) uint8, wall colour of whatever stands in the cell
    aerial_rgb: np.ndarray  # (H, W, 3) uint8, the orthophoto, north up
    road_graph: RoadGraph
    source: dict = field(default_factory=dict)  # how the layout was made (procedural, or OSM file and its stats)

    @property
    def grid(self) -> Grid:
        return Grid(self.config.size_m, self.config.resolution_m)

    @property
    def frame(self) -> LocalFrame:
        return LocalFrame(self.config.origin_lat, self.config.origin_lon)

    @property
    def crs_proj4(self) -> str:
        """The local CRS whose x/y are this world's east/north (see the module docstring)."""
        return (f"+proj=ortho +lat_0={self.config.origin_lat!r} +lon_0={self.config.origin_lon!r} "
                "+x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs")

    def sample(self, east, north) -> dict[str, np.ndarray]:
        """Height, material and top colour of the cells under the points (outside: ground, grass)."""
        row, col, inside = self.grid.cell_index(east, north)
        return {"height": np.where(inside, self.height[row, col], 0.0),
                "material": np.where(inside, self.material[row, col], Material.GRASS),
                "top_rgb": self.top_rgb[row, col]}

    # -- files ---------------------------------------------------------------------------------------------------------
    def save(self, directory, geotiff: bool = False) -> Path:
        """Write ``world.json`` + ``world.npz`` (+ ``aerial.tif`` if asked) into a new directory, written beside it
        and renamed into place when complete."""
        directory = Path(directory)
        if directory.exists():
            raise WorldError(f"output {directory} already exists; choose a new path or remove it first")
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the world is an ordinary output folder
        try:
            meta = {"format": "geoloc_node.synth.world", "version": FORMAT_VERSION, "config": asdict(self.config),
                    "road_graph": self.road_graph.to_json(), "source": self.source,
                    "crs_proj4": self.crs_proj4, "shape": list(self.height.shape)}
            (tmp / "world.json").write_text(json.dumps(meta, indent=1))
            np.savez_compressed(tmp / "world.npz", height=self.height, material=self.material, top_rgb=self.top_rgb,
                                facade_rgb=self.facade_rgb, aerial_rgb=self.aerial_rgb)
            if geotiff:
                self.write_geotiff(tmp / "aerial.tif")
            os.rename(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    @classmethod
    def load(cls, directory) -> World:
        directory = Path(directory)
        try:
            meta = json.loads((directory / "world.json").read_text())
            with np.load(directory / "world.npz", allow_pickle=False) as arrays:
                rasters = {k: arrays[k] for k in ("height", "material", "top_rgb", "facade_rgb", "aerial_rgb")}
        except (OSError, KeyError, ValueError) as exc:
            raise WorldError(f"cannot read a world from {directory}: {exc}") from exc
        if meta.get("format") != "geoloc_node.synth.world" or meta.get("version") != FORMAT_VERSION:
            raise WorldError(f"{directory} is not a world of format version {FORMAT_VERSION}")
        return cls(config=WorldConfig.from_json(meta["config"]), road_graph=RoadGraph.from_json(meta["road_graph"]),
                   source=meta.get("source", {}), **rasters)

    def write_geotiff(self, path) -> Path:
        """The orthophoto as an RGB GeoTIFF in the local orthographic CRS (exact affine transform, see module doc)."""
        import rasterio
        from affine import Affine
        from rasterio.crs import CRS

        path = Path(path)
        if path.exists():
            raise WorldError(f"output {path} already exists; choose a new path or remove it first")
        path.parent.mkdir(parents=True, exist_ok=True)
        half = self.config.size_m / 2.0
        # Pixel corner (0, 0) is the north-west corner of the world; x = east, y = north, metres.
        transform = Affine(self.config.resolution_m, 0.0, -half, 0.0, -self.config.resolution_m, half)
        rows, cols = self.aerial_rgb.shape[:2]
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tif", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the GeoTIFF is an ordinary output file
        try:
            with rasterio.open(tmp, "w", driver="GTiff", width=cols, height=rows, count=3, dtype="uint8",
                               crs=CRS.from_proj4(self.crs_proj4), transform=transform, photometric="RGB",
                               compress="deflate", tiled=True, blockxsize=256, blockysize=256) as dst:
                dst.write(np.moveaxis(self.aerial_rgb, 2, 0))
                dst.update_tags(origin_lat=repr(self.config.origin_lat), origin_lon=repr(self.config.origin_lon),
                                source="geoloc_node synthetic world", seed=str(self.config.seed))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def finish_world(config: WorldConfig, canvas: Canvas, road_graph: RoadGraph, rng: np.random.Generator,
                 source: dict) -> World:
    """Texture the canvas and photograph it from above: the steps every layout shares."""
    canvas.add_texture(rng)
    aerial = make_orthophoto(canvas.top_rgb, canvas.height, canvas.grid, rng, config.sun_azimuth_deg,
                             config.sun_elevation_deg, config.aerial_shadows, config.aerial_noise_std)
    return World(config=config, height=canvas.height, material=canvas.material, top_rgb=canvas.top_rgb,
                 facade_rgb=canvas.facade_rgb, aerial_rgb=aerial, road_graph=road_graph, source=source)


def make_world(config: WorldConfig | None = None) -> World:
    """A procedural city (see :mod:`.procedural`), deterministic in ``config.seed``."""
    config = config or WorldConfig()
    config.validate()
    rng = np.random.default_rng(config.seed)
    canvas = Canvas(Grid(config.size_m, config.resolution_m))
    road_graph = procedural.lay_out(canvas, rng, config.block_m)
    if len(road_graph.edges) == 0:
        raise WorldError(f"a {config.size_m:g} m world with block_m={config.block_m:g} has no road inside it; "
                         "use a larger world or smaller blocks")
    return finish_world(config, canvas, road_graph, rng, {"layout": "procedural"})


def world_from_osm(pbf_path, config: WorldConfig | None = None) -> World:
    """A world laid out from an OpenStreetMap extract (see :mod:`.osm`).

    Without a config the origin is the centre of the extract; with one, its origin must lie where the extract has
    buildings (else :class:`WorldError` says where the extract is).
    """
    from .osm import centred_config, lay_out_osm

    pbf_path = Path(pbf_path)
    if not pbf_path.is_file():
        raise WorldError(f"OSM file {pbf_path} does not exist")
    config = config or centred_config(pbf_path, WorldConfig())
    config.validate()
    rng = np.random.default_rng(config.seed)
    canvas = Canvas(Grid(config.size_m, config.resolution_m))
    road_graph, stats = lay_out_osm(canvas, rng, pbf_path, config)
    return finish_world(config, canvas, road_graph, rng, {"layout": "osm", "file": pbf_path.name, **stats})


def heading_between(a, b) -> float:
    """Compass heading (deg) from point a to point b, both (east, north)."""
    return math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0
