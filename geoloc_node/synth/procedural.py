"""A procedural city: a jittered, rotated road grid with missing links, and blocks of buildings, parks, parking, water.

Every random choice comes from one ``numpy.random.Generator`` seeded by the config, drawn in a fixed order, so that
the same config gives the same world bit for bit.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .canvas import Canvas
from .grid import Grid, Material, RoadGraph, rectangle

SIDEWALK_M = 3.0  # each side of a carriageway
AVENUE_EVERY = 4  # every 4th grid line is a wide avenue
AVENUE_WIDTH_M = 14.0
STREET_WIDTH_M = 8.0
EDGE_DROP_FRACTION = 0.12  # links removed from the grid so that it is not a perfect lattice
BUILDING_GAP_M = 2.5  # between buildings and from a building to the sidewalk

# Block use and its probability.
BLOCK_USES = ("built", "park", "parking", "plaza", "water")
BLOCK_USE_P = (0.74, 0.12, 0.06, 0.04, 0.04)

ROOF_PALETTE = np.array([(120, 118, 116), (150, 146, 140), (170, 90, 70), (140, 72, 58), (90, 88, 92), (190, 186, 178),
                         (110, 100, 86), (70, 80, 76)], np.float32)
WALL_PALETTE = np.array([(214, 204, 184), (236, 232, 222), (178, 98, 74), (150, 140, 130), (200, 180, 140),
                         (120, 124, 132), (226, 214, 190), (168, 160, 120)], np.float32)
CAR_PALETTE = np.array([(200, 200, 205), (30, 30, 34), (150, 20, 24), (40, 60, 130), (120, 124, 128), (230, 230, 225),
                        (60, 90, 60)], np.float32)
TREE_GREEN = np.array([58, 92, 46], np.float32)


def _jitter_colour(rng: np.random.Generator, palette: np.ndarray, spread: float) -> tuple[int, int, int]:
    base = palette[rng.integers(len(palette))]
    return tuple(int(v) for v in np.clip(base * rng.uniform(0.85, 1.15) + rng.normal(0, spread, 3), 0, 255))


def road_network(grid: Grid, rng: np.random.Generator, block_m: float) -> tuple[RoadGraph, list[int]]:
    """Junctions on a rotated lattice, each moved at random, linked to their lattice neighbours minus a few links.

    Returns the graph (including junctions just outside the world, so that roads run off its edge) and, per edge,
    whether it is an avenue.
    """
    angle = rng.uniform(-0.35, 0.35)
    reach = int(math.ceil(grid.half * math.sqrt(2) / block_m)) + 1
    idx = np.arange(-reach, reach + 1)
    ii, jj = np.meshgrid(idx, idx, indexing="ij")
    lattice = np.stack([ii.ravel(), jj.ravel()], axis=1).astype(np.float64) * block_m
    lattice += rng.uniform(-0.22, 0.22, lattice.shape) * block_m
    c, s = math.cos(angle), math.sin(angle)
    nodes = lattice @ np.array([[c, s], [-s, c]])
    n = len(idx)
    edges, avenue = [], []
    for i in range(n):
        for j in range(n):
            k = i * n + j
            if j + 1 < n:
                edges.append((k, k + 1))
                avenue.append(int(ii.ravel()[k] % AVENUE_EVERY == 0))
            if i + 1 < n:
                edges.append((k, k + n))
                avenue.append(int(jj.ravel()[k] % AVENUE_EVERY == 0))
    edges = np.asarray(edges, np.int64)
    avenue = np.asarray(avenue, np.int64)
    # Drop some street links (never avenues), keeping every junction at degree >= 2 so that no dead ends appear.
    degree = np.bincount(edges.ravel(), minlength=len(nodes))
    keep = np.ones(len(edges), bool)
    for e in rng.permutation(len(edges)):
        a, b = edges[e]
        if not avenue[e] and rng.random() < EDGE_DROP_FRACTION * 2 and degree[a] > 2 and degree[b] > 2:
            keep[e] = False
            degree[a] -= 1
            degree[b] -= 1
            if keep.sum() <= len(edges) * (1 - EDGE_DROP_FRACTION):
                break
    # Keep only junctions near the world (a margin of one block), renumbered.
    near = (np.abs(nodes) <= grid.half + block_m).all(axis=1)
    keep &= near[edges[:, 0]] & near[edges[:, 1]]
    new_index = np.cumsum(near) - 1
    graph = RoadGraph(nodes=nodes[near], edges=new_index[edges[keep]],
                      width_m=np.where(avenue[keep] == 1, AVENUE_WIDTH_M, STREET_WIDTH_M).astype(np.float64))
    return graph, avenue[keep].tolist()


def _paint_roads(canvas: Canvas, graph: RoadGraph, avenue: list[int]) -> None:
    lines = [graph.nodes[[a, b]] for a, b in graph.edges]
    for line, width in zip(lines, graph.width_m, strict=True):
        canvas.paint_road(line, width + 2 * SIDEWALK_M, Material.SIDEWALK)
    for line, width in zip(lines, graph.width_m, strict=True):
        canvas.paint_road(line, width, Material.ROAD)
    # Dashed centre lines on avenues: 3 m of paint every 9 m, stopping short of the junctions.
    for line, is_avenue in zip(lines, avenue, strict=True):
        if not is_avenue:
            continue
        start, end = line
        length = float(np.linalg.norm(end - start))
        direction = (end - start) / max(length, 1e-9)
        for s0 in np.arange(AVENUE_WIDTH_M, length - AVENUE_WIDTH_M, 9.0):
            dash = np.stack([start + direction * s0, start + direction * (s0 + 3.0)])
            canvas.paint_road(dash, 0.3, Material.MARKING)


def _fits(free: np.ndarray, origin, cells) -> bool:
    """Whether all cells (global rows, cols) are free in a block window whose top-left cell is ``origin``."""
    rows, cols = cells[0] - origin[0], cells[1] - origin[1]
    if len(rows) == 0:
        return False
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= free.shape[0] or cols.max() >= free.shape[1]:
        return False
    return bool(free[rows, cols].all())


def _built_block(canvas: Canvas, rng: np.random.Generator, block: np.ndarray, origin, yaw: float,
                 area_m2: float) -> None:
    """Buildings of varied footprints (rectangles and L shapes), heights and colours inside a block window."""
    grid = canvas.grid
    gap_px = max(1, int(round(BUILDING_GAP_M / grid.resolution_m)))
    free = cv2.erode(block.astype(np.uint8), np.ones((2 * gap_px + 1, 2 * gap_px + 1), np.uint8),
                     borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    candidates = np.argwhere(free)
    if len(candidates) == 0:
        return
    # Most buildings line the streets: centres first drawn from a band 5-11 m inside the block's edge, then anywhere.
    depth_m = cv2.distanceTransform(free.astype(np.uint8), cv2.DIST_L2, 3) * grid.resolution_m
    frontage = np.argwhere(free & (depth_m >= 5.0) & (depth_m <= 11.0))
    attempts = int(area_m2 / 50.0) + 2
    for attempt in range(attempts):
        pool = frontage if attempt < 0.6 * attempts and len(frontage) else candidates
        row, col = pool[rng.integers(len(pool))] + origin
        center = np.array(grid.to_en(col + 0.5, row + 0.5))
        turn = yaw + rng.integers(2) * math.pi / 2 + rng.normal(0, 0.02)
        length, width = rng.uniform(12, 42), rng.uniform(9, 20)
        parts = [rectangle(center, length, width, turn)]
        if rng.random() < 0.3:  # an L: a wing at one end, sticking out sideways
            side = rng.choice([-1.0, 1.0])
            wing_w = rng.uniform(8, 14)
            wing_l = rng.uniform(10, 20)
            along = np.array([math.cos(turn), math.sin(turn)])
            across = np.array([-along[1], along[0]])
            wing_center = center + along * side * (length - wing_w) / 2 + across * side * (width + wing_l) / 2
            parts.append(rectangle(wing_center, wing_w, wing_l + 0.5, turn))
        # Cheap test first (corners and centre), then the full footprint.
        corners = np.concatenate(parts + [center[None]])
        if not _fits(free, origin, grid.cell_index(corners[:, 0], corners[:, 1])[:2]):
            continue
        if not all(_fits(free, origin, grid.polygon_cells([p])) for p in parts):
            continue
        distance_from_centre = float(np.linalg.norm(center))
        downtown = 1.0 + 1.2 * math.exp(-(distance_from_centre / 350.0) ** 2)
        height = float(np.clip(math.exp(rng.normal(math.log(12.0), 0.45)) * downtown, 4.0, 90.0))
        roof, wall = _jitter_colour(rng, ROOF_PALETTE, 6), _jitter_colour(rng, WALL_PALETTE, 8)
        canvas.add_block(parts, height, roof, wall)
        if rng.random() < 0.3:  # a stair house or plant room on the roof: structure for the aerial view
            box = rectangle(center + rng.uniform(-2, 2, 2), rng.uniform(3, 6), rng.uniform(3, 5), turn)
            canvas.add_block([box], height + rng.uniform(2.0, 3.5), _jitter_colour(rng, ROOF_PALETTE, 4), wall)
        # Keep the next buildings a gap away from this one.
        for part in parts:
            r, c = grid.polygon_cells([rectangle(part.mean(axis=0), *_sides(part, 2 * BUILDING_GAP_M), turn)])
            r, c = r - origin[0], c - origin[1]
            ok = (r >= 0) & (r < free.shape[0]) & (c >= 0) & (c < free.shape[1])
            free[r[ok], c[ok]] = False


def _sides(corners: np.ndarray, grow: float) -> tuple[float, float]:
    length = float(np.linalg.norm(corners[0] - corners[1]))
    width = float(np.linalg.norm(corners[1] - corners[2]))
    return length + grow, width + grow


def _random_points(rng: np.random.Generator, grid: Grid, block: np.ndarray, origin, count: int) -> np.ndarray:
    cells = np.argwhere(block) + origin
    if len(cells) == 0 or count <= 0:
        return np.zeros((0, 2))
    pick = cells[rng.integers(len(cells), size=count)]
    east, north = grid.to_en(pick[:, 1] + rng.random(count), pick[:, 0] + rng.random(count))
    return np.stack([east, north], axis=1)


def _trees(canvas: Canvas, rng: np.random.Generator, points: np.ndarray) -> None:
    for point in points:
        green = np.clip(TREE_GREEN * rng.uniform(0.75, 1.25) + rng.normal(0, 6, 3), 0, 255)
        canvas.add_tree(point, rng.uniform(2.0, 4.5), rng.uniform(5.0, 13.0), green)


def _cars(canvas: Canvas, rng: np.random.Generator, centers: np.ndarray, yaws) -> None:
    for center, yaw in zip(centers, yaws, strict=True):
        colour = _jitter_colour(rng, CAR_PALETTE, 5)
        canvas.add_block([rectangle(center, 4.4, 1.8, yaw)], 1.5, colour, colour, Material.CAR)


def _parking_block(canvas: Canvas, rng: np.random.Generator, block: np.ndarray, origin, yaw: float) -> None:
    grid = canvas.grid
    cells = np.argwhere(block) + origin
    canvas.paint_cells((cells[:, 0], cells[:, 1]), Material.PARKING)
    # Bays on a lattice along the block orientation: 2.6 m wide, rows 6 m apart; about 60% taken.
    east, north = grid.to_en(cells[:, 1] + 0.5, cells[:, 0] + 0.5)
    along = np.array([math.cos(yaw), math.sin(yaw)])
    across = np.array([-along[1], along[0]])
    u = east * along[0] + north * along[1]
    v = east * across[0] + north * across[1]
    inner = cv2.erode(block.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    bays = []
    for uu in np.arange(u.min() + 3, u.max() - 3, 2.6):
        for vv in np.arange(v.min() + 4, v.max() - 4, 6.5):
            center = along * uu + across * vv
            r, c, inside = grid.cell_index(center[0], center[1])
            r, c = int(r) - origin[0], int(c) - origin[1]
            if not (inside and 0 <= r < inner.shape[0] and 0 <= c < inner.shape[1]):
                continue
            if inner[r, c] and rng.random() < 0.6:
                bays.append(center)
    if bays:
        _cars(canvas, rng, np.asarray(bays), [yaw + math.pi / 2] * len(bays))


def _street_furniture(canvas: Canvas, rng: np.random.Generator, graph: RoadGraph) -> None:
    """Street trees at the outer edge of sidewalks and cars parked along the kerb."""
    for (a, b), width in zip(graph.edges, graph.width_m, strict=True):
        start, end = graph.nodes[a], graph.nodes[b]
        length = float(np.linalg.norm(end - start))
        if length < 30:
            continue
        along = (end - start) / length
        across = np.array([-along[1], along[0]])
        yaw = math.atan2(along[1], along[0])
        for side in (-1.0, 1.0):
            if rng.random() < 0.45:
                s = np.arange(15.0, length - 15.0, rng.uniform(9, 14))
                points = start + s[:, None] * along + side * (width / 2 + SIDEWALK_M - 0.5) * across
                for p in points:
                    green = np.clip(TREE_GREEN * rng.uniform(0.8, 1.2), 0, 255)
                    canvas.add_tree(p, rng.uniform(1.8, 2.6), rng.uniform(5.0, 9.0), green)
            if rng.random() < 0.4:
                s = np.arange(18.0, length - 18.0, 6.0)
                s = s[rng.random(len(s)) < 0.5]
                points = start + s[:, None] * along + side * (width / 2 - 1.1) * across
                _cars(canvas, rng, points, [yaw] * len(points))


def lay_out(canvas: Canvas, rng: np.random.Generator, block_m: float) -> RoadGraph:
    """Paint a whole procedural city into the canvas; returns the road graph (junctions within the world only)."""
    grid = canvas.grid
    graph, avenue = road_network(grid, rng, block_m)
    _paint_roads(canvas, graph, avenue)
    yaw_grid = math.atan2(*(graph.nodes[graph.edges[0, 1]] - graph.nodes[graph.edges[0, 0]])[::-1])
    # Blocks are what the roads and sidewalks leave free: connected areas of grass.
    free = (canvas.material == Material.GRASS).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(free, connectivity=4)
    cell_area = grid.resolution_m ** 2
    for label in range(1, count):
        x, y, w, h, area_px = (int(v) for v in stats[label])
        area_m2 = area_px * cell_area
        use = BLOCK_USES[rng.choice(len(BLOCK_USES), p=BLOCK_USE_P)]
        if area_m2 < 150:
            continue
        # Work in the block's bounding window (a few hundred cells) rather than on the whole grid.
        origin = np.array([y, x])
        block = labels[y:y + h, x:x + w] == label
        if use == "built":
            _built_block(canvas, rng, block, origin, yaw_grid, area_m2)
        elif use == "park":
            _trees(canvas, rng, _random_points(rng, grid, block, origin, int(area_m2 / 250)))
        elif use == "parking":
            _parking_block(canvas, rng, block, origin, yaw_grid)
        elif use == "plaza":
            cells = np.argwhere(block) + origin
            canvas.paint_cells((cells[:, 0], cells[:, 1]), Material.PLAZA)
            _trees(canvas, rng, _random_points(rng, grid, block, origin, int(area_m2 / 900)))
        else:  # a pond with a grass rim
            rim = max(1, int(round(6.0 / grid.resolution_m)))
            pond = cv2.erode(block.astype(np.uint8), np.ones((2 * rim + 1, 2 * rim + 1), np.uint8),
                             borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
            cells = np.argwhere(pond) + origin
            canvas.paint_cells((cells[:, 0], cells[:, 1]), Material.WATER)
            _trees(canvas, rng, _random_points(rng, grid, block & ~pond, origin, int(area_m2 / 700)))
    _street_furniture(canvas, rng, graph)
    inside = (np.abs(graph.nodes) <= grid.half - 15.0).all(axis=1)
    return _subgraph(graph, inside)


def _subgraph(graph: RoadGraph, keep_nodes: np.ndarray) -> RoadGraph:
    keep_edges = keep_nodes[graph.edges[:, 0]] & keep_nodes[graph.edges[:, 1]]
    new_index = np.cumsum(keep_nodes) - 1
    return RoadGraph(nodes=graph.nodes[keep_nodes], edges=new_index[graph.edges[keep_edges]],
                     width_m=graph.width_m[keep_edges])
