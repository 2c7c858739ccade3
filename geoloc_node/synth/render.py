"""Ground views of a world: 360 degree panoramas and pinhole cameras, ray cast over the 2.5-D height field.

How it works (one column at a time, all columns at once in numpy): a level camera sees, in each image column, the
world along one compass azimuth. Along that azimuth we sample the height field at ``K`` distances (dense near the
camera, sparser far away), turn each sample into the tangent of the elevation angle at which its top is seen, and keep
the running maximum: a pixel whose ray has elevation tangent ``t`` sees the first sample whose running maximum reaches
``t`` (everything before it is lower than the ray). One ``searchsorted`` finds that sample for every pixel. The hit is a
wall (the ray struck the side of a raised cell) or a top (the ray came down onto the cell's flat top, which for the
ground and roofs is sampled at the exact intersection so that the ground matches the orthophoto).

Conventions:

* panorama (``render_panorama``): equirectangular, ``size=(H, W)``; column ``j`` looks at compass azimuth
  ``heading_deg + 360 * j / W`` (column 0 at the heading, sweeping clockwise; ``heading_deg=0`` gives a
  north-aligned panorama with north at column 0, ``heading_deg=180`` one with north in the centre column, which is
  what the pairs export writes); rows span elevations ``+180*H/W`` (top) to ``-180*H/W`` degrees (equal angular
  steps in both directions: 128x512 covers +-45 degrees).
* pinhole (``render_pinhole``): a level camera looking at ``heading_deg``; square pixels, principal point at the image
  centre, focal length ``(W/2) / tan(hfov/2)`` (see :func:`pinhole_intrinsics`).
* camera height ``camera_height_m`` above the ground plane (default 2.0 m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from .aerial import cut_tile
from .canvas import MATERIAL_RGB
from .grid import Material

CAMERA_HEIGHT_M = 2.0
MAX_RANGE_M = 320.0  # farther than this the ray sees sky or the hazy horizon
NEAR_STEP_M = 0.3  # ray-march step near the camera ...
FAR_STEP_FRACTION = 0.025  # ... then 2.5% of the distance: 2.5 m at 100 m, finer than a building or a tree
FLOOR_HEIGHT_M = 3.2  # window rows on facades
WINDOW_SPACING_M = 3.0
CAR_SEARCH_RADIUS_M = 70.0  # random parked cars are placed within this distance of the camera
CAR_VISIBLE_M = 100.0  # cars farther than this are a pixel or two: not drawn
BILINEAR_WITHIN_M = 12.0  # ground closer than this is interpolated between cells

_WINDOW_RGB = np.array([52, 62, 78], np.float32)
_CAR_GLASS_RGB = np.array([38, 44, 52], np.float32)


@dataclass
class RenderStyle:
    """Lighting and appearance of a rendering; :func:`random_style` draws one for domain randomisation."""

    sun_azimuth_deg: float = 150.0
    sun_elevation_deg: float = 45.0
    ambient: float = 0.62  # light on surfaces the sun does not face
    direct: float = 0.45  # extra light on surfaces facing the sun
    sky_horizon_rgb: tuple[float, float, float] = (206, 218, 230)
    sky_zenith_rgb: tuple[float, float, float] = (96, 144, 204)
    haze_m: float = 900.0  # colours fade towards the horizon colour with distance (1/e at this distance)
    gain_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)  # white balance / colour cast
    gamma: float = 1.0
    noise_std: float = 1.5  # sensor noise, grey levels
    cloud_cover: float = 0.25
    cloud_seed: int = 0
    # Extra cars (not in the aerial image): rows of east, north, yaw (ENU rad), length, width, height; and RGB colours.
    cars: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    car_rgb: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))


def random_style(rng: np.random.Generator, world=None, east: float = 0.0, north: float = 0.0,
                 max_cars: int = 12) -> RenderStyle:
    """Random lighting, sky, colour cast, noise and (when a world is given) parked cars on roads near the camera."""
    cars, car_rgb = np.zeros((0, 6)), np.zeros((0, 3))
    if world is not None and max_cars > 0:
        cars, car_rgb = _random_cars(rng, world, east, north, int(rng.integers(0, max_cars + 1)))
    horizon = np.array([206, 218, 230]) * rng.uniform(0.85, 1.1) + rng.normal(0, 8, 3)
    zenith = np.array([96, 144, 204]) * rng.uniform(0.7, 1.15) + rng.normal(0, 10, 3)
    return RenderStyle(
        sun_azimuth_deg=float(rng.uniform(0, 360)), sun_elevation_deg=float(rng.uniform(15, 70)),
        ambient=float(rng.uniform(0.45, 0.75)), direct=float(rng.uniform(0.2, 0.6)),
        sky_horizon_rgb=tuple(np.clip(horizon, 0, 255)), sky_zenith_rgb=tuple(np.clip(zenith, 0, 255)),
        haze_m=float(rng.uniform(400, 1500)), gain_rgb=tuple(rng.uniform(0.85, 1.15, 3)),
        gamma=float(rng.uniform(0.8, 1.25)), noise_std=float(rng.uniform(0.5, 6.0)),
        cloud_cover=float(rng.uniform(0.0, 0.8)), cloud_seed=int(rng.integers(1 << 31)), cars=cars, car_rgb=car_rgb)


def _random_cars(rng: np.random.Generator, world, east: float, north: float, count: int):
    """Cars on road cells near the camera, parallel to the nearest road, never on top of the camera."""
    if count == 0 or len(world.road_graph.edges) == 0:
        return np.zeros((0, 6)), np.zeros((0, 3))
    tries = count * 8
    radius = CAR_SEARCH_RADIUS_M * np.sqrt(rng.random(tries))
    angle = rng.uniform(0, 2 * np.pi, tries)
    pe, pn = east + radius * np.cos(angle), north + radius * np.sin(angle)
    on_road = (world.sample(pe, pn)["material"] == Material.ROAD) & (radius > 4.0)
    pe, pn = pe[on_road][:count], pn[on_road][:count]
    nodes, edges = world.road_graph.nodes, world.road_graph.edges
    a, b = nodes[edges[:, 0]], nodes[edges[:, 1]]
    ab = b - a
    points = np.stack([pe, pn], axis=1)
    # Distance from every car to every road segment; a car takes the direction of the nearest one.
    t = np.clip(np.einsum("pmk,mk->pm", points[:, None, :] - a[None], ab) / np.maximum((ab * ab).sum(1), 1e-9), 0, 1)
    closest = a[None] + t[..., None] * ab[None]
    nearest = np.argmin(((points[:, None, :] - closest) ** 2).sum(-1), axis=1) if len(points) else np.zeros(0, int)
    yaw = np.arctan2(ab[nearest, 1], ab[nearest, 0])
    n = len(points)
    cars = np.stack([pe, pn, yaw, rng.uniform(3.9, 4.9, n), rng.uniform(1.7, 1.95, n), rng.uniform(1.4, 1.9, n)], 1)
    palette = np.array([(200, 200, 205), (30, 30, 34), (150, 20, 24), (40, 60, 130), (120, 124, 128),
                        (230, 230, 225), (60, 90, 60), (200, 160, 40)], np.float64)
    return cars, palette[rng.integers(len(palette), size=n)] * rng.uniform(0.85, 1.1, (n, 1))


# -- ray geometry ------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _sample_distances() -> np.ndarray:
    d = [0.3]
    while d[-1] < MAX_RANGE_M:
        d.append(d[-1] + max(NEAR_STEP_M, FAR_STEP_FRACTION * d[-1]))
    return np.asarray(d, np.float64)


@dataclass(frozen=True)
class _Rays:
    """Per-pixel ray geometry of one camera, precomputed once, laid out column-major (pixel p = column * H + row)."""

    rows: int
    cols: int
    azimuth_offset: np.ndarray  # (W,) degrees clockwise from the heading, one per column
    tan_elev: np.ndarray  # (W * H,) tangent of each pixel's elevation
    pixel_column: np.ndarray  # (W * H,) column of each pixel
    queries: np.ndarray  # (W * H,) searchsorted keys: tan_elev shifted into its column's band (see _cast)


_BAND = 4e3  # each column's running maxima live in [column * _BAND - 1e3, column * _BAND + 1e3]


def _make_rays(azimuth_offset: np.ndarray, tan_elev_hw: np.ndarray) -> _Rays:
    rows, cols = tan_elev_hw.shape
    tan_cm = np.ascontiguousarray(tan_elev_hw.T).ravel()
    pixel_column = np.repeat(np.arange(cols), rows)
    return _Rays(rows, cols, azimuth_offset, tan_cm, pixel_column, np.clip(tan_cm, -1e3, 1e3) + pixel_column * _BAND)


@lru_cache(maxsize=8)
def _panorama_rays(rows: int, cols: int) -> _Rays:
    azimuth_offset = np.arange(cols) * (360.0 / cols)
    v_max = 180.0 * rows / cols  # same angle per pixel as horizontally: 128x512 spans +-45 degrees
    elevation = v_max - (np.arange(rows) + 0.5) * (2 * v_max / rows)
    return _make_rays(azimuth_offset, np.repeat(np.tan(np.radians(elevation))[:, None], cols, axis=1))


def pinhole_intrinsics(hfov_deg: float, size: tuple[int, int]) -> np.ndarray:
    """3x3 camera matrix K of :func:`render_pinhole` (square pixels, principal point at the centre)."""
    rows, cols = size
    f = (cols / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, cols / 2.0], [0.0, f, rows / 2.0], [0.0, 0.0, 1.0]])


@lru_cache(maxsize=8)
def _pinhole_rays(rows: int, cols: int, hfov_deg: float) -> _Rays:
    k = pinhole_intrinsics(hfov_deg, (rows, cols))
    x = (np.arange(cols) + 0.5 - k[0, 2]) / k[0, 0]  # right
    y = (k[1, 2] - np.arange(rows) - 0.5) / k[1, 1]  # up
    # A level camera: a pixel column is one azimuth; elevation falls off sideways as 1/sqrt(1 + x^2).
    return _make_rays(np.degrees(np.arctan(x)), y[:, None] / np.sqrt(1.0 + x[None, :] ** 2))


# -- the renderer ------------------------------------------------------------------------------------------------------
def render_panorama(world, east: float, north: float, heading_deg: float, size=(128, 512), rng=None,
                    randomize: bool = False, style: RenderStyle | None = None,
                    camera_height_m: float = CAMERA_HEIGHT_M) -> np.ndarray:
    """uint8 (H, W, 3) RGB equirectangular panorama at (east, north); column 0 looks at ``heading_deg``, clockwise.

    ``randomize=True`` draws lighting, colour cast, noise and parked cars from ``rng`` (unless ``style`` is given).
    """
    rays = _panorama_rays(int(size[0]), int(size[1]))
    style = _resolve_style(world, east, north, rng, randomize, style)
    return _cast(world, east, north, heading_deg, rays, style, camera_height_m)


def render_pinhole(world, east: float, north: float, heading_deg: float, hfov_deg: float = 90.0, size=(240, 320),
                   rng=None, randomize: bool = False, style: RenderStyle | None = None,
                   camera_height_m: float = CAMERA_HEIGHT_M) -> np.ndarray:
    """uint8 (H, W, 3) RGB image of a level pinhole camera looking at ``heading_deg`` (compass)."""
    if not (1.0 <= hfov_deg <= 170.0):
        raise ValueError(f"hfov_deg={hfov_deg} is out of range [1, 170]")
    rays = _pinhole_rays(int(size[0]), int(size[1]), float(hfov_deg))
    style = _resolve_style(world, east, north, rng, randomize, style)
    return _cast(world, east, north, heading_deg, rays, style, camera_height_m)


def aerial_tile(world, east: float, north: float, size_m: float = 50.0, out_px: int = 256,
                heading_deg: float = 0.0) -> np.ndarray:
    """uint8 (out_px, out_px, 3) RGB tile of the orthophoto centred at (east, north), north up (see ``cut_tile``)."""
    return cut_tile(world.aerial_rgb, world.grid, east, north, size_m, out_px, heading_deg)


def _resolve_style(world, east, north, rng, randomize, style) -> RenderStyle:
    if style is not None:
        return style
    if randomize:
        return random_style(rng if rng is not None else np.random.default_rng(), world, east, north)
    return RenderStyle()


@dataclass
class _Samples:
    """The height field sampled along every column's ray: arrays (W, K) unless noted."""

    east: float
    north: float
    azimuth_deg: np.ndarray  # (W,)
    dir_e: np.ndarray  # (W,) unit direction of each column's ray
    dir_n: np.ndarray
    d: np.ndarray  # (K,) distances of the samples
    flat: np.ndarray  # flat cell index of each sample (0 outside the world)
    inside: np.ndarray  # whether the sample lies in the world
    height: np.ndarray  # float32 height of the top surface (cars included)
    car: np.ndarray  # index of the style's car at the sample, or -1


