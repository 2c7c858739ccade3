"""The raster grid of a synthetic world, the surface materials painted on it and the road graph drives follow.

The grid is square, north up, centred at the world origin: row 0 is the northern edge, column 0 the western edge, and
the centre of cell ``(row, col)`` lies at ``east = (col + 0.5) * res - half``, ``north = half - (row + 0.5) * res``
with ``half = size_m / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import cv2
import numpy as np

# cv2 polygon filling works in fixed point with this many fractional bits: sub-pixel accurate outlines.
_SHIFT_BITS = 4


class Material(IntEnum):
    """What the top surface of a cell is made of (uint8 in :attr:`World.material`)."""

    GRASS = 0
    ROAD = 1
    SIDEWALK = 2
    BUILDING = 3
    TREE = 4
    WATER = 5
    PARKING = 6
    PLAZA = 7
    CAR = 8
    MARKING = 9  # paint on a road: lane lines, parking bays


@dataclass(frozen=True)
class Grid:
    """A square north-up raster over the local ENU plane, centred at the origin."""

    size_m: float
    resolution_m: float

    @property
    def shape(self) -> tuple[int, int]:
        n = int(round(self.size_m / self.resolution_m))
        return n, n

    @property
    def half(self) -> float:
        return self.size_m / 2.0

    def to_pixel(self, east, north) -> tuple[np.ndarray, np.ndarray]:
        """(east, north) metres -> continuous (col, row) pixel coordinates; integers are cell corners."""
        east = np.asarray(east, dtype=np.float64)
        north = np.asarray(north, dtype=np.float64)
        return (east + self.half) / self.resolution_m, (self.half - north) / self.resolution_m

    def to_en(self, col, row) -> tuple[np.ndarray, np.ndarray]:
        """Continuous (col, row) pixel coordinates -> (east, north) metres; use ``col + 0.5`` for a cell centre."""
        col = np.asarray(col, dtype=np.float64)
        row = np.asarray(row, dtype=np.float64)
        return col * self.resolution_m - self.half, self.half - row * self.resolution_m

    def cell_index(self, east, north) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer (row, col) of the cells holding the points, clipped to the grid, and a mask of points inside it."""
        col_f, row_f = self.to_pixel(east, north)
        rows, cols = self.shape
        col = np.floor(col_f).astype(np.intp)
        row = np.floor(row_f).astype(np.intp)
        inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        return np.clip(row, 0, rows - 1), np.clip(col, 0, cols - 1), inside

    def _fixed_point(self, polygon_en, origin=(0, 0)) -> np.ndarray:
        col, row = self.to_pixel(polygon_en[:, 0], polygon_en[:, 1])
        # cv2 fills pixels whose integer coordinate is inside; shift by half a cell so that cell centres decide.
        pts = np.stack([col - 0.5 - origin[1], row - 0.5 - origin[0]], axis=1) * (1 << _SHIFT_BITS)
        return np.round(pts).astype(np.int32)

    def _cells_of(self, points_en: np.ndarray, margin_m: float, draw) -> tuple[np.ndarray, np.ndarray]:
        """Rasterise on a small patch around the points (fast for small shapes on a big grid) -> (rows, cols)."""
        col, row = self.to_pixel(points_en[:, 0], points_en[:, 1])
        pad = int(np.ceil(margin_m / self.resolution_m)) + 2
        rows, cols = self.shape
        r0, c0 = max(0, int(np.floor(row.min())) - pad), max(0, int(np.floor(col.min())) - pad)
        r1, c1 = min(rows, int(np.ceil(row.max())) + pad), min(cols, int(np.ceil(col.max())) + pad)
        if r0 >= r1 or c0 >= c1:
            return np.zeros(0, np.intp), np.zeros(0, np.intp)
        patch = np.zeros((r1 - r0, c1 - c0), np.uint8)
        draw(patch, (r0, c0))
        rr, cc = np.nonzero(patch)
        return rr + r0, cc + c0

    def polygon_cells(self, polygons_en) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the cells whose centres lie inside any of the polygons ((N, 2) east/north arrays)."""
        polygons_en = [np.asarray(p, dtype=np.float64) for p in polygons_en]
        if not polygons_en:
            return np.zeros(0, np.intp), np.zeros(0, np.intp)

        def draw(patch, origin):
            cv2.fillPoly(patch, [self._fixed_point(p, origin) for p in polygons_en], 1, lineType=cv2.LINE_8,
                         shift=_SHIFT_BITS)
        return self._cells_of(np.concatenate(polygons_en), 0.0, draw)

    def polyline_cells(self, line_en, width_m: float) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the cells under a thick polyline (round caps and joints) ``width_m`` metres wide."""
        line_en = np.asarray(line_en, dtype=np.float64)
        thickness = max(1, int(round(width_m / self.resolution_m)))
        radius = max(1, int(round(width_m / 2.0 / self.resolution_m * (1 << _SHIFT_BITS))))

        def draw(patch, origin):
            pts = self._fixed_point(line_en, origin)
            cv2.polylines(patch, [pts], False, 1, thickness=thickness, lineType=cv2.LINE_8, shift=_SHIFT_BITS)
            for x, y in pts:  # round joints so that crossings and bends have no notches
                cv2.circle(patch, (int(x), int(y)), radius, 1, thickness=-1, lineType=cv2.LINE_8, shift=_SHIFT_BITS)
        return self._cells_of(line_en, width_m, draw)


def rectangle(center_en, length_m: float, width_m: float, yaw: float) -> np.ndarray:
    """Corners (4, 2) of a rectangle whose ``length_m`` side points along ENU ``yaw`` (rad, CCW from east)."""
    c, s = np.cos(yaw), np.sin(yaw)
    half = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64) * [length_m / 2.0, width_m / 2.0]
    rot = np.array([[c, -s], [s, c]])
    return half @ rot.T + np.asarray(center_en, dtype=np.float64)


@dataclass
class RoadGraph:
    """Undirected road network: nodes in (east, north) metres, edges as node index pairs with a carriageway width.

    Curved roads are chains of short edges through nodes of degree 2; drives choose a way only at real junctions.
    """

    nodes: np.ndarray  # (N, 2) float64 east, north
    edges: np.ndarray  # (M, 2) int64 node indices
    width_m: np.ndarray  # (M,) float64

    def neighbours(self) -> list[list[int]]:
        adjacency: list[list[int]] = [[] for _ in range(len(self.nodes))]
        for a, b in self.edges.tolist():
            adjacency[a].append(b)
            adjacency[b].append(a)
        return adjacency

    def to_json(self) -> dict:
        return {"nodes": self.nodes.tolist(), "edges": self.edges.tolist(), "width_m": self.width_m.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> RoadGraph:
        return cls(nodes=np.asarray(data["nodes"], dtype=np.float64).reshape(-1, 2),
                   edges=np.asarray(data["edges"], dtype=np.int64).reshape(-1, 2),
                   width_m=np.asarray(data["width_m"], dtype=np.float64))
