"""Lay a world out from an OpenStreetMap extract (.osm.pbf / .osm / .osm.bz2), read with pyosmium (``osmium``).

What is taken from the map and how it is painted (later items over earlier ones):

* land use and natural areas: grass, parks, forests (grass with trees), water, parking, pedestrian squares;
* roads by class (``highway=*``) with a width from ``width``, else ``lanes`` x 3.2 m, else the class default, and a
  sidewalk band beside drivable roads; footways and cycleways as narrow paved paths;
* buildings (``building=*`` areas, holes kept) with a height from ``height``, else ``building:levels`` x level height
  + 1 m roof, else the configured default; colours drawn per building (the map does not say);
* trees (``natural=tree`` nodes, and tree rows).

The road graph for drives is made of the drivable roads: every OSM node of those ways is a graph node, so curved
roads are chains of short edges.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..geodesy import LocalFrame
from .canvas import Canvas
from .grid import Material, RoadGraph
from .procedural import ROOF_PALETTE, TREE_GREEN, WALL_PALETTE, _jitter_colour

LANE_WIDTH_M = 3.2
SIDEWALK_M = 2.5
# highway class -> default carriageway width (m); classes not listed are not roads we paint as such.
DRIVABLE_WIDTH_M = {
    "motorway": 14.0, "trunk": 12.0, "primary": 12.0, "secondary": 10.0, "tertiary": 9.0, "unclassified": 7.0,
    "residential": 7.0, "living_street": 6.0, "service": 5.0, "motorway_link": 6.0, "trunk_link": 6.0,
    "primary_link": 6.0, "secondary_link": 6.0, "tertiary_link": 6.0, "road": 7.0,
}
PATH_WIDTH_M = {"pedestrian": 6.0, "footway": 2.5, "cycleway": 2.5, "path": 2.0, "steps": 2.0, "track": 3.0}
AREA_MATERIAL = {
    ("landuse", "grass"): Material.GRASS, ("leisure", "park"): Material.GRASS, ("landuse", "forest"): Material.GRASS,
    ("natural", "wood"): Material.GRASS, ("natural", "scrub"): Material.GRASS, ("landuse", "meadow"): Material.GRASS,
    ("leisure", "pitch"): Material.GRASS, ("leisure", "garden"): Material.GRASS, ("natural", "heath"): Material.GRASS,
    ("natural", "water"): Material.WATER, ("landuse", "basin"): Material.WATER,
    ("landuse", "reservoir"): Material.WATER, ("landuse", "pond"): Material.WATER,
    ("amenity", "parking"): Material.PARKING,
    ("highway", "pedestrian"): Material.PLAZA, ("place", "square"): Material.PLAZA,
    ("landuse", "commercial"): Material.PLAZA, ("landuse", "retail"): Material.PLAZA,
    ("landuse", "civil"): Material.PLAZA, ("amenity", "school"): Material.PLAZA,
}
WOODED = {("landuse", "forest"), ("natural", "wood"), ("leisure", "park")}


def osm_bounds(pbf_path: Path) -> tuple[float, float, float, float]:
    """(min_lon, min_lat, max_lon, max_lat) of the extract: its header box, else the extent of its nodes."""
    import osmium

    reader = osmium.io.Reader(str(pbf_path))
    box = reader.header().box()
    reader.close()
    if box.valid():
        return box.bottom_left.lon, box.bottom_left.lat, box.top_right.lon, box.top_right.lat
    lons, lats = [], []
    for node in osmium.FileProcessor(str(pbf_path), osmium.osm.NODE):
        if node.location.valid():
            lons.append(node.location.lon)
            lats.append(node.location.lat)
    if not lons:
        from .world import WorldError

        raise WorldError(f"{pbf_path} holds no nodes")
    return min(lons), min(lats), max(lons), max(lats)


def centred_config(pbf_path: Path, config):
    """``config`` with its origin moved to the centre of the extract (for ``--origin auto``)."""
    min_lon, min_lat, max_lon, max_lat = osm_bounds(pbf_path)
    return replace(config, origin_lat=(min_lat + max_lat) / 2.0, origin_lon=(min_lon + max_lon) / 2.0)


def _parse_metres(text: str | None) -> float | None:
    if not text:
        return None
    match = re.match(r"\s*([0-9]+(?:[.,][0-9]+)?)", text)
    if not match:
        return None
    value = float(match.group(1).replace(",", "."))
    if "'" in text or "ft" in text:
        value *= 0.3048
    return value if 0.5 <= value <= 1000.0 else None


def _read(pbf_path: Path) -> dict:
    """Everything the painter needs, as lon/lat lists, in file order (deterministic)."""
    import osmium

    found = {"areas": [], "buildings": [], "roads": [], "paths": [], "trees": [], "tree_rows": []}
    processor = osmium.FileProcessor(str(pbf_path)).with_locations().with_areas()
    for obj in processor:
        tags = obj.tags
        if obj.is_area():
            rings = _area_rings(obj)
            if not rings:
                continue
            if "building" in tags or "building:part" in tags:
                found["buildings"].append((rings, tags.get("height"), tags.get("building:levels")))
                continue
            for key in ("landuse", "leisure", "natural", "amenity", "highway", "place"):
                material = AREA_MATERIAL.get((key, tags.get(key)))
                if material is not None:
                    found["areas"].append((rings, material, (key, tags.get(key)) in WOODED))
                    break
        elif obj.is_way():
            highway = tags.get("highway")
            if highway is None and tags.get("natural") == "tree_row":
                found["tree_rows"].append(_way_points(obj))
                continue
            if highway in DRIVABLE_WIDTH_M:
                width = _parse_metres(tags.get("width"))
                lanes = _parse_metres(tags.get("lanes"))
                if width is None:
                    width = lanes * LANE_WIDTH_M if lanes else DRIVABLE_WIDTH_M[highway]
                found["roads"].append((_way_points(obj), [n.ref for n in obj.nodes], min(width, 30.0)))
            elif highway in PATH_WIDTH_M and not obj.is_closed():
                found["paths"].append((_way_points(obj), PATH_WIDTH_M[highway]))
        elif obj.is_node() and tags.get("natural") == "tree":
            found["trees"].append((obj.location.lon, obj.location.lat))
    return found


def _way_points(way) -> np.ndarray:
    return np.array([(n.lon, n.lat) for n in way.nodes if n.location.valid()], np.float64).reshape(-1, 2)


def _area_rings(area) -> list[tuple[np.ndarray, bool]]:
    """(lon/lat ring, is_hole) for an area's outer rings and their holes."""
    rings = []
    for outer in area.outer_rings():
        rings.append((np.array([(n.lon, n.lat) for n in outer], np.float64), False))
        for inner in area.inner_rings(outer):
            rings.append((np.array([(n.lon, n.lat) for n in inner], np.float64), True))
    return [(r, hole) for r, hole in rings if len(r) >= 3]


