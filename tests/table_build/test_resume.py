"""A build killed with SIGKILL mid-shard resumes: only the missing shards are encoded again (at most one shard's tiles
are lost), and the table is byte-identical to an uninterrupted build. Runs the real command with the shipped model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio")

from geoloc_node.build_shards import ShardStore  # noqa: E402
from geoloc_node.errors import TableBuildError  # noqa: E402
from geoloc_node.table_builder import BuildConfig, build_geotiff  # noqa: E402

from .geotiffs import texture, write_geotiff  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARD_SIDE, BATCH = 4, 8  # 16 tile positions per shard, two batches each
HANG_AT_CALL = 8  # the 8th encoder call (2nd batch of the 4th shard) hangs: shards 0..2 are on disk, 8 tiles not

# The child counts each encoded tile in a file (O_APPEND: survives SIGKILL), and hangs at one call so that the kill
# lands mid-shard, deterministically.
DRIVER = f"""
import json, os, sys, time
from geoloc_node.encoders.base import Encoder
orig, calls = Encoder.encode_tiles, [0]
def counted(self, tiles, bins=None):
    calls[0] += 1
    if calls[0] == {HANG_AT_CALL}:
        time.sleep(300)
    out = orig(self, tiles, bins)
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"%d\\n" % len(out))
    os.close(fd)
    return out
Encoder.encode_tiles = counted
from geoloc_node.cli import main
sys.exit(main(json.loads(sys.argv[1])))
"""


@pytest.fixture(scope="module")
def geotiff(tmp_path_factory):
    return write_geotiff(tmp_path_factory.mktemp("tif") / "o.tif", "EPSG:32631", 499_900.0, 5_541_000.0, 0.5,
                         texture(5, 400, 400))


def _cfg():
    return BuildConfig(shard_side=SHARD_SIDE, batch=BATCH, threads=1)


def test_kill_9_mid_shard_then_rerun_loses_at_most_one_shard(geotiff, tmp_path, monkeypatch):
    from geoloc_node.models import shipped_model_path

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the header's created_utc: same bytes in both builds
    out, counter = tmp_path / "killed.gltab", tmp_path / "encoded.txt"
    argv = ["build-table", "--geotiff", str(geotiff), "--out", str(out), "--shard-side", str(SHARD_SIDE),
            "--batch", str(BATCH), "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(argv), str(counter)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = ShardStore(out)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if counter.exists() and len(counter.read_text().split()) >= HANG_AT_CALL - 1 and len(store.done()) == 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.3)  # let it reach the hang
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    encoded_before = sum(int(v) for v in counter.read_text().split())
    saved = len(store.done())
    assert not out.exists() and saved == 3 and encoded_before == 3 * 16 + BATCH

    resumed = build_geotiff(geotiff, shipped_model_path(), out, _cfg(), progress=False)
    assert resumed.shards_resumed == saved and resumed.positions == 256
    assert resumed.positions_encoded == 256 - saved * 16  # only the missing shards
    lost = encoded_before - saved * 16
    assert 0 < lost <= SHARD_SIDE ** 2  # re-encoded work: less than one shard
    assert not store.dir.exists()

    whole = build_geotiff(geotiff, shipped_model_path(), tmp_path / "whole.gltab", _cfg(), progress=False)
    assert whole.shards_resumed == 0 and whole.positions_encoded == 256
    assert out.read_bytes() == whole.path.read_bytes()


def test_stop_signal_keeps_shards_and_another_encoder_is_refused(geotiff, tmp_path):
    import geoloc_node.build_shards as bs
    from geoloc_node.models import shipped_model_path

    out = tmp_path / "t.gltab"
    calls = {"n": 0}
    orig = bs.encode_shard

    def stop_at_third(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # what SIGTERM / SIGHUP / Ctrl-C raise in the build
        return orig(*a, **k)

    import geoloc_node.table_builder as tb

    tb.encode_shard = stop_at_third
    try:
        with pytest.raises(KeyboardInterrupt):
            build_geotiff(geotiff, shipped_model_path(), out, _cfg(), progress=False)
    finally:
        tb.encode_shard = orig
    assert ShardStore(out).done() == {0, 1}
    # the pinhole model's aerial branch is another encoder: it must not resume (mix codes into) this build
    with pytest.raises(TableBuildError, match="another encoder"):
        build_geotiff(geotiff, shipped_model_path("pinhole"), out, _cfg(), progress=False)
    res = build_geotiff(geotiff, shipped_model_path(), out, _cfg(), progress=False)
    assert res.shards_resumed == 2 and res.positions_encoded == 256 - 32 and res.tiles == 256


def test_ray_stays_out_of_the_runtime_path():
    """The node, replay and the table builder import without Ray; only `build-table --ray` loads it."""
    code = ("import sys\nimport geoloc_node.pipeline, geoloc_node.replay, geoloc_node.table_builder, "
            "geoloc_node.table_set, geoloc_node.search_set, geoloc_node.cli\n"
            "sys.exit(1 if any(m == 'ray' or m.startswith('ray.') for m in sys.modules) else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr or "ray was imported"


def test_a_build_can_write_a_table_set(geotiff, tmp_path):
    from geoloc_node.models import shipped_model_path
    from geoloc_node.table import open_table
    from geoloc_node.table_set import TableSet

    one = build_geotiff(geotiff, shipped_model_path(), tmp_path / "one.gltab", _cfg(), progress=False)
    res = build_geotiff(geotiff, shipped_model_path(), tmp_path / "region_set",
                        BuildConfig(shard_side=SHARD_SIDE, batch=BATCH, threads=1, set_cell_m=100.0), progress=False)
    a, b = open_table(one.path), open_table(res.path)
    assert isinstance(b, TableSet) and len(b.shards) >= 4 and b.n_tiles == a.n_tiles == 256
    assert not list(tmp_path.glob(".*single*")) and not (tmp_path / "region_set.build").exists()
    ea, eb = np.asarray(a.en), np.asarray(b.en)
    ka, kb = np.lexsort(np.round(ea.T, 1)), np.lexsort(np.round(eb.T, 1))
    assert np.allclose(ea[ka], eb[kb], atol=0.02)
    assert np.array_equal(np.asarray(a.codes)[:, ka], np.asarray(b.codes)[:, kb])
