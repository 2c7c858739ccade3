"""Table sets: a folder of cell tables that opens and searches like one table, touching only the cells it needs."""

import argparse

import numpy as np
import pytest
from tablehelpers import ORIGIN, grid_tiles

from geoloc_node.codes import pack_signs
from geoloc_node.errors import TableError
from geoloc_node.search import TableSearch
from geoloc_node.search_set import TableSetSearch
from geoloc_node.table import open_table, write_table
from geoloc_node.table_cli import run as table_info
from geoloc_node.table_set import TableSet, split_table, write_table_set

FP = "f" * 64


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same 61 x 61 tiles (600 m, 2 heading bins, 64-bit codes: many equal distances) as one file and as a set
    of 200 m cells."""
    d = tmp_path_factory.mktemp("set")
    rng = np.random.default_rng(3)
    lat, lon, east, north = grid_tiles()
    codes = pack_signs(rng.standard_normal((len(lat), 2, 64)))
    single = write_table(d / "one.gltab", codes, lat, lon, bits=64, tile_size_m=50, stride_m=10,
                         encoder_fingerprint=FP, origin=ORIGIN)
    tset = write_table_set(d / "set", codes, lat, lon, bits=64, tile_size_m=50, stride_m=10, encoder_fingerprint=FP,
                           origin=ORIGIN, shard_m=200.0)
    return open_table(single), tset, codes


def _rows(t, idx, dist):
    en = np.asarray(t.en[np.asarray(idx)], dtype=np.float64)
    return sorted(zip(np.round(en[:, 0], 2), np.round(en[:, 1], 2), np.asarray(dist).tolist()))


def test_a_set_opens_and_answers_like_one_table(pair):
    one, path, _ = pair
    s = open_table(path, expected_fingerprint=FP)
    assert isinstance(s, TableSet) and s.n_tiles == one.n_tiles and s.bits == 64 and s.heading_bins == 2
    assert len(s.shards) == 16  # 600 m centred on the origin: cells -400..-200..0..200..400 -> 4 x 4
    assert s.header.stride_m == 10 and s.frame.lat0 == one.frame.lat0
    lat, lon = s.latlon([0, 5])
    assert np.allclose(s.frame.to_en(lat, lon), np.asarray(s.en[[0, 5]], np.float64).T, atol=0.01)
    a, b = TableSearch(one), TableSearch(s)
    assert isinstance(b, TableSetSearch)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.integers(0, 256, 8, dtype=np.uint8)
        e, n = rng.uniform(-320, 320, 2)
        hb = int(rng.integers(0, 2))
        # every tile of a window with its distance: the same tiles, the same distances
        assert _rows(one, *a.window_distances(q, e, n, 75.0, hb)) == _rows(s, *b.window_distances(q, e, n, 75.0, hb))
        assert sorted(np.round(np.asarray(one.en[a.window(e, n, 60.0)]), 2).tolist()) == \
            sorted(np.round(np.asarray(s.en[b.window(e, n, 60.0)]), 2).tolist())
        # exact top-k: the same distances (which tile wins a tie depends on the tile order of each layout)
        assert np.array_equal(a.topk(q, 5, hb).distances, b.topk(q, 5, hb).distances)
        assert np.array_equal(a.topk_window(q, e, n, 90.0, 5, hb).distances,
                              b.topk_window(q, e, n, 90.0, 5, hb).distances)
        idx = rng.integers(0, s.n_tiles, 7)
        assert np.array_equal(b.distances(q, idx, hb),
                              np.unpackbits(np.asarray(s.codes[hb, idx]) ^ q, axis=1).sum(axis=1))
    m = b.topk(np.asarray(s.codes[1, 1234]), 1, 1)
    assert m.indices[0] == 1234 and m.distances[0] == 0 and np.allclose(m.en[0], s.en[1234])
    assert len(b.window(5000.0, 0.0, 50.0)) == 0 and len(b.topk_window(q, 5000.0, 0.0, 50.0)) == 0
    with pytest.raises(ValueError):
        b.window(0.0, 0.0, -1.0)
    with pytest.raises(ValueError):
        b.topk(q, s.n_tiles + 1)


def test_window_searches_touch_only_nearby_cells_and_a_cold_start_keeps_few_open(pair):
    from geoloc_node.table_set import open_table_set

    _, path, _ = pair
    s = open_table_set(path, verify=False, max_open=3)
    assert s.open_cells == 0  # opening maps no cell
    b = TableSearch(s)
    q = np.zeros(8, np.uint8)
    b.topk_window(q, -300.0, -300.0, 40.0)  # the south-west corner: one cell
    assert s.opened_cells == 1
    b.window_distances(q, 0.0, 0.0, 40.0)  # the centre: the four cells meeting there
    assert s.opened_cells == 5 and s.open_cells == 3
    b.topk(q, 5)  # every cell, in turn; never more than max_open mapped
    assert s.open_cells == 3 and s.opened_cells >= 16


def test_split_table_gives_the_same_set_and_table_info_validates_it(pair, tmp_path, capsys):
    one, path, _ = pair
    split = split_table(one.path, tmp_path / "split", shard_m=200.0)
    a, b = open_table(split), open_table(path)
    assert [c["n_tiles"] for c in a.shards] == [c["n_tiles"] for c in b.shards]
    # the same tiles with the same codes, positions to the centimetre (a file keeps lat/lon to 1e-7 degree, so
    # the order within a cell may differ)
    ea, eb = np.asarray(a.en, np.float64), np.asarray(b.en, np.float64)
    ka, kb = np.lexsort(np.round(ea.T, 1)), np.lexsort(np.round(eb.T, 1))
    assert np.allclose(ea[ka], eb[kb], atol=0.01)
    assert np.array_equal(np.asarray(a.codes)[:, ka], np.asarray(b.codes)[:, kb])
    args = argparse.Namespace(table=str(split), fingerprint=None, no_verify=False, json=False)
    assert table_info(args) == 0
    assert "valid table set" in capsys.readouterr().out

    # a damaged cell: table-info (full checksums) refuses the set, naming the cell
    cell = split / a.shards[5]["file"]
    raw = bytearray(cell.read_bytes())
    raw[-3] ^= 0xFF
    cell.write_bytes(bytes(raw))
    assert table_info(args) == 2
    assert a.shards[5]["file"] in capsys.readouterr().err
    # a cell replaced by another cell's file: found when it is first used, even without checksums
    (split / a.shards[6]["file"]).write_bytes((split / a.shards[7]["file"]).read_bytes())
    s = open_table(split, verify=False)
    with pytest.raises(TableError, match="not the cell"):
        s.cell(6)
    # a missing cell: found when the set is opened
    (split / a.shards[8]["file"]).unlink()
    with pytest.raises(TableError, match="missing"):
        open_table(split, verify=False)
    with pytest.raises(TableError, match="another encoder"):
        open_table(path, expected_fingerprint="0" * 64)
