"""Region-table build benchmark: tiles/s, peak memory, Ray workers, and what a kill -9 costs.

    .venv/bin/python benchmarks/bench_build.py --tiles 20000 --json                    # plain engine (one process)
    .venv/bin/python benchmarks/bench_build.py --tiles 20000 --ray-workers 2 --json    # local Ray, 2 encoder actors
    .venv/bin/python benchmarks/bench_build.py --tiles 20000 --kill --json             # kill -9 mid-build, then rerun
    .venv/bin/python benchmarks/bench_build.py --quick --json     # 20,000 tiles: plain + kill/resume, Ray 1 and 2
    .venv/bin/python benchmarks/bench_build.py --assemble-tiles 1000000 --json   # memory of assembling 1e6 tiles

Each build is the real ``python -m geoloc_node.cli build-table`` in a child process, with the shipped panorama model
(ONNX Runtime, ``--threads`` per worker, default 1), on a synthetic orthophoto (GeoTIFF, 0.5 m/px, EPSG:32631) with
the smallest square grid of tile positions (50 m tiles every 10 m) holding ``--tiles``. One JSON object per build:
``tiles`` (positions), ``tiles_per_s`` (positions / wall-clock seconds of the whole command: imports, model load, Ray
start, assembly included), ``peak_rss_mb`` (the build process and the processes it waited for; Ray's workers are not
its children, so with Ray it is the driver's), ``workers``, ``resume_lost_tiles`` (tiles encoded before the kill that
the rerun encoded again; null without ``--kill``), ``seconds``, ``encode_tiles_per_s`` (the shards alone, as the
build reports it: actor start and model load included; interpreter, Ray's own start and assembly not: the number to
compare 1 and 2 workers by), and the machine's 1-minute load at the start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GSD, STRIDE, TILE = 0.5, 10.0, 50.0

# The child counts encoded tiles in a file (O_APPEND: the count survives kill -9) so that lost work can be measured.
COUNTING_DRIVER = """
import json, os, sys
from geoloc_node.encoders.base import Encoder
orig = Encoder.encode_tiles
def counted(self, tiles, bins=None):
    out = orig(self, tiles, bins)
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"%d\\n" % len(out))
    os.close(fd)
    return out