def _cast(world, east: float, north: float, heading_deg: float, rays: _Rays, style: RenderStyle,
          cam_h: float) -> np.ndarray:
    samples = _sample_rays(world, east, north, heading_deg + rays.azimuth_offset, style, cam_h)
    sample, hit, top = _first_hits(samples, rays, cam_h)
    image = np.empty((rays.cols * rays.rows, 3), np.float32)
    ti = np.flatnonzero(top)
    image[ti] = _shade_tops(world, samples, rays, style, cam_h, ti, sample[ti])
    wi = np.flatnonzero(hit & ~top)
    image[wi] = _shade_walls(world, samples, rays, style, cam_h, wi, sample[wi])
    # The sky where nothing was hit (below the horizon that is far, hazy ground: the horizon colour).
    si = np.flatnonzero(~hit)
    if len(si):
        image[si] = _sky(style, rays.tan_elev[si], samples.azimuth_deg[rays.pixel_column[si]])
    return _camera(image.reshape(rays.cols, rays.rows, 3), style)


def _sample_rays(world, east: float, north: float, azimuth_deg: np.ndarray, style: RenderStyle,
                 cam_h: float) -> _Samples:
    grid = world.grid
    n_rows, n_cols = grid.shape
    d = _sample_distances()
    az = np.radians(azimuth_deg)
    dir_e, dir_n = np.sin(az), np.cos(az)
    pe = east + dir_e[:, None] * d[None, :]
    pn = north + dir_n[:, None] * d[None, :]
    col = ((pe + grid.half) * (1.0 / grid.resolution_m)).astype(np.intp)  # truncation: negatives are out anyway
    row = ((grid.half - pn) * (1.0 / grid.resolution_m)).astype(np.intp)
    inside = (col >= 0) & (col < n_cols) & (row >= 0) & (row < n_rows) & (pe > -grid.half) & (pn < grid.half)
    flat = np.where(inside, row * n_cols + col, 0)
    height = world.height.ravel()[flat]
    height[~inside] = 0.0
    # A camera under a tree's canopy (2.5-D trees stand on the ground) sees out from under it: the run of raised
    # samples the ray starts in is left out.
    height[np.logical_and.accumulate(height > cam_h - 0.1, axis=1)] = 0.0
    car = _place_cars(style, east, north, az, d, pe, pn, height)
    return _Samples(east, north, azimuth_deg, dir_e, dir_n, d, flat, inside, height, car)


