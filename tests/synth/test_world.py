import dataclasses

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from geoloc_node.synth.grid import Material
from geoloc_node.synth.render import aerial_tile
from geoloc_node.synth.world import World, WorldConfig, WorldError, make_world


def test_same_seed_gives_bit_identical_world(small_world, small_config):
    again = make_world(small_config)
    for name in ("height", "material", "top_rgb", "facade_rgb", "aerial_rgb"):
        assert np.array_equal(getattr(small_world, name), getattr(again, name)), name
    assert np.array_equal(small_world.road_graph.nodes, again.road_graph.nodes)
    other = make_world(dataclasses.replace(small_config, seed=8))
    assert not np.array_equal(small_world.aerial_rgb, other.aerial_rgb)


def test_world_has_the_city_parts(small_world):
    counts = np.bincount(small_world.material.ravel(), minlength=len(Material))
    for material in (Material.ROAD, Material.SIDEWALK, Material.BUILDING, Material.TREE):
        assert counts[material] > 0, material.name
    assert small_world.height.max() > 5.0
    assert small_world.aerial_rgb.shape == (600, 600, 3) and small_world.aerial_rgb.dtype == np.uint8
    assert len(small_world.road_graph.edges) > 0


def test_save_load_roundtrip_and_refuses_existing(small_world, tmp_path):
    out = small_world.save(tmp_path / "w")
    loaded = World.load(out)
    assert loaded.config == small_world.config
    assert np.array_equal(loaded.aerial_rgb, small_world.aerial_rgb)
    assert np.array_equal(loaded.road_graph.edges, small_world.road_graph.edges)
    with pytest.raises(WorldError, match="already exists"):
        small_world.save(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]  # no temporary left behind


def test_geotiff_reads_back_with_the_right_georeference(small_world, tmp_path):
    path = small_world.write_geotiff(tmp_path / "aerial.tif")
    with rasterio.open(path) as src:
        assert (src.width, src.height, src.count) == (600, 600, 3)
        assert np.array_equal(np.moveaxis(src.read(), 0, 2), small_world.aerial_rgb)
        to_wgs84 = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
        # Centre of an arbitrary pixel -> lat/lon through the file's CRS, against the project's own ENU frame.
        for row, col in [(0, 0), (599, 0), (123, 456), (300, 300)]:
            x, y = src.xy(row, col)
            lon, lat = to_wgs84.transform(x, y)
            east, north = small_world.grid.to_en(col + 0.5, row + 0.5)
            lat_ref, lon_ref = small_world.frame.to_latlon(east, north)
            e_back, n_back = small_world.frame.to_en(lat, lon)
            assert abs(e_back - east) < 1e-3 and abs(n_back - north) < 1e-3
            assert abs(lat - lat_ref) < 1e-8 and abs(lon - lon_ref) < 1e-8
    with pytest.raises(WorldError, match="already exists"):
        small_world.write_geotiff(path)


@pytest.mark.parametrize("change, message", [({"size_m": 20.0}, "size_m"), ({"resolution_m": 5.0}, "resolution_m"),
                                             ({"origin_lat": 95.0}, "origin")])
def test_out_of_range_config_is_refused(change, message):
    with pytest.raises(WorldError, match=message):
        make_world(dataclasses.replace(WorldConfig(), **change))


def test_aerial_tile_is_centred_and_north_up(small_world):
    # A tile of the whole world at native resolution is the orthophoto itself.
    tile = aerial_tile(small_world, 0.0, 0.0, size_m=300.0, out_px=600)
    assert np.abs(tile.astype(int) - small_world.aerial_rgb).mean() < 1.0
    # Turned by 90 degrees (heading east up), the east edge of a north-up tile comes to the top.
    north_up = aerial_tile(small_world, 10.0, -20.0, size_m=40.0, out_px=80)
    east_up = aerial_tile(small_world, 10.0, -20.0, size_m=40.0, out_px=80, heading_deg=90.0)
    assert np.abs(np.rot90(north_up, 1).astype(int) - east_up).mean() < 3.0
