"""Another time of the same world: some buildings demolished, others built, roofs repainted, the orthophoto retaken.

A region table is built from an orthophoto taken months or years before the drive, and the city changes in between.
``age_world(world, fraction, seed)`` returns a copy of a world in which

* buildings covering about ``fraction`` of the built area are demolished (the lot becomes grass or a car park),
* about as much building area is built on free ground (grass, car parks, plazas; never on roads, sidewalks, water or
  under trees, and a gap away from everything standing), aligned with the nearest road,
* about ``fraction`` of the remaining buildings get a roof of another colour (texture and roof structures kept),

and the orthophoto is taken again (same sun, new sensor noise). Roads, the road graph and everything else stay as they
were. Which of the two is the old one is up to the caller: the realistic use builds the table from the world as it was
(``W_old``) and records the drive in ``age_world(W_old)``.

The world keeps no list of buildings: a building here is a connected component of BUILDING cells in the material
raster (so an OpenStreetMap terrace of touching houses counts as one).
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from ..errors import GeolocError
from .aerial import make_orthophoto
from .canvas import Canvas
from .grid import Material, RoadGraph, rectangle
from .procedural import BUILDING_GAP_M, ROOF_PALETTE, WALL_PALETTE

#: Ground a new building may stand on (flat, open, not a road).
BUILDABLE = (Material.GRASS, Material.PARKING, Material.PLAZA)
#: What a demolished lot becomes.
VACANT_LOT = (Material.GRASS, Material.PARKING)
NEW_LENGTH_M = (10.0, 32.0)  # footprints of new buildings: a little smaller than the procedural ones (infill)
NEW_WIDTH_M = (8.0, 16.0)
NEW_HEIGHT_MEDIAN_M = 12.0
ROOF_CHANGE_MIN = 40.0  # a repainted roof differs from the old one by at least this much in some channel
ATTEMPTS_PER_BUILDING = 60  # random placements tried per building removed before giving up


class AgingError(GeolocError, ValueError):
    """A world cannot be aged as asked."""


def age_world(world, fraction: float = 0.2, seed: int = 0):
    """A copy of ``world`` with about ``fraction`` of its buildings changed (see the module docstring)."""
    if not (0.0 <= fraction <= 1.0):
        raise AgingError(f"fraction={fraction:g} is out of range [0, 1]")
    rng = np.random.default_rng((seed, 0xA6E))
    grid = world.grid
    canvas = Canvas(grid)
    for name in ("height", "material", "top_rgb", "facade_rgb"):
        getattr(canvas, name)[:] = getattr(world, name)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (world.material == Material.BUILDING).astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)  # building k + 1 has area areas[k]
    removed = _pick_demolitions(areas, fraction, rng)
    demolished = np.isin(labels, removed + 1)
    lots = _demolish(canvas, labels, removed + 1, rng)
    added_px, added = _build(canvas, world.road_graph, demolished, int(areas[removed].sum()), len(removed), rng)
    kept = np.setdiff1d(np.arange(count - 1), removed)
    repainted = rng.choice(kept, size=int(round(fraction * len(kept))), replace=False) if len(kept) else kept
    _repaint_roofs(canvas, labels, repainted + 1, rng)
    changed = lots | ((canvas.material == Material.BUILDING) & (world.material != Material.BUILDING))
    _texture_cells(canvas, changed, rng)
    config = world.config
    aerial = make_orthophoto(canvas.top_rgb, canvas.height, grid, rng, config.sun_azimuth_deg,
                             config.sun_elevation_deg, config.aerial_shadows, config.aerial_noise_std)
    stats_out = {"fraction": fraction, "seed": seed, "buildings": int(count - 1), "removed": int(len(removed)),
                 "added": added, "repainted": int(len(repainted)), "removed_px": int(demolished.sum()),
                 "added_px": added_px}
    graph = world.road_graph
    return replace(world, height=canvas.height, material=canvas.material, top_rgb=canvas.top_rgb,
                   facade_rgb=canvas.facade_rgb, aerial_rgb=aerial,
                   road_graph=RoadGraph(graph.nodes.copy(), graph.edges.copy(), graph.width_m.copy()),
                   source={**world.source, "aged": stats_out})


def _pick_demolitions(areas: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Buildings (0-based) in random order, each taken when it brings the demolished area closer to the target."""
    target = fraction * float(areas.sum())
    picked, total = [], 0.0
    for k in rng.permutation(len(areas)):
        if abs(total + areas[k] - target) < abs(total - target):
            picked.append(k)
            total += float(areas[k])
    return np.asarray(sorted(picked), np.int64)