def _first_hits(samples: _Samples, rays: _Rays, cam_h: float):
    """Per pixel: flat index of the sample its ray hits, whether it hits anything, and whether that is a top."""
    d = samples.d
    n_samples = len(d)
    # Per column, the running maximum of the tangent at which each sample's top is seen; shifted into the column's
    # own band so that one searchsorted over all columns finds, per pixel, the first sample reaching its ray.
    tan_top = (samples.height - np.float32(cam_h)) / d[None, :].astype(np.float32)
    running = np.maximum.accumulate(np.clip(tan_top, -1e3, 1e3), axis=1).astype(np.float64)
    running += (np.arange(rays.cols) * _BAND)[:, None]
    k = np.searchsorted(running.ravel(), rays.queries) - rays.pixel_column * n_samples
    hit = k < n_samples
    k = np.minimum(k, n_samples - 1)
    sample = rays.pixel_column * n_samples + k
    t = rays.tan_elev
    d_before = np.concatenate([[0.0], d[:-1]])[k]
    # A top hit: the ray comes down to the sample's top height after the previous sample (else it struck a wall).
    top = hit & (t < 0) & (cam_h - samples.height.ravel()[sample] >= -t * d_before)
    return sample, hit, top


def _shade_tops(world, samples: _Samples, rays: _Rays, style: RenderStyle, cam_h: float, pixels: np.ndarray,
                sample: np.ndarray) -> np.ndarray:
    """Tops (ground, roofs, canopies seen from above) at the exact intersection, coloured like the aerial image."""
    column = rays.pixel_column[pixels]
    dt = (cam_h - samples.height.ravel()[sample]) / -rays.tan_elev[pixels]
    te, tn = samples.east + samples.dir_e[column] * dt, samples.north + samples.dir_n[column] * dt
    # Near the camera one cell spans several pixels: interpolate there; farther, the nearest cell is as good.
    near = dt < BILINEAR_WITHIN_M
    colour = np.empty((len(pixels), 3), np.float32)
    colour[near] = _bilinear_top(world, te[near], tn[near])
    row, col, inside = world.grid.cell_index(te[~near], tn[~near])
    far_colour = world.top_rgb[row, col].astype(np.float32)
    far_colour[~inside] = MATERIAL_RGB[Material.GRASS]  # beyond the world's edge: a meadow
    colour[~near] = far_colour
    car = samples.car.ravel()[sample]
    if (car >= 0).any():
        colour[car >= 0] = style.car_rgb[car[car >= 0]]
    light = style.ambient + style.direct * math.sin(math.radians(style.sun_elevation_deg))
    return _hazy(colour * np.float32(light), dt, np.asarray(style.sky_horizon_rgb, np.float32), style.haze_m)


