"""Preprocessing conventions: polar transform orientation, heading sectors, panorama alignment, input checks."""

import numpy as np
import pytest

from geoloc_node.encoders import preprocess as pp


def test_polar_transform_orientation():
    s = 64
    tile = np.zeros((s, s, 3), np.uint8)
    tile[: s // 4, :, 0] = 255  # north strip red
    tile[:, -s // 4:, 1] = 255  # east strip green
    polar = pp.polar_transform(tile, (16, 64))[0]
    top = polar[0]  # the rim: far away
    # column j looks at azimuth 360 * (j + 0.5) / 64: north at the edges, east at a quarter
    assert top[0, 0] == 255 and top[63, 0] == 255
    assert top[16, 1] == 255 and top[16, 0] == 0
    assert top[32, 0] == 0 and top[32, 1] == 0  # south: neither


def test_heading_sector_wraps():
    cols = np.tile(np.arange(360) % 256, (4, 1)).astype(np.uint8)
    img = np.stack([cols] * 3, axis=-1)[None]
    sec = pp.heading_sector(img, 0.0, 90.0)
    assert sec.shape == (1, 4, 90, 3)
    assert sec[0, 0, 0, 0] == (315 % 256) and sec[0, 0, -1, 0] == 44


def test_align_panorama():
    pano = np.tile(np.arange(8, dtype=np.uint8), (2, 1))[..., None]
    # left edge looks at the heading (offset 0): heading 90 -> shift by a quarter
    out = pp.align_panorama(pano, 90.0, 0.0)
    assert out[0, 2] == 0  # the column that looked at 90 degrees now sits a quarter in


def test_input_checks():
    with pytest.raises(pp.ImageInputError):
        pp.as_rgb_batch(np.zeros((4, 4, 3), np.float64))
    with pytest.raises(pp.ImageInputError):
        pp.as_rgb_batch(np.zeros((2, 4, 4, 2), np.uint8))
    assert pp.as_rgb_batch(np.zeros((5, 6), np.uint8)).shape == (1, 5, 6, 3)