def lay_out_osm(canvas: Canvas, rng: np.random.Generator, pbf_path: Path, config) -> tuple[RoadGraph, dict]:
    """Paint an OSM extract into the canvas; returns the road graph and counts of what was used."""
    from .world import WorldError

    if not pbf_path.is_file():
        raise WorldError(f"OSM file {pbf_path} does not exist")
    try:
        data = _read(pbf_path)
    except RuntimeError as exc:  # pyosmium reports unreadable files as RuntimeError
        raise WorldError(f"cannot read OSM file {pbf_path}: {exc}") from exc
    frame = LocalFrame(config.origin_lat, config.origin_lon)
    half = config.size_m / 2.0

    def to_en(lonlat: np.ndarray) -> np.ndarray:
        east, north = frame.to_en(lonlat[:, 1], lonlat[:, 0])
        return np.stack([east, north], axis=1)

    def near(points: np.ndarray, margin: float = 0.0) -> bool:
        return len(points) > 0 and _crosses(points, half + margin)

    buildings = []
    for rings, height_tag, levels_tag in data["buildings"]:
        rings_en = [(to_en(r), hole) for r, hole in rings]
        if any(near(r) for r, hole in rings_en if not hole):
            buildings.append((rings_en, height_tag, levels_tag))
    if not buildings:
        min_lon, min_lat, max_lon, max_lat = osm_bounds(pbf_path)
        raise WorldError(f"no building of {pbf_path.name} lies in the {config.size_m:g} m region around "
                         f"({config.origin_lat:.5f}, {config.origin_lon:.5f}); the extract covers lat {min_lat:.5f}.."
                         f"{max_lat:.5f}, lon {min_lon:.5f}..{max_lon:.5f} (use --origin auto or an origin inside it)")

    # 1. Land use and natural areas, larger ones first so that small ones stay visible on top.
    areas = [(rings, material, wooded) for rings, material, wooded in data["areas"]]
    areas_en = []
    for rings, material, wooded in areas:
        rings_en = [(to_en(r), hole) for r, hole in rings]
        outer = [r for r, hole in rings_en if not hole]
        if any(near(r) for r in outer):
            areas_en.append((rings_en, material, wooded, sum(_polygon_area(r) for r in outer)))
    areas_en.sort(key=lambda a: -a[3])
    for rings_en, material, wooded, area_m2 in areas_en:
        _paint_rings(canvas, rings_en, material)
        if wooded:
            outer = [r for r, hole in rings_en if not hole]
            for point in _points_in(rng, outer, int(min(area_m2, config.size_m ** 2) / 200)):
                canvas.add_tree(point, rng.uniform(2.0, 4.5), rng.uniform(6.0, 14.0),
                                np.clip(TREE_GREEN * rng.uniform(0.75, 1.25), 0, 255))

    # 2. Paths, then sidewalks and carriageways.
    for points, width in data["paths"]:
        line = to_en(points)
        if len(line) >= 2 and near(line, width):
            canvas.paint_road(line, width, Material.SIDEWALK)
    roads = [(to_en(points), refs, width) for points, refs, width in data["roads"] if len(points) >= 2]
    roads = [r for r in roads if near(r[0], r[2])]
    for line, _, width in roads:
        canvas.paint_road(line, width + 2 * SIDEWALK_M, Material.SIDEWALK)
    for line, _, width in roads:
        canvas.paint_road(line, width, Material.ROAD)

    # 3. Buildings.
    with_levels = 0
    for rings_en, height_tag, levels_tag in buildings:
        height = _parse_metres(height_tag)
        levels = _parse_metres(levels_tag)
        if height is None and levels is not None:
            height = levels * config.osm_level_height_m + 1.0
            with_levels += 1
        height = height if height is not None else config.osm_default_building_height_m
        roof, wall = _jitter_colour(rng, ROOF_PALETTE, 6), _jitter_colour(rng, WALL_PALETTE, 8)
        outer = [r for r, hole in rings_en if not hole]
        canvas.add_block(outer, float(height), roof, wall)
        for hole in (r for r, is_hole in rings_en if is_hole):  # courtyards
            canvas.paint_area([hole], Material.PLAZA)

    # 4. Trees.
    trees = [to_en(np.array([p]))[0] for p in data["trees"]]
    for row in data["tree_rows"]:
        line = to_en(row)
        for a, b in zip(line[:-1], line[1:], strict=True):
            steps = max(1, int(np.linalg.norm(b - a) / 8.0))
            trees.extend(a + (b - a) * (i / steps) for i in range(steps))
    for point in trees:
        # A tree mapped on the carriageway (a mapping slip, or a tree over a narrow street) would wall the road off.
        on_road = canvas.material[tuple(int(v) for v in canvas.grid.cell_index(*point)[:2])] == Material.ROAD
        if (np.abs(point) <= half).all() and not on_road:
            canvas.add_tree(point, rng.uniform(2.0, 3.5), rng.uniform(6.0, 12.0),
                            np.clip(TREE_GREEN * rng.uniform(0.8, 1.2), 0, 255))

    graph = _road_graph(roads, half - 15.0)
    if len(graph.edges) == 0:
        raise WorldError(f"no drivable road of {pbf_path.name} lies in the region; drives need at least one")
    stats = {"buildings": len(buildings), "buildings_with_levels": with_levels, "roads": len(roads),
             "areas": len(areas_en), "trees": len(trees)}
    return graph, stats