def _shade_walls(world, samples: _Samples, rays: _Rays, style: RenderStyle, cam_h: float, pixels: np.ndarray,
                 sample: np.ndarray) -> np.ndarray:
    """Walls: facade colour, lit by the sun according to the wall's normal, with windows on buildings."""
    column = rays.pixel_column[pixels]
    dw = samples.d[sample - column * len(samples.d)]
    z = cam_h + dw * rays.tan_elev[pixels]
    cell = samples.flat.ravel()[sample]
    colour = world.facade_rgb.reshape(-1, 3)[cell].astype(np.float32)
    material = np.where(samples.inside.ravel()[sample], world.material.ravel()[cell], Material.GRASS)
    dir_e, dir_n = samples.dir_e[column], samples.dir_n[column]
    normal_e, normal_n = _wall_normals(world.height, cell, world.grid.shape[1], -dir_e, -dir_n)
    sun_az, sun_el = math.radians(style.sun_azimuth_deg), math.radians(style.sun_elevation_deg)
    facing = np.maximum(0.0, normal_e * math.sin(sun_az) + normal_n * math.cos(sun_az)) * math.cos(sun_el)
    light = (style.ambient + style.direct * facing).astype(np.float32)
    # Windows: a lattice along the wall (tangent coordinate) and up (floors), not at the foot or top of the wall.
    along = (samples.east + dir_e * dw) * -normal_n + (samples.north + dir_n * dw) * normal_e
    along_mod = np.mod(along, WINDOW_SPACING_M)
    floor_z = np.mod(z, FLOOR_HEIGHT_M)
    is_window = ((material == Material.BUILDING) & (z > 1.0) & (z < samples.height.ravel()[sample] - 0.8)
                 & (floor_z > 1.0) & (floor_z < 2.4) & (along_mod > 0.7) & (along_mod < 2.3))
    colour[is_window] = _WINDOW_RGB
    car = samples.car.ravel()[sample]
    if (car >= 0).any():
        sel = car >= 0
        colour[sel] = style.car_rgb[car[sel]]
        glass = sel & (z > 1.0) & (z < style.cars[np.maximum(car, 0), 5] - 0.1)
        colour[glass] = _CAR_GLASS_RGB
    return _hazy(colour * light[:, None], dw, np.asarray(style.sky_horizon_rgb, np.float32), style.haze_m)


