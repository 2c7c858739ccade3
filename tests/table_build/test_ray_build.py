"""``build-table --ray``: the same build on a local Ray (Ray Data, two encoder actors) writes the same bytes as the
plain build, and resumes from the plain build's shards."""

import pytest

pytest.importorskip("ray")
pytest.importorskip("rasterio")

from geoloc_node.build_shards import ShardStore  # noqa: E402
from geoloc_node.cli import main as geoloc  # noqa: E402
from geoloc_node.table_builder import BuildConfig, build_geotiff  # noqa: E402

from .geotiffs import texture, write_geotiff  # noqa: E402


def test_ray_build_writes_the_same_bytes_as_the_plain_build(tmp_path, monkeypatch, capsys):
    import geoloc_node.table_builder as tb
    from geoloc_node.models import shipped_model_path

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    tif = write_geotiff(tmp_path / "o.tif", "EPSG:2056", 2_683_000.0, 1_248_000.0, 0.5, texture(7, 300, 420))
    plain = build_geotiff(tif, shipped_model_path(), tmp_path / "plain.gltab",
                          BuildConfig(shard_side=4, threads=1), progress=False)
    # a plain build stopped after two shards, finished by Ray: resuming works across engines
    out = tmp_path / "ray.gltab"
    orig, calls = tb.encode_shard, {"n": 0}

    def stop_at_third(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return orig(*a, **k)

    monkeypatch.setattr(tb, "encode_shard", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        build_geotiff(tif, shipped_model_path(), out, BuildConfig(shard_side=4, threads=1), progress=False)
    monkeypatch.setattr(tb, "encode_shard", orig)
    assert ShardStore(out).done() == {0, 1}
    rc = geoloc(["build-table", "--geotiff", str(tif), "--out", str(out), "--shard-side", "4", "--threads", "1",
                 "--ray", "--ray-workers", "2", "--no-progress"])
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert "ray, 2 worker(s)" in text.out and "resuming" in text.err
    assert plain.skipped_partial > 0  # LV95 near Zurich: grid north is 0.8 degrees off, edge tiles are skipped
    assert out.read_bytes() == plain.path.read_bytes()
