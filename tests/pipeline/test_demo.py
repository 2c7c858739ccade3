from geoloc_node import cli
from geoloc_node.demo import format_table


def test_demo_help_documents_the_json_keys(capsys):
    try:
        cli.main(["demo", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    for key in ("filter", "single_frame", "odometry_only", "availability", "end_of_outage", "timings_s", "report"):
        assert key in out


def test_format_table_prints_the_three_rows():
    s = {"n": 10, "median_m": 3.0, "p95_m": 6.0, "max_m": 7.0, "mean_m": 3.5}
    r = {"filter": s, "single_frame": s, "odometry_only": {"n": 0}, "availability": 0.99, "outage_s": [40, 160],
         "camera": "panorama", "seed": 1, "end_of_outage": {"filter": s, "odometry_only": s, "p95_ratio": 1.0},
         "timings_s": {"world": 1, "table": 2, "drive": 3, "replay": 4, "total": 10}, "realtime_factor": 8.0,
         "report": "r.json", "report_png": "r.png", "bag": "bag"}
    text = format_table(r)
    assert "full filter" in text and "single frame" in text and "odometry alone" in text and "r.json" in text


def test_demo_refuses_to_empty_a_folder_it_did_not_write(tmp_path):
    import pytest

    from geoloc_node.demo import run_demo
    from geoloc_node.errors import GeolocError

    keep = tmp_path / "precious.txt"
    keep.write_text("not a demo output")
    with pytest.raises(GeolocError, match="not an earlier demo output"):
        run_demo(tmp_path)
    assert keep.read_text() == "not a demo output"