def _camera(image_cm: np.ndarray, style: RenderStyle) -> np.ndarray:
    """Sensor noise, then colour cast and gamma through one lookup table; column-major (W, H, 3) -> (H, W, 3)."""
    if style.noise_std > 0:
        image_cm += _noise_field(image_cm.shape, style.cloud_seed) * np.float32(style.noise_std)
    out = np.ascontiguousarray(np.clip(image_cm, 0, 255).astype(np.uint8).transpose(1, 0, 2))
    return cv2.LUT(out, _camera_lut(tuple(style.gain_rgb), style.gamma))


def _bilinear_top(world, east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """Top colour at points, bilinear between cell centres (near the camera a cell spans many pixels)."""
    grid = world.grid
    n_rows, n_cols = grid.shape
    x = (east + grid.half) / grid.resolution_m - 0.5
    y = (grid.half - north) / grid.resolution_m - 0.5
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0).astype(np.float32)[:, None]
    fy = (y - y0).astype(np.float32)[:, None]
    inside = (x0 >= 0) & (x0 < n_cols - 1) & (y0 >= 0) & (y0 < n_rows - 1)
    base = np.where(inside, y0 * n_cols + x0, 0).astype(np.intp)
    top = world.top_rgb.reshape(-1, 3)
    c00, c01 = top[base].astype(np.float32), top[base + 1].astype(np.float32)
    c10, c11 = top[base + n_cols].astype(np.float32), top[base + n_cols + 1].astype(np.float32)
    colour = (c00 + (c01 - c00) * fx) * (1 - fy) + (c10 + (c11 - c10) * fx) * fy
    colour[~inside] = MATERIAL_RGB[Material.GRASS]  # beyond the world's edge: a meadow
    return colour


