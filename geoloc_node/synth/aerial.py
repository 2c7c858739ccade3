"""The orthophoto of a world (true ortho, north up) and tiles cut from it.

The aerial image is the top colour of every cell under the capture's sun: cast shadows from the height field, a little
optical blur and sensor noise. Ground views sample the same top colour, so the two views agree on what is where.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .grid import Grid

MAX_SHADOW_M = 45.0  # longest shadow traced; taller buildings' shadows are clipped (rare, and cheap to accept)


SHADOW_STEP_M = 1.0  # the march towards the sun tests a point every metre (nothing in a world is thinner)


def cast_shadows(height: np.ndarray, resolution_m: float, sun_azimuth_deg: float,
                 sun_elevation_deg: float) -> np.ndarray:
    """Boolean mask of cells that a raised cell hides from the sun (marching towards the sun every metre)."""
    tan_elev = math.tan(math.radians(sun_elevation_deg))
    # Direction towards the sun in (col, row) cells: compass azimuth, rows grow southwards.
    az = math.radians(sun_azimuth_deg)
    d_col, d_row = math.sin(az), -math.cos(az)
    rows, cols = height.shape
    shadow = np.zeros_like(height, dtype=bool)
    # No shadow is longer than the tallest thing allows (nor than MAX_SHADOW_M).
    reach_m = min(MAX_SHADOW_M, float(height.max()) / tan_elev)
    threshold = height + np.float32(0.05)
    raised = np.empty_like(height)
    blocked = np.empty_like(shadow)
    for step_m in np.arange(SHADOW_STEP_M, reach_m + SHADOW_STEP_M, SHADOW_STEP_M):
        k = step_m / resolution_m
        dc, dr = int(round(d_col * k)), int(round(d_row * k))
        if abs(dc) >= cols or abs(dr) >= rows:
            break
        # Cell (r, c) looks at (r + dr, c + dc): both slices cover the overlap of the grid with its shifted copy.
        dst = (slice(max(0, -dr), rows - max(0, dr)), slice(max(0, -dc), cols - max(0, dc)))
        src = (slice(max(0, dr), rows - max(0, -dr)), slice(max(0, dc), cols - max(0, -dc)))
        h, w = rows - abs(dr), cols - abs(dc)
        np.subtract(height[src], np.float32(step_m * tan_elev), out=raised[:h, :w])
        np.greater(raised[:h, :w], threshold[dst], out=blocked[:h, :w])
        shadow[dst] |= blocked[:h, :w]
    return shadow


def make_orthophoto(top_rgb: np.ndarray, height: np.ndarray, grid: Grid, rng: np.random.Generator,
                    sun_azimuth_deg: float, sun_elevation_deg: float, shadows: bool, noise_std: float) -> np.ndarray:
    """uint8 (H, W, 3) aerial image: lit top colour, shadows, slight blur, sensor noise."""
    image = top_rgb.astype(np.float32) * np.float32(1.05)
    if shadows:
        shadow = cast_shadows(height, grid.resolution_m, sun_azimuth_deg, sun_elevation_deg)
        # Shadows are bluish-dark: only sky light reaches them.
        image[shadow] *= np.array([0.50, 0.54, 0.62], np.float32)
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=0.6)
    if noise_std > 0:
        image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise_std)
    return np.clip(image, 0, 255).astype(np.uint8)


def cut_tile(aerial_rgb: np.ndarray, grid: Grid, east: float, north: float, size_m: float, out_px: int,
             heading_deg: float = 0.0) -> np.ndarray:
    """A square ``out_px`` tile of ``size_m`` metres centred at (east, north), north up unless ``heading_deg`` is set
    (then the tile is turned so that the heading points up). Outside the world is black."""
    col_c, row_c = (float(v) for v in grid.to_pixel(east, north))
    scale = size_m / grid.resolution_m / out_px  # source pixels per tile pixel
    # Work on a padded crop around the tile (its diagonal fits) so that blurring and warping stay cheap.
    reach = int(math.ceil(size_m / grid.resolution_m * 0.75)) + 4
    r0, c0 = int(math.floor(row_c)) - reach, int(math.floor(col_c)) - reach
    crop = _crop_padded(aerial_rgb, r0, r0 + 2 * reach, c0, c0 + 2 * reach)
    if scale > 1.0:  # shrinking: low-pass first so that the tile does not alias
        crop = cv2.GaussianBlur(crop, (0, 0), sigmaX=0.45 * scale)
    theta = math.radians(heading_deg)
    c, s = math.cos(theta) * scale, math.sin(theta) * scale
    # Tile pixel (x, y) -> crop pixel: cell centres are integers in OpenCV and +0.5 in Grid.to_pixel.
    h = (out_px - 1) / 2.0
    m = np.array([[c, -s, col_c - 0.5 - c0 - (c * h - s * h)],
                  [s, c, row_c - 0.5 - r0 - (s * h + c * h)]])
    return cv2.warpAffine(crop, m, (out_px, out_px), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def _crop_padded(image: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    out = np.zeros((r1 - r0, c1 - c0) + image.shape[2:], image.dtype)
    rows, cols = image.shape[:2]
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
    if sr0 < sr1 and sc0 < sc1:
        out[sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0] = image[sr0:sr1, sc0:sc1]
    return out