def _crosses(points: np.ndarray, half: float) -> bool:
    """Whether a shape's bounding box overlaps the region (a long road may cross it with no vertex inside)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return bool((lo <= half).all() and (hi >= -half).all())


def _polygon_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _paint_rings(canvas: Canvas, rings_en, material: Material) -> None:
    canvas.paint_area([r for r, hole in rings_en if not hole], material)


def _points_in(rng: np.random.Generator, polygons: list[np.ndarray], count: int) -> list[np.ndarray]:
    """Random points inside polygons (rejection sampling in their bounding box)."""
    import matplotlib.path as mpath

    points = []
    for polygon in polygons:
        share = max(1, int(count * _polygon_area(polygon) / max(sum(_polygon_area(p) for p in polygons), 1e-9)))
        lo, hi = polygon.min(axis=0), polygon.max(axis=0)
        candidates = rng.uniform(lo, hi, (share * 3, 2))
        inside = mpath.Path(polygon).contains_points(candidates)
        points.extend(candidates[inside][:share])
    return points


def _road_graph(roads, limit: float) -> RoadGraph:
    """Graph over the OSM nodes of drivable roads, keeping the nodes within ``limit`` of the origin."""
    index: dict[int, int] = {}
    nodes, edges, widths = [], [], []
    for line, refs, width in roads:
        if len(refs) != len(line):
            continue
        for i in range(len(line) - 1):
            a, b = line[i], line[i + 1]
            if not ((np.abs(a) <= limit).all() and (np.abs(b) <= limit).all()):
                continue
            ia = index.setdefault(refs[i], len(nodes))
            if ia == len(nodes):
                nodes.append(a)
            ib = index.setdefault(refs[i + 1], len(nodes))
            if ib == len(nodes):
                nodes.append(b)
            if ia != ib and math.dist(a, b) > 0.01:
                edges.append((ia, ib))
                widths.append(width)
    return RoadGraph(nodes=np.asarray(nodes, np.float64).reshape(-1, 2),
                     edges=np.asarray(edges, np.int64).reshape(-1, 2), width_m=np.asarray(widths, np.float64))
