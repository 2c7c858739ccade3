import json

from geoloc_node.cli import main


def test_table_info_validates_and_reports(small_table, capsys):
    path = small_table[0]
    assert main(["table-info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_tiles"] == 61 * 61 and info["bits"] == 256 and info["heading_bins"] == 4
    assert main(["table-info", str(path), "--fingerprint", "0" * 64]) == 2
    assert "another encoder" in capsys.readouterr().err


def test_corrupt_table_exits_2_with_the_file_named(tmp_path, capsys):
    bad = tmp_path / "bad.gltab"
    bad.write_bytes(b"GEOLOCRT" + b"\0" * 10)
    assert main(["table-info", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "table-info" in capsys.readouterr().out
