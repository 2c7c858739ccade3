"""Image preprocessing shared by training and every runtime backend (numpy + OpenCV, no torch).

One implementation serves both sides so that a model sees at run time exactly what it saw in training.

Conventions (see docs/model.md):

* images are uint8 RGB, ``H x W x 3`` or ``B x H x W x 3``; grayscale (``H x W`` or one channel) is replicated to three
  channels and an alpha channel is dropped; anything else is refused with a message saying what was given;
* a **north-aligned panorama** has its column ``j`` looking at compass azimuth ``360 * (j + 0.5) / W`` degrees (left
  edge = north, azimuth growing to the right, i.e. clockwise seen from above); :func:`align_panorama` rolls a panorama
  taken with a known vehicle heading into that convention;
* an **aerial tile** is north-up (row 0 = north edge), square, centred on the place it describes;
* the **polar transform** maps an aerial tile to a panorama-like image with the same column convention: column ``j`` is
  azimuth ``360 * (j + 0.5) / W`` from the tile centre, row 0 is the tile's rim (far away, the horizon of a panorama)
  and the last row its centre (under the camera);
* the **ground-plane projection** (:func:`ground_plane_maps`) draws an aerial tile *as the ground camera would see it
  if the world were flat*: every pixel of the camera's own geometry (an equirectangular panorama spanning
  ``+-180 * H / W`` degrees of elevation, or a level pinhole camera of known field of view and heading) takes the
  aerial pixel where its ray meets the ground plane ``camera_height_m`` below the camera (rows below the horizon) or a
  "roof plane" ``ceiling_m`` above it (rows above), at most half a tile away. The road, pavement, grass and water under
  and around the vehicle then land on the same pixels in both views, and the foot of a facade on the same row as the
  edge of its roof; the networks only have to learn what the flat-world assumption gets wrong.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import GeolocError


class ImageInputError(GeolocError, ValueError):
    """An image given to an encoder has a shape, channel count or dtype that cannot be used."""


def as_rgb_batch(images, what: str = "images") -> np.ndarray:
    """Validate and convert images to a uint8 ``B x H x W x 3`` array (a view where possible).

    Accepts a single image (``H x W``, ``H x W x 1|3|4``), a batch (``B x H x W x 1|3|4``) or a list of single images of
    any sizes (returned as a list-backed object array is avoided: sizes must then agree after :func:`resize_batch`).
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ImageInputError(f"{what}: empty list of images")
        return [as_rgb_batch(im, what)[0] for im in images]
    a = np.asarray(images)
    if a.dtype != np.uint8:
        if a.dtype == np.bool_ or a.dtype.kind not in "uif":
            raise ImageInputError(f"{what}: dtype {a.dtype} is not an image; give uint8 RGB (0-255)")
        raise ImageInputError(f"{what}: dtype {a.dtype}; encoders take uint8 RGB (0-255). Convert with "
                              "np.clip(x * 255, 0, 255).astype(np.uint8) for [0, 1] floats")
    if a.ndim == 2:  # one grayscale image
        a = a[None, :, :, None]
    elif a.ndim == 3:
        if a.shape[-1] in (1, 3, 4):
            a = a[None]  # one H x W x C image
        else:
            raise ImageInputError(f"{what}: shape {a.shape} is ambiguous; give H x W x 3 or B x H x W x 3 (RGB, "
                                  "channels last)")
    elif a.ndim != 4:
        raise ImageInputError(f"{what}: shape {a.shape}; give H x W x 3 or B x H x W x 3 uint8 RGB")
    c = a.shape[-1]
    if c == 1:
        a = np.repeat(a, 3, axis=-1)
    elif c == 4:
        a = a[..., :3]
    elif c != 3:
        raise ImageInputError(f"{what}: {c} channels; give RGB (3), RGBA (4, alpha dropped) or grayscale (1)")
    if a.shape[1] < 2 or a.shape[2] < 2:
        raise ImageInputError(f"{what}: images of {a.shape[1]} x {a.shape[2]} px are too small")
    return a


