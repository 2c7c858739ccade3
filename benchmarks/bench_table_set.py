"""Table set vs one file: memory of the searching process and window-search latency, at 1e7 tiles.

    .venv/bin/python benchmarks/bench_table_set.py --tiles 10000000 --json     # about 2 min, 1.5 GB of temp files
    .venv/bin/python benchmarks/bench_table_set.py --tiles 1000000 --json      # quick

The same random 256-bit codes on a square grid (10 m stride) are written as one file and as a set of 2 km cells. Each
is then searched in a fresh child process as the node does (opened without checksums, ``TableSearch``, one thread):
``--windows`` top-5 window searches of ``--radius-m`` (400 m: about 5,000 tiles), centred along a drive (10 m per
query) or at random over the whole region (cold pages every time: the worst case), then ``--topk`` whole-table
top-5 searches (a cold start). Printed per layout and kind of windows: median and p99 window latency, RSS after the
window searches and after the whole-table searches (VmRSS, MB), its peak (VmHWM), and how often a cell was mapped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import json, os, sys, time
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[v] = "1"
import numpy as np
from geoloc_node.search import TableSearch
from geoloc_node.table import open_table
path, windows, radius, topk, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
t = open_table(path, verify=False)
s = TableSearch(t)
s.warm_up()
rng = np.random.default_rng(1)
cov = t.coverage()
q = rng.integers(0, 256, 32, dtype=np.uint8)
lat = []
lo_e, hi_e = cov["east_min"] + radius, cov["east_max"] - radius
lo_n, hi_n = cov["north_min"] + radius, cov["north_max"] - radius
e, n, heading = (lo_e + hi_e) / 2, (lo_n + hi_n) / 2, 0.0
for _ in range(windows):
    if mode == "random":  # anywhere: every query lands on cold pages (the worst case)
        e, n = rng.uniform(lo_e, hi_e), rng.uniform(lo_n, hi_n)
    else:  # a drive: 10 m per frame (100 m/s at 10 Hz, fast), turning a little, bouncing off the edges
        heading += rng.normal(0, 0.05)
        e, n = e + 10 * np.sin(heading), n + 10 * np.cos(heading)
        if not (lo_e < e < hi_e and lo_n < n < hi_n):
            heading += np.pi
            e, n = min(max(e, lo_e), hi_e), min(max(n, lo_n), hi_n)
    t0 = time.perf_counter()
    s.topk_window(q, e, n, radius, 5)
    lat.append(time.perf_counter() - t0)
after_windows = rss("VmRSS")
t0 = time.perf_counter()
for _ in range(topk):
    s.topk(q, 5)
topk_ms = (time.perf_counter() - t0) / max(topk, 1) * 1e3
a = np.array(lat) * 1e3
print(json.dumps({"window_median_ms": round(float(np.median(a)), 3),
                  "window_p99_ms": round(float(np.percentile(a, 99)), 3), "rss_after_windows_mb": after_windows,
                  "topk_ms": round(topk_ms, 1),
                  "rss_after_topk_mb": rss("VmRSS"), "peak_rss_mb": rss("VmHWM"),
                  "cells_opened": getattr(t, "opened_cells", None)}))
"""


def write_both(tmp: Path, tiles: int, cell_m: float) -> tuple[Path, Path]:
    import numpy as np

    from geoloc_node.geodesy import LocalFrame
    from geoloc_node.table import write_table
    from geoloc_node.table_set import write_table_set

    side = int(np.ceil(np.sqrt(tiles)))
    ticks = (np.arange(side) - side / 2) * 10.0
    east, north = (a.ravel()[:tiles] for a in np.meshgrid(ticks, ticks))
    lat, lon = LocalFrame(47.3769, 8.5417).to_latlon(east, north)
    codes = np.random.default_rng(0).integers(0, 256, (tiles, 32), dtype=np.uint8)
    kw = dict(bits=256, tile_size_m=50.0, stride_m=10.0, encoder_fingerprint="bench")
    one = write_table(tmp / "one.gltab", codes, lat, lon, **kw)
    tset = write_table_set(tmp / "set", codes, lat, lon, shard_m=cell_m, **kw)
    return one, tset


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=10_000_000)
    ap.add_argument("--cell-m", type=float, default=2000.0)
    ap.add_argument("--windows", type=int, default=2000)
    ap.add_argument("--radius-m", type=float, default=400.0)
    ap.add_argument("--topk", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_set_") as d:
        one, tset = write_both(Path(d), args.tiles, args.cell_m)
        for (name, path), mode in itertools.product((("one file", one), ("set", tset)), ("drive", "random")):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(args.windows), str(args.radius_m),
                                  str(args.topk), mode], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 capture_output=True, text=True, check=True)
            r = {"layout": name, "windows": mode, "tiles": args.tiles,
                 **json.loads(out.stdout.strip().splitlines()[-1]),
                 "seconds": round(time.perf_counter() - t0, 1), "load_1min": round(load, 2)}
            print(json.dumps(r) if args.json else r, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
