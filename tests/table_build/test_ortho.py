"""Orthophotos in projected CRSs: tile centres where the file's own transform and CRS put them, tiles warped to true
north, nodata and partial coverage skipped and counted, wrong ground sampling distances refused."""

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from pyproj import Geod, Transformer  # noqa: E402

from geoloc_node.ortho import OrthoError, OrthoSource, ShardCounts  # noqa: E402
from geoloc_node.table import open_table  # noqa: E402
from geoloc_node.table_builder import BuildConfig, build_geotiff  # noqa: E402

from .geotiffs import texture, write_geotiff  # noqa: E402

# (CRS, north-west corner in it): UTM 31N near Liege, 2.9 degrees east of the zone's meridian (convergence 2.2 deg);
# Swiss LV95 near Zurich; British National Grid near York.
PLACES = [("EPSG:32631", 709_000.0, 5_541_000.0), ("EPSG:2056", 2_683_000.0, 1_248_000.0),
          ("EPSG:27700", 460_000.0, 452_000.0)]
GSD, STRIDE, TILE = 0.5, 10.0, 50.0


def _all_tiles(src):
    out, counts = [], ShardCounts()
    for s in range(src.n_shards):
        out.extend(src.shard_batches(s, 64, counts))
    return out, counts


@pytest.mark.parametrize("crs,west,north", PLACES, ids=[p[0] for p in PLACES])
def test_table_positions_match_the_files_transform_and_crs(tmp_path, crs, west, north):
    tif = write_geotiff(tmp_path / "o.tif", crs, west, north, GSD, texture(1, 360, 440))
    res = build_geotiff(tif, _model(), tmp_path / "t.gltab", BuildConfig(stride_m=STRIDE, shard_side=3, threads=1),
                        progress=False)
    t = open_table(res.path)
    with rasterio.open(tif) as ds:
        # expected centres from the file alone: pixel (col, row) of tile (i, j) through the file's affine, then CRS
        half_px, step_px = TILE / 2 / GSD, STRIDE / GSD
        cols = half_px + step_px * np.arange(int((ds.width - 2 * half_px) // step_px) + 1)
        rows = half_px + step_px * np.arange(int((ds.height - 2 * half_px) // step_px) + 1)
        cc, rr = np.meshgrid(cols, rows)
        x, y = ds.transform * (cc.ravel(), rr.ravel())
        lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
    # where grid north is off true north, the rotated tiles at the raster's edge reach past it: skipped, not made up
    assert t.n_tiles == res.tiles and res.tiles + res.skipped_partial == len(lon) and res.skipped_nodata == 0
    assert res.tiles >= 0.75 * len(lon)
    tlat, tlon = t.latlon()
    geod = Geod(ellps="WGS84")
    matched = set()
    for j in range(t.n_tiles):  # each table tile sits within 0.5 m of its own expected centre
        k = int(np.argmin((lat - tlat[j]) ** 2 + ((lon - tlon[j]) * np.cos(np.radians(tlat[j]))) ** 2))
        assert geod.inv(lon[k], lat[k], tlon[j], tlat[j])[2] < 0.5
        matched.add(k)
    assert len(matched) == t.n_tiles


def test_tiles_are_warped_to_true_north(tmp_path):
    """A line along a meridian (true north) through a tile centre, drawn in UTM 2.9 degrees off the zone's central
    meridian, where grid north is 2.2 degrees off true north: in the tile it is a vertical line through the centre."""
    import cv2

    crs, west, north = PLACES[0]
    img = np.zeros((400, 400, 3), np.uint8)
    tif = write_geotiff(tmp_path / "m.tif", crs, west, north, GSD, img)
    src = OrthoSource(tif, TILE, STRIDE)
    k = (src.rows // 2) * src.cols + src.cols // 2
    x, y = src.centre_xy(np.array([k]))
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon0, lat0 = to_ll.transform(x[0], y[0])
    xs, ys = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform([lon0, lon0], [lat0 - 0.002,
                                                                                              lat0 + 0.002])
    inv = ~rasterio.open(tif).transform
    p0, p1 = (np.array(inv * (xs[i], ys[i])) - 0.5 for i in (0, 1))
    cv2.line(img, tuple(np.round(p0 * 16).astype(int)), tuple(np.round(p1 * 16).astype(int)), (255, 255, 255), 3,
             cv2.LINE_AA, shift=4)
    write_geotiff(tif, crs, west, north, GSD, img)
    src = OrthoSource(tif, TILE, STRIDE)
    tile = next(b.tiles[list(b.ids).index(k)] for b in _all_tiles(src)[0] if k in b.ids)
    centre = (src.tile_px - 1) / 2
    for band in (tile[:10, :, 0], tile[-10:, :, 0]):  # top and bottom: the line's column, weighted
        w = band.astype(float).sum(axis=0)
        assert abs((w * np.arange(len(w))).sum() / w.sum() - centre) < 0.5
    # the same rows cut along grid north lie 2 px apart (2.2 degrees over 45 px): the warp is what fixed it
    assert abs(np.degrees(np.arctan2(p1[0] - p0[0], p0[1] - p1[1]))) > 2.0


def test_nodata_and_partial_coverage_are_skipped_and_counted(tmp_path):
    crs, west, north = "EPSG:32631", 499_900.0, 5_541_000.0  # on the zone's meridian: grid north is true north
    img = np.maximum(texture(2, 400, 400), 1)
    img[100:140, 200:260] = 0  # a nodata hole (value 0 = the file's nodata)
    tif = write_geotiff(tmp_path / "n.tif", crs, west, north, GSD, img, nodata=0)
    src = OrthoSource(tif, TILE, STRIDE, shard_side=5)
    batches, counts = _all_tiles(src)
    got = np.concatenate([b.ids for b in batches])
    # positions whose 100 px footprint overlaps the hole (rows 100..139, cols 200..259) are the skipped ones
    r, c = np.divmod(np.arange(src.n_positions), src.cols)
    r0, c0 = r * 20, c * 20
    hole = (r0 < 140) & (r0 + 100 > 100) & (c0 < 260) & (c0 + 100 > 200)
    assert counts.skipped_nodata == hole.sum() > 0 and counts.skipped_partial == 0
    assert set(got.tolist()) == set(np.flatnonzero(~hole).tolist())
    assert all(b.tiles.min() >= 0 and (b.tiles.reshape(len(b.ids), -1).max(axis=1) > 0).all() for b in batches)

    # a raster rotated against the CRS grid (a 30 degree affine): tiles laid out along the CRS axes over its
    # bounding box reach past the raster near the corners, and are counted as partial, never made up
    from rasterio.transform import Affine

    rot = Affine.translation(west, north) * Affine.rotation(30) * Affine.scale(GSD, -GSD)
    path = tmp_path / "rot.tif"
    with rasterio.open(path, "w", driver="GTiff", width=400, height=400, count=3, dtype="uint8", crs=crs,
                       transform=rot) as dst:
        dst.write(np.moveaxis(texture(3, 400, 400), 2, 0))
    rsrc = OrthoSource(path, TILE, STRIDE)
    rb, rc = _all_tiles(rsrc)
    n_ok = sum(len(b.ids) for b in rb)
    assert rc.skipped_partial > 0 and n_ok > 0 and n_ok + rc.skipped_partial + rc.skipped_nodata == rsrc.n_positions


def test_wrong_ground_sampling_distance_and_crs_are_refused(tmp_path):
    crs, west, north = PLACES[0]
    coarse = write_geotiff(tmp_path / "c.tif", crs, west, north, 5.0, texture(4, 128, 128))
    with pytest.raises(OrthoError, match=r"5 m/px makes a 50 m tile 10 px.*m/px"):
        OrthoSource(coarse, TILE, STRIDE)
    geo = write_geotiff(tmp_path / "g.tif", "EPSG:4326", 6.0, 50.0, 1e-5, texture(4, 64, 64))
    with pytest.raises(OrthoError, match="geographic"):
        OrthoSource(geo, TILE, STRIDE)


def _model():
    from geoloc_node.models import shipped_model_path

    return shipped_model_path()
