import os

import numpy as np
import pytest
from tablehelpers import ORIGIN, grid_tiles

from geoloc_node.errors import EmptyTableError, TableError
from geoloc_node.table import FORMAT_VERSION, open_table, write_table


def test_round_trip_keeps_every_tile_with_its_code_and_position(small_table):
    path, codes, lat, lon, east, north = small_table
    t = open_table(path, expected_fingerprint="f" * 64)
    assert t.n_tiles == len(lat) and t.bits == 256 and t.heading_bins == 4
    assert isinstance(t.codes, np.memmap) and t.codes.shape == (4, len(lat), 32)
    # Tiles are reordered by grid cell: match them back by position.
    tlat, tlon = t.latlon()
    key = {(round(e), round(n)): i for i, (e, n) in enumerate(zip(east, north))}
    for j in range(0, t.n_tiles, 97):
        i = key[(round(float(t.en[j, 0])), round(float(t.en[j, 1])))]
        assert np.array_equal(t.codes[:, j], codes[i])
        assert np.allclose(t.en[j], (east[i], north[i]), atol=0.01)
        assert abs(tlat[j] - lat[i]) < 2e-7 and abs(tlon[j] - lon[i]) < 2e-7
    assert t.header.origin_lat == ORIGIN[0] and t.header.stride_m == 10
    assert "created_utc" in t.header.provenance
    assert t.coverage()["tiles"] == t.n_tiles


def test_heading_bins_are_centred_on_multiples_of_the_bin_width(small_table):
    t = open_table(small_table[0])
    assert [t.heading_bin(h) for h in (0, 44.9, 45.1, 90, 359, -90)] == [0, 0, 1, 1, 0, 3]
    with pytest.raises(ValueError):
        t.heading_bin(float("nan"))


def test_one_million_tile_table_is_small_on_disk(tmp_path):
    # the target: <= 50 MB for 1e6 tiles x 256 bits x 1 bin (the open time is measured in benchmarks/)
    lat, lon, _, _ = grid_tiles(size_m=9990.0, stride_m=10.0)
    assert len(lat) == 1_000_000
    codes = np.random.default_rng(0).integers(0, 256, (len(lat), 32), dtype=np.uint8)
    path = write_table(tmp_path / "big.gltab", codes, lat, lon, bits=256, tile_size_m=50, stride_m=10,
                       encoder_fingerprint="e" * 64)
    assert os.path.getsize(path) <= 50e6
    assert open_table(path).n_tiles == 1_000_000


def _corrupt(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_truncated_corrupt_wrong_version_wrong_fingerprint_are_refused(small_table, tmp_path):
    path = small_table[0]
    raw = path.read_bytes()

    cases = {
        "truncated": raw[: len(raw) - 100],
        "prefix": raw[:20],
        "magic": b"NOTATABL" + raw[8:],
        "version": raw[:8] + (FORMAT_VERSION + 1).to_bytes(4, "little") + raw[12:],
        "header": raw[:60] + bytes([raw[60] ^ 0xFF]) + raw[61:],
        "codes": raw[:-2000] + bytes([raw[-2000] ^ 0x01]) + raw[-1999:],
    }
    messages = {"truncated": "truncated", "prefix": "truncated", "magic": "not a region table",
                "version": "format version", "header": "header checksum", "codes": "checksum of section"}
    for name, data in cases.items():
        bad = tmp_path / f"{name}.gltab"
        bad.write_bytes(data)
        with pytest.raises(TableError, match=messages[name]) as exc:
            open_table(bad)
        assert str(bad) in str(exc.value)  # the error names the file
    with pytest.raises(TableError, match="another encoder"):
        open_table(path, expected_fingerprint="0" * 64)
    with pytest.raises(TableError, match="no such file"):
        open_table(tmp_path / "missing.gltab")


def test_write_is_atomic_and_leaves_nothing_behind_on_failure(tmp_path, monkeypatch):
    lat, lon, _, _ = grid_tiles(size_m=100.0)
    codes = np.zeros((len(lat), 8), np.uint8)
    target = tmp_path / "t.gltab"
    write_table(target, codes, lat, lon, bits=64, tile_size_m=50, stride_m=10, encoder_fingerprint="a")
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_table(target, codes + 1, lat, lon, bits=64, tile_size_m=50, stride_m=10, encoder_fingerprint="b")
    assert target.read_bytes() == before  # the old table is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["t.gltab"]  # no temporary file left


def test_bad_inputs_to_write(tmp_path):
    lat, lon, _, _ = grid_tiles(size_m=100.0)
    ok = dict(bits=64, tile_size_m=50, stride_m=10, encoder_fingerprint="a")
    with pytest.raises(EmptyTableError):
        write_table(tmp_path / "e", np.zeros((0, 8), np.uint8), lat[:0], lon[:0], **ok)
    with pytest.raises(ValueError, match="latitude"):
        bad_lat = lat.copy()
        bad_lat[0] = 95.0
        write_table(tmp_path / "e", np.zeros((len(lat), 8), np.uint8), bad_lat, lon, **ok)
    with pytest.raises(ValueError, match="finite"):
        bad_lat = lat.copy()
        bad_lat[0] = np.nan
        write_table(tmp_path / "e", np.zeros((len(lat), 8), np.uint8), bad_lat, lon, **ok)
    with pytest.raises(ValueError, match="shape"):
        write_table(tmp_path / "e", np.zeros((len(lat), 8), np.uint8), lat[:-1], lon[:-1], **ok)
    with pytest.raises(ValueError, match="bits"):
        write_table(tmp_path / "e", np.zeros((len(lat), 8), np.uint8), lat, lon, **{**ok, "bits": 128})
    assert not any(tmp_path.iterdir())
