"""build-table stopped by SIGTERM or SIGHUP (timeout, systemd, docker stop, a closed SSH session) behaves as Ctrl-C:
exit code 130, finished shards kept, no table half-written, and the same command resumes to the same table. Runs the
real command in a subprocess with the shipped model (ONNX Runtime)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from geoloc_node.build_shards import ShardStore  # noqa: E402
from geoloc_node.cli import main as geoloc  # noqa: E402
from geoloc_node.table import open_table  # noqa: E402
from geoloc_node.table_builder import build_table_from_geotiff  # noqa: E402

from .conftest import toy_world  # noqa: E402

ORTHO = "+proj=ortho +lat_0=47.0 +lon_0=8.0 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
ROOT = Path(__file__).resolve().parents[2]
SHARD_SIDE = 4  # 16 tiles per shard
STOP_AT_SHARD = 4  # the signal arrives while the 4th shard is being encoded: 3 shards are done

# The child runs `geoloc build-table` with the source slowed down at one batch; it says when it is there, so that the
# signal arrives mid-build (not during the imports, where the default handler would just kill it).
DRIVER = f"""
import json, pathlib, sys, time
import geoloc_node.table_builder as tb
encode, calls = tb.encode_shard, [0]
def slow_shard(*a, **k):
    calls[0] += 1
    if calls[0] == {STOP_AT_SHARD}:
        pathlib.Path(sys.argv[2]).touch()
        time.sleep(120)
    return encode(*a, **k)
tb.encode_shard = slow_shard
from geoloc_node.cli import main
sys.exit(main(json.loads(sys.argv[1])))
"""


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


def _stop_mid_build(argv: list[str], ready: Path, signum: int) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(argv), str(ready)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.communicate(timeout=10)[1] if proc.poll() is not None else "no progress"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stop_signal_keeps_progress_and_the_rerun_resumes(geotiff, tmp_path, capsys, signum):
    from geoloc_node.models import shipped_model_path

    out = tmp_path / "region.gltab"
    argv = ["build-table", "--geotiff", str(geotiff), "--out", str(out), "--stride-m", "10", "--shard-side",
            str(SHARD_SIDE), "--threads", "1"]
    stopped = _stop_mid_build(argv, tmp_path / "ready", signum)
    done = STOP_AT_SHARD - 1
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr and f"stopped by {signal.Signals(signum).name}" in stopped.stderr
    assert f"stopped with {done} of 16 shards kept" in stopped.stderr
    assert "\r" not in stopped.stderr and "tile/s" not in stopped.stderr  # no progress bar into a pipe
    store = ShardStore(out)
    assert store.done() == set(range(done)) and not out.exists()

    assert geoloc(argv) == 0  # the same command again
    assert f"resuming {out}: {done} of 16 shards already encoded" in capsys.readouterr().err
    assert not store.dir.exists()
    ref = build_table_from_geotiff(geotiff, shipped_model_path(), tmp_path / "ref.gltab", tile_size_m=50,
                                   stride_m=10, progress=False, threads=1, shard_side=SHARD_SIDE)
    resumed, whole = open_table(out), open_table(ref)
    assert resumed.n_tiles == whole.n_tiles == 256
    assert np.array_equal(np.asarray(resumed.codes), np.asarray(whole.codes))