def _hazy(colour: np.ndarray, distance: np.ndarray, horizon: np.ndarray, haze_m: float) -> np.ndarray:
    """Fade colours towards the horizon colour with distance (aerial perspective)."""
    fade = (1.0 - np.exp(-distance / haze_m)).astype(np.float32)[:, None]
    return colour + (horizon - colour) * fade


@lru_cache(maxsize=8)
def _noise_field_base(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(12345).standard_normal((shape[0] * 2, shape[1] * 2) + shape[2:], dtype=np.float32)


def _noise_field(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Unit Gaussian noise of ``shape``: a window of a fixed field at a seed-given offset (cheap, reproducible)."""
    base = _noise_field_base(tuple(shape))
    r, c = seed % shape[0], (seed // shape[0]) % shape[1]
    return base[r:r + shape[0], c:c + shape[1]]


@lru_cache(maxsize=64)
def _camera_lut(gain_rgb: tuple[float, float, float], gamma: float) -> np.ndarray:
    levels = np.arange(256, dtype=np.float64)[:, None] * np.asarray(gain_rgb, np.float64)[None, :]
    lut = 255.0 * (np.clip(levels, 0, 255) / 255.0) ** (1.0 / gamma)
    return np.clip(np.round(lut), 0, 255).astype(np.uint8).reshape(1, 256, 3)


def _place_cars(style: RenderStyle, east, north, az, d, pe, pn, height) -> np.ndarray:
    """Raise the samples that fall inside a style's cars to the car's height; returns car index per sample or -1."""
    car = np.full(pe.shape, -1, np.int32)
    if len(style.cars) == 0:
        return car
    distances = np.hypot(style.cars[:, 0] - east, style.cars[:, 1] - north)
    for i in np.nonzero(distances < CAR_VISIBLE_M)[0]:
        ce, cn, yaw, length, width, car_h = style.cars[i]
        dist = float(distances[i])
        reach = math.hypot(length, width) / 2
        if dist < reach:  # the camera is inside this car: leave it out rather than fill the view
            continue
        # Only the columns that see the car and the samples at its distance need testing.
        bearing = math.atan2(ce - east, cn - north)
        spread = math.asin(min(1.0, reach / dist))
        delta = np.abs((az - bearing + np.pi) % (2 * np.pi) - np.pi)
        cols = np.nonzero(delta <= spread + 1e-3)[0]
        k0, k1 = np.searchsorted(d, [dist - reach, dist + reach])
        if len(cols) == 0 or k0 >= k1:
            continue
        u = (pe[cols, k0:k1] - ce) * math.cos(yaw) + (pn[cols, k0:k1] - cn) * math.sin(yaw)
        v = -(pe[cols, k0:k1] - ce) * math.sin(yaw) + (pn[cols, k0:k1] - cn) * math.cos(yaw)
        inside = (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2) & (height[cols, k0:k1] < car_h)
        block = height[cols, k0:k1]
        block[inside] = car_h
        height[cols, k0:k1] = block
        block_car = car[cols, k0:k1]
        block_car[inside] = i
        car[cols, k0:k1] = block_car
    return car


def _wall_normals(height: np.ndarray, flat: np.ndarray, n_cols: int, fallback_e, fallback_n):
    """Outward horizontal normal of the wall at cells (from the height gradient); facing the camera if flat."""
    h = height.ravel()
    size = h.size
    east_h = h[np.minimum(flat + 1, size - 1)]
    west_h = h[np.maximum(flat - 1, 0)]
    south_h = h[np.minimum(flat + n_cols, size - 1)]
    north_h = h[np.maximum(flat - n_cols, 0)]
    # The outward normal points down the slope: towards lower neighbours.
    ge = -(east_h - west_h).astype(np.float64)
    gn = -(north_h - south_h).astype(np.float64)
    norm = np.hypot(ge, gn)
    flat_wall = norm < 1e-6
    with np.errstate(invalid="ignore", divide="ignore"):
        ne = np.where(flat_wall, fallback_e, ge / norm)
        nn = np.where(flat_wall, fallback_n, gn / norm)
    return ne, nn


@lru_cache(maxsize=16)
def _cloud_texture(seed: int) -> np.ndarray:
    """A seamless-in-azimuth cloud density field (elevation 0..90 deg x azimuth 0..360 deg), values 0..1."""
    rng = np.random.default_rng(seed)
    base = rng.random((8, 32)).astype(np.float32)
    detail = rng.random((16, 64)).astype(np.float32)
    tex = (cv2.resize(np.hstack([base, base[:, :4]]), (288, 64), interpolation=cv2.INTER_CUBIC)[:, :256] * 0.7
           + cv2.resize(np.hstack([detail, detail[:, :4]]), (272, 64), interpolation=cv2.INTER_CUBIC)[:, :256] * 0.3)
    return np.clip(tex, 0, 1)


def _sky(style: RenderStyle, t: np.ndarray, azimuth_deg: np.ndarray) -> np.ndarray:
    elevation = np.degrees(np.arctan(t))
    f = np.clip(elevation / 60.0, 0.0, 1.0)[:, None].astype(np.float32)
    horizon = np.asarray(style.sky_horizon_rgb, np.float32)
    zenith = np.asarray(style.sky_zenith_rgb, np.float32)
    colour = horizon * (1.0 - f) + zenith * f
    if style.cloud_cover > 0:
        tex = _cloud_texture(style.cloud_seed)
        r = np.clip((np.maximum(elevation, 0) / 90.0 * 63).astype(int), 0, 63)
        c = (np.mod(azimuth_deg, 360.0) / 360.0 * 255).astype(int)
        density = np.clip((tex[r, c] - (1.0 - style.cloud_cover)) * 3.0, 0, 1)[:, None]
        density *= (elevation > 0)[:, None]
        colour = colour * (1 - density) + np.float32(235.0) * density
    return colour
