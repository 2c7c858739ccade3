"""Replay throughput (x real time) and per-frame latency breakdown (decode, encode, search, filter).

    python benchmarks/bench_replay.py                      # uses the outputs of `geoloc demo` (geoloc_demo/)
    python benchmarks/bench_replay.py BAG --table T.gltab [--model M.json] [--gps-outage 40:160] [--backend onnxruntime]

Every camera frame is processed inside the outage (the pipeline's rate limit applies: pipeline.max_frame_rate_hz);
the real-time factor is message time / wall time of the whole replay, reading and writing the bags included.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bag", nargs="?", default="geoloc_demo/drive")
    ap.add_argument("--table", default="geoloc_demo/table.gltab")
    ap.add_argument("--model")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--gps-outage", action="append", default=[])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from geoloc_node.config import GeolocConfig
    from geoloc_node.demo import default_model
    from geoloc_node.encoders import load_encoder
    from geoloc_node.replay import parse_outage, replay
    from geoloc_node.table import open_table

    if not Path(args.bag).exists():
        print(f"no bag at {args.bag}: run `geoloc demo` first or give BAG --table", file=sys.stderr)
        return 2
    cfg = GeolocConfig.from_flat(dict(s.split("=", 1) for s in args.set))
    enc = load_encoder(args.model or default_model(), args.backend)
    table = open_table(args.table)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = replay(args.bag, Path(tmp) / "out", cfg, enc, table,
                     outages=[parse_outage(o) for o in args.gps_outage], progress=False)
        wall = time.perf_counter() - t0
    lat = {}
    from geoloc_node.pipeline import _STAGES  # noqa: PLC0415 - the stage names

    st = res.status["latency"]
    for s in _STAGES:
        lat[s] = {k: (round(v, 2) if v is not None else None) for k, v in st[s].items()}
    dur = res.last_stamp - res.first_stamp
    out = {"bag": args.bag, "message_time_s": round(dur, 1), "wall_s": round(wall, 1),
           "realtime_factor": round(dur / wall, 2), "frames_processed": res.status["counts"]["frames_processed"],
           "latency_ms": lat, "backend": enc.backend, "machine": f"{platform.machine()} {platform.processor()}",
           "cpus": __import__("os").cpu_count()}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"replay of {dur:.0f} s of messages in {wall:.1f} s: {out['realtime_factor']}x real time "
              f"({out['frames_processed']} frames through the encoder, backend {enc.backend}, {out['cpus']} CPUs)")
        print(f"{'stage':<8}{'mean ms':>10}{'p95 ms':>10}")
        for s, v in lat.items():
            print(f"{s:<8}{v['mean_ms'] if v['mean_ms'] is not None else float('nan'):>10.2f}"
                  f"{v['p95_ms'] if v['p95_ms'] is not None else float('nan'):>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