def resize_batch(images, hw: tuple[int, int]) -> np.ndarray:
    """Resize each image to ``hw`` (area interpolation when shrinking, linear when enlarging): uint8 B x H x W x 3."""
    h, w = int(hw[0]), int(hw[1])
    seq = images if isinstance(images, list) else list(images)
    out = np.empty((len(seq), h, w, 3), np.uint8)
    for i, im in enumerate(seq):
        if im.shape[0] == h and im.shape[1] == w:
            out[i] = im
        else:
            shrink = im.shape[0] > h or im.shape[1] > w
            out[i] = cv2.resize(np.ascontiguousarray(im), (w, h),
                                interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out


def align_panorama(pano: np.ndarray, heading_deg: float, col0_offset_deg: float = 0.0) -> np.ndarray:
    """Roll a panorama taken with vehicle heading ``heading_deg`` so that it is north-aligned.

    ``col0_offset_deg`` is the azimuth, relative to the vehicle heading, that the *left edge* of the input looks at
    (e.g. -180 for a panorama whose centre column looks straight ahead). Works on H x W x C arrays.
    """
    w = pano.shape[1]
    az_left = (heading_deg + col0_offset_deg) % 360.0  # compass azimuth of the input's left edge
    shift = int(round(az_left / 360.0 * w)) % w
    return np.roll(pano, shift, axis=1)


@functools.lru_cache(maxsize=16)
def polar_maps(src_px: int, out_h: int, out_w: int) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps of the polar transform for a ``src_px`` square tile into ``out_h x out_w``."""
    j = (np.arange(out_w, dtype=np.float64) + 0.5) / out_w * 2.0 * np.pi  # azimuth, clockwise from north
    i = (np.arange(out_h, dtype=np.float64) + 0.5) / out_h  # 0 at top (rim) .. 1 at bottom (centre)
    r = (1.0 - i) * (src_px / 2.0)
    c = src_px / 2.0
    x = c + r[:, None] * np.sin(j)[None, :] - 0.5
    y = c - r[:, None] * np.cos(j)[None, :] - 0.5
    return x.astype(np.float32), y.astype(np.float32)


def polar_transform(tiles: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Polar transform of north-up square aerial tiles (uint8 B x S x S x 3) into B x H x W x 3 (see module doc)."""
    tiles = np.asarray(tiles)
    if tiles.ndim == 3:
        tiles = tiles[None]
    s = tiles.shape[1]
    if tiles.shape[2] != s:
        raise ImageInputError(f"aerial tiles must be square for the polar transform, got {tiles.shape[1:3]}")
    mx, my = polar_maps(s, int(out_hw[0]), int(out_hw[1]))
    out = np.empty((tiles.shape[0], int(out_hw[0]), int(out_hw[1]), 3), np.uint8)
    for b in range(tiles.shape[0]):
        out[b] = cv2.remap(np.ascontiguousarray(tiles[b]), mx, my, interpolation=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    return out


@functools.lru_cache(maxsize=64)
def ground_plane_maps(tile_px: int, tile_size_m: float, out_hw: tuple[int, int], hfov_deg: float | None = None,
                      heading_deg: float = 0.0, camera_height_m: float = 2.0,
                      ceiling_m: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps of the ground-plane projection (see the module doc) of a ``tile_px`` square tile that spans
    ``tile_size_m`` metres, into the camera geometry of an ``out_hw`` image.

    ``hfov_deg=None``: a north-aligned equirectangular panorama (column ``j`` at azimuth ``360 * (j + 0.5) / W``, rows
    from ``+180 * H / W`` to ``-180 * H / W`` degrees of elevation, as ``geoloc_node.synth.render.render_panorama``).
    Otherwise a level pinhole camera looking at compass ``heading_deg``: square pixels, principal point at the centre,
    focal length ``(W / 2) / tan(hfov / 2)`` (as ``render_pinhole``).
    """
    h, w = int(out_hw[0]), int(out_hw[1])
    if hfov_deg is None:
        azimuth = np.broadcast_to((np.arange(w) + 0.5) / w * 2.0 * np.pi, (h, w))
        half_v = np.pi * h / w
        elevation = np.broadcast_to((half_v * (1.0 - 2.0 * (np.arange(h) + 0.5) / h))[:, None], (h, w))
        tan_elev = np.tan(elevation)
    else:
        f = (w / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
        x = ((np.arange(w) + 0.5) - w / 2.0) / f  # right of the optical axis, per unit of depth
        y = (h / 2.0 - (np.arange(h) + 0.5)) / f  # above it
        azimuth = np.radians(heading_deg) + np.broadcast_to(np.arctan(x), (h, w))
        tan_elev = y[:, None] / np.sqrt(1.0 + x[None, :] ** 2)
    radius_m = tile_size_m / 2.0
    with np.errstate(divide="ignore"):
        d = np.where(tan_elev < 0, camera_height_m / -tan_elev, ceiling_m / np.maximum(tan_elev, 1e-9))
    r = np.minimum(d, radius_m) * (tile_px / tile_size_m)
    c = tile_px / 2.0
    mx = c + r * np.sin(azimuth) - 0.5
    my = c - r * np.cos(azimuth) - 0.5
    return mx.astype(np.float32), my.astype(np.float32)


def ground_plane_projection(tiles: np.ndarray, tile_size_m: float, out_hw: tuple[int, int],
                            hfov_deg: float | None = None, headings_deg=None, camera_height_m: float = 2.0,
                            ceiling_m: float = 6.0) -> np.ndarray:
    """Aerial tiles (uint8 B x S x S x 3, north-up, ``tile_size_m`` wide) -> B x H x W x 3 as the ground camera would
    see them in a flat world (:func:`ground_plane_maps`). Pinhole cameras need one heading per tile (or one for all)."""
    tiles = np.asarray(tiles)
    if tiles.ndim == 3:
        tiles = tiles[None]
    s = tiles.shape[1]
    if tiles.shape[2] != s:
        raise ImageInputError(f"aerial tiles must be square for the ground-plane projection, got {tiles.shape[1:3]}")
    b = tiles.shape[0]
    if hfov_deg is None:
        headings = np.zeros(b)
    else:
        if headings_deg is None:
            raise ValueError("a pinhole ground-plane projection needs headings_deg (the camera's compass heading)")
        headings = np.broadcast_to(np.asarray(headings_deg, dtype=np.float64), (b,))
    out = np.empty((b, int(out_hw[0]), int(out_hw[1]), 3), np.uint8)
    for k in range(b):
        # headings rounded to 0.01 degree: the maps are cached per heading (a table's heading bins repeat)
        mx, my = ground_plane_maps(s, float(tile_size_m), (int(out_hw[0]), int(out_hw[1])), hfov_deg,
                                   round(float(headings[k]) % 360.0, 2) if hfov_deg is not None else 0.0,
                                   float(camera_height_m), float(ceiling_m))
        out[k] = cv2.remap(np.ascontiguousarray(tiles[k]), mx, my, interpolation=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    return out


def heading_sector(polar: np.ndarray, heading_deg, hfov_deg: float) -> np.ndarray:
    """Columns of north-aligned panorama-like images (B x H x W x 3) covering ``heading_deg +- hfov_deg / 2``.

    ``heading_deg`` is a scalar or one heading per image. Wraps around north. Returns B x H x round(W * hfov / 360) x 3.
    """
    polar = np.asarray(polar)
    b, _, w, _ = polar.shape
    width = max(1, int(round(w * hfov_deg / 360.0)))
    headings = np.broadcast_to(np.asarray(heading_deg, dtype=np.float64), (b,))
    out = []
    for k in range(b):
        # the sector's left edge: column whose centre azimuth is heading - hfov/2 (+ half a column)
        left = (headings[k] - hfov_deg / 2.0) % 360.0 / 360.0 * w
        start = int(round(left))
        idx = (start + np.arange(width)) % w
        out.append(polar[k][:, idx])
    return np.stack(out)


@dataclass(frozen=True)
class AerialView:
    """How an aerial tile becomes the aerial branch's input: one definition for training (from the model config) and
    for every runtime encoder (from the sidecar), so that both draw exactly the same pixels.

    ``kind``: 'resize' (the tile as it is), 'polar' (:func:`polar_transform`; a pinhole model takes the sector of its
    heading from a ``polar_hw`` image) or 'projective' (:func:`ground_plane_projection` into the ground camera's own
    geometry: the panorama, or the pinhole camera of ``hfov_deg`` at the heading).
    """

    kind: str
    input_hw: tuple[int, int]
    hfov_deg: float | None = None  # pinhole models
    polar_src_px: int = 128
    polar_hw: tuple[int, int] | None = None
    tile_size_m: float = 50.0
    camera_height_m: float = 2.0
    ceiling_m: float = 6.0

    def __post_init__(self):
        if self.kind not in ("resize", "polar", "projective"):
            raise ValueError(f"aerial preprocessing must be 'resize', 'polar' or 'projective', got {self.kind!r}")

    @property
    def needs_heading(self) -> bool:
        return self.hfov_deg is not None and self.kind != "resize"

    def __call__(self, tiles, headings_deg=None) -> np.ndarray:
        """uint8 tiles (any square size) -> uint8 B x H x W x 3 network input."""
        tiles = as_rgb_batch(tiles, "aerial tiles")
        if self.needs_heading and headings_deg is None:
            raise ValueError("a pinhole model's aerial branch needs headings_deg (the camera heading of each view)")
        if self.kind == "polar":
            polar = polar_transform(resize_batch(tiles, (self.polar_src_px, self.polar_src_px)),
                                    self.polar_hw or self.input_hw)
            if self.hfov_deg is not None:
                polar = heading_sector(polar, headings_deg, self.hfov_deg)
            return resize_batch(polar, self.input_hw)
        if self.kind == "projective":
            return ground_plane_projection(tiles, self.tile_size_m, self.input_hw, self.hfov_deg, headings_deg,
                                           self.camera_height_m, self.ceiling_m)
        return resize_batch(tiles, self.input_hw)


def to_nchw_float(images: np.ndarray) -> np.ndarray:
    """uint8 B x H x W x 3 -> float32 B x 3 x H x W in [0, 1] (the models normalise inside their graph)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1.0 / 255.0)