Encoder.encode_tiles = counted
from geoloc_node.cli import main
sys.exit(main(json.loads(sys.argv[1])))
"""


def make_geotiff(path: Path, tiles: int) -> int:
    """A textured orthophoto whose tile grid has at least ``tiles`` positions; returns the number of positions."""
    import cv2
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    side = math.ceil(math.sqrt(tiles))
    px = int(round(((side - 1) * STRIDE + TILE) / GSD))
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", driver="GTiff", width=px, height=px, count=3, dtype="uint8", crs="EPSG:32631",
                       transform=from_origin(499_000.0, 5_541_000.0, GSD, GSD), tiled=True, blockxsize=512,
                       blockysize=512) as dst:
        step = 2048  # written in strips: memory stays small whatever the size
        for r0 in range(0, px, step):
            h = min(step, px - r0)
            low = rng.integers(0, 256, (h // 16 + 1, px // 16 + 1, 3), dtype=np.uint8)
            strip = cv2.resize(low, (px, h), interpolation=cv2.INTER_CUBIC)
            noise = rng.integers(0, 40, strip.shape, dtype=np.uint8)
            dst.write(np.moveaxis(cv2.add(strip, noise), 2, 0), window=rasterio.windows.Window(0, r0, px, h))
    return side * side


def run_build(tif: Path, out: Path, workers: int | None, threads: int, counter: Path, kill_after_shards=None,
              shard_side: int = 64):
    """One build in a child process: (seconds of the whole command, seconds the build reported, peak RSS MB)."""
    argv = ["build-table", "--geotiff", str(tif), "--out", str(out), "--threads", str(threads), "--no-progress",
            "--shard-side", str(shard_side)]
    if workers:
        argv += ["--ray", "--ray-workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOURCE_DATE_EPOCH": "1700000000"}
    log = out.with_name(out.name + ".log")
    t0 = time.perf_counter()
    with open(log, "w") as f:  # a file, not a pipe: Ray's log lines must never block the build
        proc = subprocess.Popen([sys.executable, "-c", COUNTING_DRIVER, json.dumps(argv), str(counter)], cwd=ROOT,
                                env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        if kill_after_shards is not None:
            _kill_mid_shard(proc, out, counter, kill_after_shards, shard_side ** 2 // 2)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if kill_after_shards is None and os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"build failed ({os.waitstatus_to_exitcode(status)}):\n{text[-3000:]}")
    m = re.search(r"encoding ([0-9.]+) s", text)
    return seconds, (float(m.group(1)) if m else None), usage.ru_maxrss / 1024.0


def _kill_mid_shard(proc, out: Path, counter: Path, after: int, into_next: int) -> None:
    """SIGKILL the build (its whole process group) once ``after`` shards are on disk and the next one is half
    encoded: the worst honest case short of a full shard."""
    from geoloc_node.build_shards import ShardStore

    store = ShardStore(out)
    while proc.poll() is None:
        done = store.done()
        if len(done) >= after:
            saved = sum(len(store.load(s).ids) for s in done)
            encoded = sum(int(v) for v in counter.read_text().split()) if counter.exists() else 0
            if encoded - saved >= into_next:  # half of the next shard encoded, none of it saved
                os.killpg(proc.pid, signal.SIGKILL)
                return
        time.sleep(0.02)


def one(tiles: int, workers: int | None, threads: int, kill: bool, tmp: Path, shard_side: int = 64) -> dict:
    tif = tmp / f"ortho_{tiles}.tif"
    positions = make_geotiff(tif, tiles) if not tif.exists() else math.ceil(math.sqrt(tiles)) ** 2
    load = os.getloadavg()[0]
    out = tmp / f"t_{workers or 0}_{int(kill)}.gltab"
    counter = tmp / f"count_{workers or 0}_{int(kill)}.txt"
    lost = None
    if kill:
        from geoloc_node.build_shards import ShardStore

        run_build(tif, out, workers, threads, counter, kill_after_shards=2, shard_side=shard_side)
        encoded_before = sum(int(v) for v in counter.read_text().split())
        store = ShardStore(out)
        saved = sum(len(store.load(s).ids) for s in store.done())
        lost = encoded_before - saved
        counter.unlink()
    seconds, encode_s, rss = run_build(tif, out, workers, threads, counter, shard_side=shard_side)
    # Ray's actors encode in other processes, which the counting driver does not reach: a fresh build encodes all
    encoded = sum(int(v) for v in counter.read_text().split()) if counter.exists() else positions
    return {"tiles": positions, "tiles_per_s": round(encoded / seconds, 1), "peak_rss_mb": round(rss, 1),
            "workers": workers or 1, "engine": "ray" if workers else "local", "threads_per_worker": threads,
            "resume_lost_tiles": lost, "encoded_this_run": encoded, "seconds": round(seconds, 2),
            # the shards alone (model load and Ray's actors included; interpreter, Ray's start and assembly not)
            "encode_tiles_per_s": round(encoded / encode_s, 1) if encode_s else None, "shard_side": shard_side,
            "load_1min": round(load, 2)}


def assemble_only(tiles: int, tmp: Path) -> dict:
    """The one step whose memory grows with the table: assembling it from its shard files. Shard files of random
    codes (as the encoder would leave them) over a sparse GeoTIFF's grid, then the real assembly, with the process's
    peak RSS reset in between (Linux clear_refs), so the number is the assembly's."""
    import numpy as np
    import rasterio

    import geoloc_node.table_builder as tb
    from geoloc_node.build_shards import ShardResult, ShardStore
    from geoloc_node.encoders import find_spec
    from geoloc_node.models import shipped_model_path
    from geoloc_node.ortho import OrthoSource, ShardCounts

    side = math.ceil(math.sqrt(tiles))
    px = int(round(((side - 1) * STRIDE + TILE) / GSD))
    tif = tmp / "sparse.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=px, height=px, count=3, dtype="uint8", crs="EPSG:32631",
                       transform=rasterio.transform.from_origin(499_000.0, 5_541_000.0, GSD, GSD), tiled=True,
                       sparse_ok=True):
        pass  # nothing written: a sparse file, the grid is all this step needs
    src = OrthoSource(tif, TILE, STRIDE)
    model = shipped_model_path()
    spec = find_spec(model)[0]
    out = tmp / "assembled.gltab"
    store = ShardStore(out)
    job = store.open_job({"bench": "assemble"})
    rng = np.random.default_rng(0)
    for s in range(src.n_shards):
        r, c = src.shard_positions(s)
        ids = (r[:, None] * src.cols + c[None, :]).ravel()
        lon, lat = src._to_wgs84.transform(*src.centre_xy(ids))
        store.save(ShardResult(s, ids, rng.integers(0, 256, (len(ids), 1, spec.bits // 8), dtype=np.uint8),
                               np.asarray(lat), np.asarray(lon), ShardCounts(len(ids))))
    before = _rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
    t0 = time.perf_counter()
    res = tb._assemble(store, src, out, spec, tb.BuildConfig(), job, model, 1)
    return {"tiles": res.tiles, "assemble_s": round(time.perf_counter() - t0, 2), "rss_before_mb": before,
            "peak_rss_mb": _rss_mb("VmHWM"), "table_mb": round(out.stat().st_size / 2**20, 1),
            "load_1min": round(os.getloadavg()[0], 2)}


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024.0, 1)
    return float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=20_000)
    ap.add_argument("--ray-workers", type=int, default=None, help="build with a local Ray and this many encoders")
    ap.add_argument("--threads", type=int, default=1, help="encoder threads per worker")
    ap.add_argument("--shard-side", type=int, default=64, help="build-table --shard-side (64: 4,096 tiles a shard)")
    ap.add_argument("--kill", action="store_true", help="kill -9 the build mid-shard first, then rerun it")
    ap.add_argument("--quick", action="store_true", help="20,000 tiles: plain with kill/resume, Ray 1 and 2 workers")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--assemble-tiles", type=int, default=None, help="only measure assembling a table of this many "
                                                                     "tiles from shard files (memory, time)")
    args = ap.parse_args(argv)
    if args.assemble_tiles:
        with tempfile.TemporaryDirectory(prefix="bench_build_") as d:
            print(json.dumps(assemble_only(args.assemble_tiles, Path(d))))
        return 0
    if args.kill and args.ray_workers:
        ap.error("--kill measures lost tiles in the plain engine only (Ray's actors are not counted)")
    runs = ([(20_000, None, True), (20_000, 1, False), (20_000, 2, False)] if args.quick
            else [(args.tiles, args.ray_workers, args.kill)])
    with tempfile.TemporaryDirectory(prefix="bench_build_") as d:
        for tiles, workers, kill in runs:
            r = one(tiles, workers, args.threads, kill, Path(d), args.shard_side)
            print(json.dumps(r) if args.json else
                  f"{r['tiles']:,} tiles, {r['engine']} x{r['workers']}: {r['tiles_per_s']:.0f} tiles/s, peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB, lost on resume {r['resume_lost_tiles']} (load {r['load_1min']})",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
