import math

import numpy as np
import pytest

from geoloc_node.synth.canvas import Canvas
from geoloc_node.synth.grid import Grid, Material, RoadGraph, rectangle
from geoloc_node.synth.render import RenderStyle, random_style, render_panorama, render_pinhole
from geoloc_node.synth.world import WorldConfig, finish_world

PLAIN = RenderStyle(noise_std=0.0, cloud_cover=0.0, haze_m=1e9)


@pytest.fixture(scope="module")
def one_building_world():
    """200 m of meadow with one 7 m high building whose west wall stands at east = 10 m, and a road along it."""
    config = WorldConfig(size_m=200.0, resolution_m=0.5, seed=1, aerial_noise_std=0.0)
    canvas = Canvas(Grid(config.size_m, config.resolution_m))
    canvas.paint_road(np.array([[5.0, -90.0], [5.0, 90.0]]), 8.0)
    canvas.add_block([rectangle((30.0, 0.0), 40.0, 60.0, 0.0)], 7.0, (150, 150, 150), (200, 40, 40))
    graph = RoadGraph(np.array([[5.0, -90.0], [5.0, 90.0]]), np.array([[0, 1]]), np.array([8.0]))
    return finish_world(config, canvas, graph, np.random.default_rng(0), {"layout": "test"})


def test_panorama_geometry_wall_top_at_the_right_elevation(one_building_world):
    pano = render_panorama(one_building_world, 0.0, 0.0, 0.0, size=(128, 512), style=PLAIN)
    assert pano.shape == (128, 512, 3) and pano.dtype == np.uint8
    east_column = pano[:, 128].astype(int)  # heading 0 + 90 degrees: looking east at the wall 10 m away
    # The wall top (7 m, camera at 2 m) is seen at atan(5 / 10) = 26.6 degrees: row (45 - 26.6) / (90 / 128) = 26.2.
    wall_rows = np.nonzero((east_column[:, 0] > 80) & (east_column[:, 0] > 3 * east_column[:, 1]))[0]
    assert abs(wall_rows.min() - 26.2) <= 1.0
    sky = east_column[:20]
    assert (sky[:, 2] > sky[:, 0]).all()  # blue above the wall
    west_column = pano[:, 384].astype(int)  # looking west over the meadow: sky down to the horizon
    assert (west_column[:60, 2] > west_column[:60, 0]).all()


def test_panorama_at_a_facade_differs_from_one_in_an_open_park(one_building_world):
    at_facade = render_panorama(one_building_world, 9.0, 0.0, 0.0, style=PLAIN).astype(int)
    in_park = render_panorama(one_building_world, -60.0, 0.0, 0.0, style=PLAIN).astype(int)
    sky_fraction = [(img[:64, :, 2] > img[:64, :, 0] + 20).mean() for img in (at_facade, in_park)]
    assert sky_fraction[0] < sky_fraction[1] - 0.2
    assert np.abs(at_facade - in_park).mean() > 20


def test_heading_rotates_the_panorama(one_building_world):
    north = render_panorama(one_building_world, 0.0, 0.0, 0.0, style=PLAIN)
    east = render_panorama(one_building_world, 0.0, 0.0, 90.0, style=PLAIN)
    # Equal up to rays that graze a cell boundary (the azimuths differ in the last bits).
    differs = (np.roll(north, -128, axis=1) != east).any(axis=2)
    assert differs.mean() < 0.002


def test_pinhole_looking_at_the_wall(one_building_world):
    image = render_pinhole(one_building_world, 0.0, 0.0, 90.0, hfov_deg=90.0, size=(120, 160), style=PLAIN)
    assert image.shape == (120, 160, 3)
    centre = image[:, 80].astype(int)
    # Focal length 80 px: the top of the wall (5 m above the camera, 10 m away) is 40 px above the centre row 60.
    wall_rows = np.nonzero((centre[:, 0] > 80) & (centre[:, 0] > 3 * centre[:, 1]))[0]
    assert abs(wall_rows.min() - 20) <= 1
    with pytest.raises(ValueError, match="hfov"):
        render_pinhole(one_building_world, 0.0, 0.0, 0.0, hfov_deg=200.0)


def test_randomisation_is_seeded_and_changes_the_image(small_world):
    nodes = small_world.road_graph.nodes
    east, north = nodes[small_world.road_graph.edges[0]].mean(axis=0)
    a = render_panorama(small_world, east, north, 30.0, rng=np.random.default_rng(3), randomize=True)
    b = render_panorama(small_world, east, north, 30.0, rng=np.random.default_rng(3), randomize=True)
    c = render_panorama(small_world, east, north, 30.0, rng=np.random.default_rng(4), randomize=True)
    plain = render_panorama(small_world, east, north, 30.0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, plain)
    style = random_style(np.random.default_rng(5), small_world, east, north, max_cars=12)
    assert len(style.cars) <= 12 and math.isfinite(style.sun_elevation_deg)


def test_ground_seen_in_the_panorama_matches_the_aerial_colour(one_building_world):
    # Looking south along the road: the bottom rows see the asphalt the aerial image shows there.
    pano = render_panorama(one_building_world, 5.0, 0.0, 180.0, style=PLAIN).astype(float)
    road_rgb = one_building_world.top_rgb[one_building_world.material == Material.ROAD].mean(axis=0)
    light = PLAIN.ambient + PLAIN.direct * math.sin(math.radians(PLAIN.sun_elevation_deg))
    assert np.abs(pano[-10:, :3].reshape(-1, 3).mean(axis=0) - road_rgb * light).max() < 12


def test_camera_under_a_canopy_sees_out():
    config = WorldConfig(size_m=100.0, resolution_m=0.5, seed=1, aerial_noise_std=0.0)
    canvas = Canvas(Grid(config.size_m, config.resolution_m))
    canvas.add_tree((0.0, 0.0), 4.0, 10.0, (40, 90, 40))
    graph = RoadGraph(np.zeros((0, 2)), np.zeros((0, 2), np.int64), np.zeros(0))
    world = finish_world(config, canvas, graph, np.random.default_rng(0), {"layout": "test"})
    pano = render_panorama(world, 0.0, 0.0, 0.0, style=PLAIN).astype(int)
    assert (pano[:20, :, 2] > pano[:20, :, 1]).mean() > 0.9  # sky above, not a wall of leaves
