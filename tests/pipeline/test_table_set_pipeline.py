"""The pipeline on a table set (an index plus cell tables) instead of one file: opened by the same open_table, used
by the same Pipeline, and giving exactly the estimates the one-file table of the same tiles gives."""

import numpy as np
import pytest
from fakes import ORIGIN, Drive, FakeOracleEncoder, feed

from geoloc_node.config import GeolocConfig
from geoloc_node.pipeline import Estimate, Pipeline
from geoloc_node.table import open_table
from geoloc_node.table_set import TableSet, write_table_set

CFG = GeolocConfig.from_flat({"tracking.n_particles": 600})


@pytest.fixture(scope="module")
def table_set(world, tmp_path_factory):
    """The tiles of the ``table`` fixture (FakeWorld.write_table), as a set of 200 m cells."""
    g = np.arange(-300.0, 300.0 + 1e-9, 10.0)
    ee, nn = np.meshgrid(g, g)
    en = np.column_stack([ee.ravel(), nn.ravel()])
    codes = np.stack([world.codes(en, b) for b in range(world.heading_bins)], axis=1)
    lat, lon = world.frame.to_latlon(en[:, 0], en[:, 1])
    path = write_table_set(tmp_path_factory.mktemp("set") / "region", codes, lat, lon, bits=world.bits,
                           tile_size_m=50.0, stride_m=10.0, encoder_fingerprint="fake-aerial-0", origin=ORIGIN,
                           shard_m=200.0)
    return open_table(path, expected_fingerprint="fake-aerial-0")


def _estimates(world, table, events):
    p = Pipeline(CFG, FakeOracleEncoder(world, flip_prob=0.1, wrong_prob=0.1), table)
    out = feed(p, events)
    return p, [(o.stamp, o.east, o.north, o.source) for o in out if isinstance(o, Estimate)]


def test_a_table_set_gives_the_same_estimates_as_one_file(world, table, table_set):
    assert isinstance(table_set, TableSet) and len(table_set.shards) == 16  # 4 x 4 cells of 200 m
    assert table_set.coverage() == table.coverage()
    events = Drive(duration_s=100.0).events(table.frame, outages=[(30.0, 90.0)])
    _, one = _estimates(world, table, events)
    p, tset = _estimates(world, table_set, events)
    assert len(one) > 1000 and tset == one
    assert p.status()["table"]["tiles"] == table_set.n_tiles

    cold = [ev for ev in Drive(duration_s=40.0, seed=4).events(table.frame) if ev[1] != "gps"]
    q1, one = _estimates(world, table, cold)
    q2, tset = _estimates(world, table_set, cold)
    # whole-set searches, cell by cell, find the same tiles
    assert q2.counts["cold_starts"] == q1.counts["cold_starts"] >= 1 and tset == one
