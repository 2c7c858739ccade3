import json

import pytest

from geoloc_node.cli import main


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "world"
    assert main(["synth", "world", str(out), "--size-m", "200", "--seed", "5", "--block-m", "80"]) == 0
    return out


def test_world_command_writes_world_and_geotiff(world_dir, capsys):
    assert sorted(p.name for p in world_dir.iterdir()) == ["aerial.tif", "world.json", "world.npz"]
    meta = json.loads((world_dir / "world.json").read_text())
    assert meta["config"]["size_m"] == 200.0 and meta["config"]["seed"] == 5


@pytest.mark.parametrize("argv, message", [
    (["--size-m", "20"], "size_m=20 is out of range"),
    (["--resolution-m", "9"], "resolution_m=9 is out of range"),
    (["--origin", "north-pole"], "is not two numbers"),
    (["--origin", "auto"], "--origin auto needs --osm"),
    (["--osm", "/nonexistent/x.osm.pbf"], "does not exist"),
])
def test_world_command_bad_input(tmp_path, capsys, argv, message):
    assert main(["synth", "world", str(tmp_path / "w"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") <= 2
    assert not (tmp_path / "w").exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-written beside it either


def test_existing_output_is_refused(world_dir, capsys):
    assert main(["synth", "world", str(world_dir)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_drive_and_pairs_commands(world_dir, tmp_path, capsys):
    bag = tmp_path / "bag"
    assert main(["synth", "drive", str(bag), "--world", str(world_dir), "--duration", "2", "--camera", "pinhole",
                 "--size", "48x64", "--fault", "outage:0.5:1", "--storage", "sqlite3"]) == 0
    assert "bag written to" in capsys.readouterr().out
    sidecar = json.loads((bag / "geoloc_drive.json").read_text())
    assert sidecar["gps_faults"] == [["outage", 0.5, 1.0]]
    assert main(["synth", "drive", str(tmp_path / "b2"), "--world", str(world_dir), "--fault", "storm:1:2"]) == 2
    assert main(["synth", "drive", str(tmp_path / "b3"), "--world", str(world_dir), "--speed", "9,3"]) == 2
    pairs = tmp_path / "pairs"
    assert main(["synth", "pairs", str(pairs), "--world", str(world_dir), "--count", "6", "--tile-px", "32",
                 "--size", "32x128", "--min-val-distance-m", "10"]) == 0
    assert (pairs / "splits" / "train-19zl.csv").is_file()
    assert main(["synth", "pairs", str(tmp_path / "p2"), "--world", str(tmp_path / "nothing")]) == 2
    assert not (tmp_path / "b2").exists() and not (tmp_path / "p2").exists()
