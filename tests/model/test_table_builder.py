"""build-table: GeoTIFF and tile-folder sources, resume, refusing to mix encoders, clear errors."""

import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")
rasterio = pytest.importorskip("rasterio")

from geoloc_node.cli import main as geoloc  # noqa: E402
from geoloc_node.search import TableSearch  # noqa: E402
from geoloc_node.table import open_table  # noqa: E402
from geoloc_node.table_builder import TableBuildError, build_table_from_geotiff, build_table_from_tiles  # noqa: E402

from .conftest import toy_world  # noqa: E402

ORTHO = "+proj=ortho +lat_0=47.0 +lon_0=8.0 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"


@pytest.fixture(scope="module")
def geotiff(tmp_path_factory):
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    img = toy_world(5, 400)
    path = tmp_path_factory.mktemp("tif") / "ortho.tif"
    with rasterio.open(path, "w", driver="GTiff", width=400, height=400, count=3, dtype="uint8",
                       crs=CRS.from_proj4(ORTHO), transform=from_origin(-100, 100, 0.5, 0.5)) as dst:
        dst.write(np.moveaxis(img, 2, 0))
    return path


def test_build_from_geotiff_and_search(trained, geotiff, tmp_path):
    _, sidecar, _ = trained
    out = build_table_from_geotiff(geotiff, sidecar, tmp_path / "t.gltab", tile_size_m=32, stride_m=8,
                                   progress=False)
    spec = json.loads(sidecar.read_text())
    t = open_table(out, expected_fingerprint=spec["aerial"]["sha256"])
    n_side = len(np.arange(-100 + 16, 100 - 16 + 1e-6, 8))
    assert t.n_tiles == n_side ** 2 and t.bits == 64
    # the tiles' own codes find themselves at the top, within a stride
    s = TableSearch(t)
    m = s.topk(np.asarray(t.codes[0, 10]), k=1)
    assert np.linalg.norm(m.en[0] - t.en[10]) < 8.5


def test_resume_and_refuse_mixing(trained, geotiff, tmp_path):
    from geoloc_node.model.export import export_model

    last, sidecar, _ = trained
    out = tmp_path / "r.gltab"
    ref = build_table_from_geotiff(geotiff, sidecar, tmp_path / "ref.gltab", tile_size_m=32, stride_m=8,
                                   shard_side=4, progress=False)
    # simulate an interrupted build (stopped in the 4th shard), then run the same build again: it resumes
    import geoloc_node.table_builder as tb
    from geoloc_node.build_shards import ShardStore

    calls = {"n": 0}
    orig = tb.encode_shard

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return orig(*a, **k)

    tb.encode_shard = failing
    try:
        with pytest.raises(KeyboardInterrupt):
            build_table_from_geotiff(geotiff, sidecar, out, tile_size_m=32, stride_m=8, shard_side=4,
                                     progress=False)
    finally:
        tb.encode_shard = orig
    store = ShardStore(out)
    assert store.done() == {0, 1, 2}
    build_table_from_geotiff(geotiff, sidecar, out, tile_size_m=32, stride_m=8, shard_side=4, progress=False)
    assert not store.dir.exists()
    a, b = open_table(out), open_table(ref)
    assert np.array_equal(np.asarray(a.codes), np.asarray(b.codes))
    # another encoder (fp16-weights export: other sha256) must not overwrite or resume this table
    other = export_model(last, tmp_path / "other", "other", precision="fp16-weights")
    with pytest.raises(TableBuildError, match="another encoder"):
        build_table_from_geotiff(geotiff, other, out, tile_size_m=32, stride_m=8, progress=False)


def test_tile_folder_source(trained, tmp_path):
    import cv2

    _, sidecar, _ = trained
    img = toy_world(6, 256)
    rows = []
    for i in range(5):
        f = f"t{i}.png"
        cv2.imwrite(str(tmp_path / f), img[i * 40:i * 40 + 64, 0:64, ::-1])
        rows.append({"file": f, "lat": 47.0 + i * 1e-4, "lon": 8.0})
    with open(tmp_path / "tiles.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["file", "lat", "lon"])
        w.writeheader()
        w.writerows(rows)
    out = build_table_from_tiles(tmp_path, tmp_path / "tiles.csv", sidecar, tmp_path / "f.gltab", progress=False)
    assert open_table(out).n_tiles == 5
    (tmp_path / "bad.csv").write_text("file,lat\nt0.png,47\n")
    with pytest.raises(TableBuildError, match="missing column"):
        build_table_from_tiles(tmp_path, tmp_path / "bad.csv", sidecar, tmp_path / "g.gltab", progress=False)


def test_cli_errors(trained, tmp_path, capsys):
    _, sidecar, _ = trained
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\0garbage")
    rc = geoloc(["build-table", "--geotiff", str(bad), "--model", str(sidecar), "--out", str(tmp_path / "o.gltab"),
                 "--no-progress"])
    assert rc == 2
    assert "corrupt.tif" in capsys.readouterr().err
    rc = geoloc(["build-table", "--geotiff", str(bad), "--model", str(tmp_path / "nomodel.json"), "--out",
                 str(tmp_path / "o.gltab")])
    assert rc == 2
    rc = geoloc(["export", str(tmp_path / "missing.pt")])
    assert rc == 2
    rc = geoloc(["build-engine", str(tmp_path / "missing.json")])
    assert rc == 2
