import json

import numpy as np
import pytest

from geoloc_node.cli import main
from geoloc_node.synth.aging import AgingError, age_world
from geoloc_node.synth.grid import Material

FLAT_PAINT = (Material.ROAD, Material.SIDEWALK, Material.MARKING, Material.WATER)


@pytest.fixture(scope="module")
def aged(small_world):
    before = {name: getattr(small_world, name).copy() for name in ("material", "top_rgb", "aerial_rgb")}
    aged = age_world(small_world, fraction=0.2, seed=0)
    for name, array in before.items():  # the input world is left as it was
        assert np.array_equal(getattr(small_world, name), array), name
    return aged


def test_about_the_fraction_of_the_built_area_changes(small_world, aged):
    old = small_world.material == Material.BUILDING
    new = aged.material == Material.BUILDING
    removed, added = int((old & ~new).sum()), int((new & ~old).sum())
    assert 0.1 < removed / old.sum() < 0.3
    assert 0.6 < added / removed < 1.6
    stats = aged.source["aged"]
    assert stats["removed_px"] == removed and stats["added_px"] == added and stats["removed"] >= 1
    # Demolished lots are bare ground now; repainted roofs are still buildings, of another colour.
    assert np.all(aged.height[old & ~new] == 0)
    kept = old & new
    recoloured = np.abs(aged.top_rgb[kept].astype(int) - small_world.top_rgb[kept]).max(axis=1) > 20
    assert 0.05 < recoloured.mean() < 0.5
    assert np.array_equal(aged.height[kept], small_world.height[kept])


def test_roads_stay_and_new_buildings_stand_on_free_ground(small_world, aged):
    for material in FLAT_PAINT:
        where = small_world.material == material
        assert np.array_equal(aged.material == material, where), material.name
        assert np.array_equal(aged.top_rgb[where], small_world.top_rgb[where]), material.name
    new = (aged.material == Material.BUILDING) & (small_world.material != Material.BUILDING)
    assert np.isin(small_world.material[new], (Material.GRASS, Material.PARKING, Material.PLAZA)).all()
    assert np.array_equal(aged.road_graph.edges, small_world.road_graph.edges)
    assert aged.config == small_world.config


def test_the_aerial_image_shows_the_changes(small_world, aged, tmp_path):
    import rasterio

    path = aged.write_geotiff(tmp_path / "aged.tif")
    with rasterio.open(path) as src:
        pixels = np.moveaxis(src.read(), 0, 2)
    assert np.array_equal(pixels, aged.aerial_rgb)
    changed = (small_world.material == Material.BUILDING) != (aged.material == Material.BUILDING)
    difference = np.abs(aged.aerial_rgb.astype(int) - small_world.aerial_rgb).mean(axis=2)
    assert difference[changed].mean() > 30.0
    road = small_world.material == Material.ROAD
    assert difference[road].mean() < 10.0  # sensor noise and moved shadows only


def test_aging_is_deterministic_and_nothing_changes_at_fraction_zero(small_world, aged):
    again = age_world(small_world, fraction=0.2, seed=0)
    assert np.array_equal(again.material, aged.material) and np.array_equal(again.aerial_rgb, aged.aerial_rgb)
    other = age_world(small_world, fraction=0.2, seed=1)
    assert not np.array_equal(other.material, aged.material)
    same = age_world(small_world, fraction=0.0)
    assert np.array_equal(same.material, small_world.material) and np.array_equal(same.top_rgb, small_world.top_rgb)
    with pytest.raises(AgingError, match="fraction"):
        age_world(small_world, fraction=1.5)


def test_age_command(small_world, tmp_path, capsys):
    src = small_world.save(tmp_path / "old")
    out = tmp_path / "new"
    assert main(["synth", "age", str(src), str(out), "--fraction", "0.3", "--seed", "2"]) == 0
    assert "buildings demolished" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["aerial.tif", "world.json", "world.npz"]
    meta = json.loads((out / "world.json").read_text())
    assert meta["source"]["aged"]["fraction"] == 0.3 and meta["source"]["aged"]["seed"] == 2
    assert main(["synth", "age", str(src), str(tmp_path / "bad"), "--fraction", "2"]) == 2
    assert main(["synth", "age", str(tmp_path / "missing"), str(tmp_path / "bad2")]) == 2
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad2").exists()