def _demolish(canvas: Canvas, labels: np.ndarray, label_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Clear the buildings: each lot becomes grass or a car park. Returns the mask of cleared cells."""
    cleared = np.zeros(labels.shape, bool)
    for label in label_ids:
        lot = labels == label
        material = VACANT_LOT[int(rng.integers(len(VACANT_LOT)))]
        canvas.paint_cells(lot, material)
        canvas.facade_rgb[lot] = 0
        cleared |= lot
    return cleared


def _free_ground(canvas: Canvas, reserved: np.ndarray) -> np.ndarray:
    """Cells where a new building may stand: buildable, flat, not ``reserved``, a gap away from anything else."""
    open_ground = np.isin(canvas.material, BUILDABLE) & (canvas.height == 0) & ~reserved
    gap_px = max(1, int(round(BUILDING_GAP_M / canvas.grid.resolution_m)))
    kernel = np.ones((2 * gap_px + 1, 2 * gap_px + 1), np.uint8)
    return cv2.erode(open_ground.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT,
                     borderValue=0).astype(bool)


def _road_yaw(graph: RoadGraph, point: np.ndarray, rng: np.random.Generator) -> float:
    """ENU yaw of the road edge nearest to the point (new buildings face their street); random without roads."""
    if len(graph.edges) == 0:
        return float(rng.uniform(0, math.pi))
    a, b = graph.nodes[graph.edges[:, 0]], graph.nodes[graph.edges[:, 1]]
    ab = b - a
    u = np.clip(np.einsum("ij,ij->i", point - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-9), 0, 1)
    nearest = int(np.argmin(np.linalg.norm(a + u[:, None] * ab - point, axis=1)))
    return float(math.atan2(ab[nearest, 1], ab[nearest, 0]))


def _jitter(rng: np.random.Generator, palette: np.ndarray, spread: float) -> np.ndarray:
    base = palette[rng.integers(len(palette))]
    return np.clip(base * rng.uniform(0.85, 1.15) + rng.normal(0, spread, 3), 0, 255).astype(np.uint8)


def _build(canvas: Canvas, graph: RoadGraph, reserved: np.ndarray, target_px: int, expected: int,
           rng: np.random.Generator) -> tuple[int, int]:
    """New buildings on free ground until they cover ``target_px`` cells; returns (cells, buildings) added."""
    grid = canvas.grid
    free = _free_ground(canvas, reserved)
    cells = np.argwhere(free)  # drawn from once; a cell taken since is skipped by the footprint test
    added_px = added = 0
    for _ in range(ATTEMPTS_PER_BUILDING * max(1, expected)):
        if added_px >= target_px or len(cells) == 0:
            break
        row, col = cells[rng.integers(len(cells))]
        center = np.array(grid.to_en(col + 0.5, row + 0.5))
        yaw = _road_yaw(graph, center, rng) + int(rng.integers(2)) * math.pi / 2
        length, width = rng.uniform(*NEW_LENGTH_M), rng.uniform(*NEW_WIDTH_M)
        footprint = rectangle(center, length, width, yaw)
        rows, cols = grid.polygon_cells([footprint])
        if len(rows) == 0 or not free[rows, cols].all():
            continue
        height = float(np.clip(math.exp(rng.normal(math.log(NEW_HEIGHT_MEDIAN_M), 0.45)), 4.0, 60.0))
        canvas.add_block([footprint], height, _jitter(rng, ROOF_PALETTE, 6), _jitter(rng, WALL_PALETTE, 8))
        added_px += len(rows)
        added += 1
        # Keep the next new building a gap away from this one.
        grown = rectangle(center, length + 2 * BUILDING_GAP_M, width + 2 * BUILDING_GAP_M, yaw)
        free[grid.polygon_cells([grown])] = False
    return added_px, added


def _repaint_roofs(canvas: Canvas, labels: np.ndarray, label_ids: np.ndarray, rng: np.random.Generator) -> None:
    """Give each building another roof colour, scaling its cells so that texture and roof structures stay."""
    for label in label_ids:
        roof = labels == label
        old = canvas.top_rgb[roof].astype(np.float32)
        mean = old.mean(axis=0)
        # A colour close to the old one would not be a change: draw again (a few times at most).
        for _ in range(10):
            new = _jitter(rng, ROOF_PALETTE, 6).astype(np.float32)
            if np.abs(new - mean).max() >= ROOF_CHANGE_MIN:
                break
        canvas.top_rgb[roof] = np.clip(old * (new / np.maximum(mean, 1.0)), 0, 255).astype(np.uint8)


def _texture_cells(canvas: Canvas, where: np.ndarray, rng: np.random.Generator) -> None:
    """The layouts' texture (:meth:`Canvas.add_texture`) on the flat colours just painted, nowhere else."""
    if not where.any():
        return
    scratch = Canvas(canvas.grid)
    scratch.material[:] = canvas.material
    scratch.top_rgb[:] = canvas.top_rgb
    scratch.add_texture(rng)
    canvas.top_rgb[where] = scratch.top_rgb[where]

