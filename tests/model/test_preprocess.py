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


def _compass_tile(s: int = 100) -> np.ndarray:
    """A north-up tile: red north half, green east half (so north-east is yellow), blue centre disc."""
    tile = np.zeros((s, s, 3), np.uint8)
    tile[: s // 2, :, 0] = 255
    tile[:, s // 2:, 1] = 255
    yy, xx = np.mgrid[:s, :s]
    tile[(yy - s / 2 + 0.5) ** 2 + (xx - s / 2 + 0.5) ** 2 < (s / 10) ** 2] = (0, 0, 255)
    return tile


def test_ground_plane_projection_panorama_geometry():
    h, w = 64, 256
    mx, my = pp.ground_plane_maps(100, 50.0, (h, w), camera_height_m=2.0, ceiling_m=6.0)
    c = 100 / 2.0 - 0.5
    # each row is a circle around the tile centre whose radius follows the row's elevation (+-45 degrees here)
    elev = np.radians(45.0 * (1.0 - 2.0 * (np.arange(h) + 0.5) / h))
    r_m = np.hypot(mx - c, my - c).mean(axis=1) * 50.0 / 100
    below = elev < 0
    want = np.minimum(np.where(below, 2.0 / np.tan(np.abs(elev)), 6.0 / np.tan(np.abs(elev))), 25.0)
    assert np.allclose(r_m, want, atol=1e-3)
    assert r_m[-1] < 2.1 and r_m[h // 2] == 25.0  # under the camera at the bottom, the tile's rim at the horizon
    view = pp.ground_plane_projection(_compass_tile(), 50.0, (h, w))[0]
    # column j looks at azimuth 360 (j + 0.5) / W: north-east (yellow) in the first quarter, south-west (black) in the
    # third; the bottom rows see the blue disc under the camera all around
    assert tuple(view[40, w // 8]) == (255, 255, 0) and tuple(view[40, 5 * w // 8]) == (0, 0, 0)
    assert (view[-1, :, 2] == 255).all() and (view[-1, :, :2] == 0).all()


def test_ground_plane_projection_pinhole_follows_heading():
    tile = _compass_tile()
    east = pp.ground_plane_projection(tile, 50.0, (32, 128), hfov_deg=60.0, headings_deg=90.0)[0]
    west = pp.ground_plane_projection(tile, 50.0, (32, 128), hfov_deg=60.0, headings_deg=270.0)[0]
    near = slice(24, 30)  # below the horizon, beyond the blue disc
    assert (east[near, 40:88, 1] == 255).all() and (west[near, 40:88, 1] == 0).all()
    # a pinhole camera's rays get lower towards the image sides at the same row: farther from the centre there
    mx, my = pp.ground_plane_maps(100, 50.0, (32, 128), 60.0, 0.0)
    r = np.hypot(mx - 49.5, my - 49.5)
    assert r[28, 0] > r[28, 64]
    with pytest.raises(ValueError, match="heading"):
        pp.ground_plane_projection(tile, 50.0, (32, 128), hfov_deg=60.0)


def test_aerial_view_kinds():
    tiles = np.stack([_compass_tile()] * 2)
    for kind in ("resize", "polar", "projective"):
        out = pp.AerialView(kind, (16, 64))(tiles)
        assert out.shape == (2, 16, 64, 3) and out.dtype == np.uint8
    sec = pp.AerialView("projective", (16, 32), hfov_deg=90.0)(tiles, [0.0, 180.0])
    assert not np.array_equal(sec[0], sec[1])  # each tile seen at its own heading
    with pytest.raises(ValueError, match="headings"):
        pp.AerialView("polar", (16, 32), hfov_deg=90.0, polar_hw=(16, 128))(tiles)
    with pytest.raises(ValueError, match="projective"):
        pp.AerialView("fisheye", (16, 32))
