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
  and the last row its centre (under the camera).
"""

from __future__ import annotations

import functools

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


def to_nchw_float(images: np.ndarray) -> np.ndarray:
    """uint8 B x H x W x 3 -> float32 B x 3 x H x W in [0, 1] (the models normalise inside their graph)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1.0 / 255.0)
