"""The 2.5-D rasters a layout paints into: surface height, material, top colour (seen from above) and wall colour.

Both layouts (procedural and OpenStreetMap) paint through the same few calls, so that the orthophoto and the ground
renderer see the same kinds of things whatever the source of the map.
"""

from __future__ import annotations

import cv2
import numpy as np

from .grid import Grid, Material

# Albedo of each material seen from above, RGB; per-object colours (roofs, cars, canopies) override it.
MATERIAL_RGB = {
    Material.GRASS: (96, 128, 62),
    Material.ROAD: (84, 84, 88),
    Material.SIDEWALK: (158, 154, 146),
    Material.BUILDING: (140, 130, 120),
    Material.TREE: (58, 92, 46),
    Material.WATER: (52, 86, 112),
    Material.PARKING: (104, 102, 100),
    Material.PLAZA: (176, 166, 150),
    Material.CAR: (150, 150, 160),
    Material.MARKING: (222, 222, 214),
}

# How strongly each material's texture varies (std of a low-frequency and a per-pixel noise, in grey levels).
_TEXTURE = {
    Material.GRASS: (14.0, 8.0), Material.ROAD: (5.0, 4.0), Material.SIDEWALK: (6.0, 5.0),
    Material.BUILDING: (3.0, 3.0), Material.TREE: (16.0, 12.0), Material.WATER: (4.0, 2.0),
    Material.PARKING: (6.0, 5.0), Material.PLAZA: (8.0, 6.0), Material.CAR: (0.0, 2.0), Material.MARKING: (0.0, 3.0),
}


class Canvas:
    """Mutable rasters of a world under construction (all on one :class:`Grid`)."""

    def __init__(self, grid: Grid):
        self.grid = grid
        rows, cols = grid.shape
        self.height = np.zeros((rows, cols), np.float32)  # metres above the ground plane
        self.material = np.full((rows, cols), Material.GRASS, np.uint8)
        self.top_rgb = np.empty((rows, cols, 3), np.uint8)
        self.top_rgb[:] = MATERIAL_RGB[Material.GRASS]
        self.facade_rgb = np.zeros((rows, cols, 3), np.uint8)  # wall colour where something stands up

    # -- flat surfaces -------------------------------------------------------------------------------------------------
    def paint_area(self, polygons_en, material: Material, rgb=None) -> None:
        """Flat ground of one material (park, plaza, water, parking) over the polygons; clears what stood there."""
        self._paint_flat(self.grid.polygon_cells(polygons_en), material, rgb)

    def paint_road(self, line_en, width_m: float, material: Material = Material.ROAD, rgb=None) -> None:
        self._paint_flat(self.grid.polyline_cells(line_en, width_m), material, rgb)

    def paint_cells(self, where, material: Material, rgb=None) -> None:
        """Flat ground over cells given as a boolean mask or a (rows, cols) pair of index arrays."""
        self._paint_flat(where, material, rgb)

    def _paint_flat(self, where, material: Material, rgb) -> None:
        mask = where
        self.height[mask] = 0.0
        self.material[mask] = material
        self.top_rgb[mask] = MATERIAL_RGB[material] if rgb is None else rgb

    # -- things that stand up ------------------------------------------------------------------------------------------
    def add_block(self, polygons_en, height_m: float, roof_rgb, wall_rgb, material: Material = Material.BUILDING):
        """A prism (building, car) of flat top at ``height_m`` over the polygons."""
        where = self.grid.polygon_cells(polygons_en)
        self.height[where] = height_m
        self.material[where] = material
        self.top_rgb[where] = roof_rgb
        self.facade_rgb[where] = wall_rgb

    def add_tree(self, center_en, radius_m: float, height_m: float, rgb) -> None:
        """A round canopy, dome shaped (lower at its rim), drawn over whatever is lower beneath it."""
        col_c, row_c = self.grid.to_pixel(center_en[0], center_en[1])
        r_px = radius_m / self.grid.resolution_m
        rows, cols = self.grid.shape
        r0, r1 = int(max(0, np.floor(row_c - r_px))), int(min(rows, np.ceil(row_c + r_px) + 1))
        c0, c1 = int(max(0, np.floor(col_c - r_px))), int(min(cols, np.ceil(col_c + r_px) + 1))
        if r0 >= r1 or c0 >= c1:
            return
        rr, cc = np.mgrid[r0:r1, c0:c1]
        dist2 = ((rr + 0.5 - row_c) ** 2 + (cc + 0.5 - col_c) ** 2) / (r_px * r_px)
        dome = (height_m * (1.0 - 0.35 * dist2)).astype(np.float32)
        patch = self.height[r0:r1, c0:c1]
        inside = (dist2 <= 1.0) & (dome > patch)
        patch[inside] = dome[inside]
        self.material[r0:r1, c0:c1][inside] = Material.TREE
        # Leaves are darker towards the rim: a cheap cue of volume from above and from the side.
        shade = (1.0 - 0.3 * dist2[inside])[:, None]
        colour = (np.asarray(rgb, np.float32)[None, :] * shade).astype(np.uint8)
        self.top_rgb[r0:r1, c0:c1][inside] = colour
        self.facade_rgb[r0:r1, c0:c1][inside] = (colour * 0.8).astype(np.uint8)

    # -- finishing -----------------------------------------------------------------------------------------------------
    def add_texture(self, rng: np.random.Generator) -> None:
        """Low-frequency blotches and per-pixel grain, stronger on grass and canopies than on roofs and paint."""
        rows, cols = self.grid.shape
        low_sigma = np.zeros(len(Material), np.float32)
        grain_sigma = np.zeros(len(Material), np.float32)
        for material, (low, grain) in _TEXTURE.items():
            low_sigma[material], grain_sigma[material] = low, grain
        # Low frequency: noise on a coarse grid, upsampled smoothly (about 4 m features whatever the resolution).
        coarse = max(2, int(round(rows * self.grid.resolution_m / 4.0)))
        low = rng.standard_normal((coarse, coarse, 3), dtype=np.float32)
        low = cv2.resize(low, (cols, rows), interpolation=cv2.INTER_CUBIC)
        low = 0.6 * low + 0.4 * low.mean(axis=2, keepdims=True)  # mostly brightness, a little hue
        grain = rng.standard_normal((rows, cols), dtype=np.float32)[:, :, None]
        noise = low * low_sigma[self.material][:, :, None] + grain * grain_sigma[self.material][:, :, None]
        self.top_rgb[:] = np.clip(self.top_rgb.astype(np.float32) + noise, 0, 255).astype(np.uint8)
