"""Replay throughput (x real time) and per-frame latency breakdown (decode, encode, search, filter).

    python benchmarks/bench_replay.py                      # uses the outputs of `geoloc demo` (geoloc_demo/)
    python benchmarks/bench_replay.py BAG --table T.gltab [--model M.json] [--gps-outage 40:160] [--backend onnxruntime]
    python benchmarks/bench_replay.py --repeats 3 --against HEAD   # median of 3, interleaved with HEAD's prediction
    python benchmarks/bench_replay.py --predict --against HEAD     # the filter's odometry prediction alone
    python benchmarks/bench_replay.py --tree HEAD --repeats 3      # the whole package at HEAD against the working tree

Every camera frame is processed inside the outage (the pipeline's rate limit applies: pipeline.max_frame_rate_hz);
the real-time factor is message time / wall time of the whole replay, reading and writing the bags included.

``--against REV`` runs the same measurement with the odometry prediction of the tracking filter as it is at git
revision REV (``predict_odometry``, ``predict_time``, ``_diffuse``, ``_prior_odometry`` of
``geoloc_node/tracking.py``), interleaved with the working tree's (old, new, old, new, ...), so both see the same
machine load; the median of each is printed. ``--predict`` times ``ParticleFilter.predict_odometry`` alone: a 50 Hz
drive on a gentle curve, the configured number of particles (1000 by default), microseconds per odometry message.

``--tree REV`` compares whole packages: ``geoloc_node`` as it is at REV (``git archive`` into a temporary folder)
against the working tree's, each side in its own fresh process per round (old, new, old, new, ...), each process
replaying ``--per-process`` times (the first replay pays the imports and kernel loads), configured and loaded as
``geoloc demo`` does (``model.path``, ``model.backend``, ``table.path``; a fresh encoder per replay). It prints the
real-time factor and message time / CPU time of each replay, the medians, the load average, and whether the two
sides' last replays gave the same estimates, odometry-only baseline, single-frame estimates, GPS rows, health
changes, counts and output bag messages (all topics but /diagnostics, which carries measured latencies).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREDICTION = ("predict_odometry", "predict_time", "_diffuse", "_prior_odometry")  # what --against swaps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bag", nargs="?", default="geoloc_demo/drive")
    ap.add_argument("--table", default="geoloc_demo/table.gltab")
    ap.add_argument("--model")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--gps-outage", action="append", default=[])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="replays (or --predict rounds); the median is reported")
    ap.add_argument("--against", metavar="REV", help="also measure the tracking filter of this git revision")
    ap.add_argument("--predict", action="store_true", help="time the filter's odometry prediction alone")
    ap.add_argument("--tree", metavar="REV", help="also replay with the whole package of this git revision")
    ap.add_argument("--per-process", type=int, default=2, help="with --tree: replays per process")
    ap.add_argument("--worker", metavar="DUMP", help=argparse.SUPPRESS)  # --tree's child: replay, write DUMP
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.tree:
        return tree_main(args)
    if args.predict:
        return predict_main(args)

    from geoloc_node.config import GeolocConfig
    from geoloc_node.demo import default_model
    from geoloc_node.encoders import load_encoder
    from geoloc_node.replay import replay
    from geoloc_node.replay_cli import parse_outage
    from geoloc_node.table import open_table

    if not Path(args.bag).exists():
        print(f"no bag at {args.bag}: run `geoloc demo` first or give BAG --table", file=sys.stderr)
        return 2
    if args.against or args.repeats > 1:
        return repeated_main(args)
    cfg = GeolocConfig.from_flat(dict(s.split("=", 1) for s in args.set))
    enc = load_encoder(args.model or default_model(), args.backend)
    table = open_table(args.table)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = replay(args.bag, Path(tmp) / "out", cfg, enc, table,
                     outages=[parse_outage(o) for o in args.gps_outage], progress=False)
        wall = time.perf_counter() - t0
    enc.close()
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


def tracking_at(rev: str) -> types.ModuleType:
    """``geoloc_node/tracking.py`` as it is at git revision ``rev``, loaded as a module of the installed package."""
    src = subprocess.run(["git", "show", f"{rev}:geoloc_node/tracking.py"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    name = f"geoloc_node._tracking_at_{abs(hash(rev))}"
    mod = types.ModuleType(name)
    mod.__package__ = "geoloc_node"
    sys.modules[name] = mod  # dataclasses look their module up here
    exec(compile(src, f"{rev}:geoloc_node/tracking.py", "exec"), mod.__dict__)
    return mod


def filters(args) -> dict:
    """{label: ParticleFilter class}: the working tree's and, with --against, the working tree's with REV's
    prediction methods (the rest of the class follows the pipeline as it is now, so it has to be today's)."""
    from geoloc_node.tracking import ParticleFilter

    out = {}
    if args.against:
        old = tracking_at(args.against).ParticleFilter
        methods = {name: getattr(old, name) for name in PREDICTION if hasattr(old, name)}
        out[f"{args.against} predict"] = type("ParticleFilterPredictionAtRev", (ParticleFilter,), methods)
    out["working tree"] = ParticleFilter
    return out


def curved_drive(steps: int, hz: float = 50.0):
    from geoloc_node.records import Odometry

    out = []
    for i in range(steps):
        t = i / hz
        yaw = 0.1 * math.sin(0.05 * t)
        out.append(Odometry(stamp=t, x=10 * t * math.cos(yaw), y=10 * t * math.sin(yaw), yaw=yaw, v=10.0,
                            yaw_rate=0.005))
    return out


def predict_main(args) -> int:
    """Microseconds per ``predict_odometry`` call, each filter class in turn, ``--repeats`` rounds."""
    from geoloc_node.config import GeolocConfig
    from geoloc_node.search import TableSearch
    from geoloc_node.table import open_table

    cfg = GeolocConfig.from_flat(dict(s.split("=", 1) for s in args.set)).tracking
    search = TableSearch(open_table(args.table))
    odometry = curved_drive(3000)
    times: dict = {}
    for _ in range(max(args.repeats, 5)):
        for label, cls in filters(args).items():
            pf = cls(search, cfg)
            pf.init_gaussian(0.0, 0.0, [[4.0, 0.0], [0.0, 4.0]], 0.0)
            t0 = time.perf_counter()
            for odom in odometry:
                pf.predict_odometry(odom)
            times.setdefault(label, []).append((time.perf_counter() - t0) / len(odometry) * 1e6)
    print(f"predict_odometry, {cfg.n_particles} particles, {len(odometry)} messages per round, "
          f"{len(times[label])} rounds interleaved; load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    for label, t in times.items():
        print(f"  {label:<16} median {statistics.median(t):7.1f} us   rounds: {' '.join(f'{x:.0f}' for x in t)}")
    return 0


def repeated_main(args) -> int:
    """Real-time factor of ``--repeats`` whole replays (the working tree's filter and REV's interleaved); medians."""
    import geoloc_node.pipeline as pipeline_module
    from geoloc_node.config import GeolocConfig
    from geoloc_node.demo import default_model
    from geoloc_node.encoders import load_encoder
    from geoloc_node.replay import replay
    from geoloc_node.replay_cli import parse_outage
    from geoloc_node.table import open_table

    cfg = GeolocConfig.from_flat(dict(s.split("=", 1) for s in args.set))
    table = open_table(args.table)
    factors: dict = {}
    for _ in range(max(args.repeats, 1)):
        for label, cls in filters(args).items():
            pipeline_module.ParticleFilter = cls  # the one place the pipeline makes its filter
            # a fresh encoder each replay, not timed (each replay starts as a new process would; replay leaves the
            # encoder open, so it is closed here)
            enc = load_encoder(args.model or default_model(), args.backend)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = replay(args.bag, Path(tmp) / "out", cfg, enc, table,
                             outages=[parse_outage(o) for o in args.gps_outage], progress=False)
                wall = time.perf_counter() - t0
            enc.close()
            if res.status["counts"]["frames_processed"] == 0 and res.topics.camera is not None:
                raise SystemExit(f"{label}: no camera frame was processed; the measurement would not be a replay")
            factors.setdefault(label, []).append((res.last_stamp - res.first_stamp) / wall)
    print(f"replay of {args.bag}, {len(factors[label])} runs each, interleaved; load average "
          f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    for label, f in factors.items():
        print(f"  {label:<16} median {statistics.median(f):5.1f}x real time   runs: {' '.join(f'{x:.1f}' for x in f)}")
    return 0


def demo_config(args):
    """The configuration ``geoloc demo`` replays with (plus ``--set``)."""
    from geoloc_node.config import GeolocConfig
    from geoloc_node.demo import default_model

    flat = {"model.path": str(Path(args.model or default_model()).resolve()), "model.backend": args.backend,
            "table.path": str(Path(args.table).resolve())}
    return GeolocConfig.from_flat({**flat, **dict(s.split("=", 1) for s in args.set)})


def worker_main(args) -> int:
    """--tree's child process: ``--per-process`` replays of the bag with the geoloc_node on PYTHONPATH; prints one
    JSON line (real-time factors, message time / CPU time, where geoloc_node came from) and pickles the last replay's
    results and the digest of its output bag to ``--worker``."""
    import hashlib
    import pickle

    from rosbags.rosbag2 import Reader

    import geoloc_node
    from geoloc_node.pipeline import load_encoder_and_table
    from geoloc_node.replay import replay
    from geoloc_node.replay_cli import parse_outage

    config = demo_config(args)
    rtf, cpu_rtf = [], []
    for i in range(max(args.per_process, 1)):
        encoder, table = load_encoder_and_table(config)  # fresh each replay, as a new process would load them
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            res = replay(args.bag, Path(tmp) / "out", config, encoder, table,
                         outages=[parse_outage(o) for o in args.gps_outage], progress=False)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            encoder.close()
            dur = res.last_stamp - res.first_stamp
            rtf.append(dur / wall)
            cpu_rtf.append(dur / cpu)
            if i == max(args.per_process, 1) - 1:
                digest = hashlib.sha256()
                with Reader(Path(tmp) / "out" / "bag") as reader:
                    for conn, stamp, raw in reader.messages():
                        if "diagnostics" not in conn.topic:  # /diagnostics carries latencies measured this run
                            digest.update(f"{conn.topic} {stamp} ".encode() + bytes(raw))
    out = {"estimates": res.estimates, "odometry_only": res.odometry_only, "single_frame": res.single_frame,
           "gps": res.gps, "health": res.health, "counts": res.counts, "status_counts": res.status["counts"],
           "output_bag": digest.hexdigest()}
    with open(args.worker, "wb") as f:
        pickle.dump(out, f)
    print(json.dumps({"package": geoloc_node.__file__, "rtf": rtf, "cpu_rtf": cpu_rtf}))
    return 0


def tree_main(args) -> int:
    """The package at ``--tree REV`` against the working tree's: fresh processes, interleaved; medians; identity."""
    import pickle

    if not Path(args.bag).exists():
        print(f"no bag at {args.bag}: run `geoloc demo` first or give BAG --table", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        old_root = Path(tmp) / "rev"
        old_root.mkdir()
        archive = subprocess.run(["git", "archive", args.tree], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_root)], input=archive, check=True)
        roots = {args.tree: old_root, "working tree": REPO}
        passed = ["--table", str(Path(args.table).resolve()), "--backend", args.backend,
                  "--per-process", str(args.per_process)]
        passed += ["--model", str(Path(args.model).resolve())] if args.model else []
        for o in args.gps_outage:
            passed += ["--gps-outage", o]
        for kv in args.set:
            passed += ["--set", kv]
        runs: dict = {label: [] for label in roots}
        load = [os.getloadavg()[0]]
        for _ in range(max(args.repeats, 1)):
            for label, root in roots.items():
                dump = Path(tmp) / f"{len(runs[label])}_{label.replace(' ', '_')}.pkl"
                proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(Path(args.bag).resolve()),
                                       *passed, "--worker", str(dump)], cwd=tmp, capture_output=True, text=True,
                                      env={**os.environ, "PYTHONPATH": str(root)})
                if proc.returncode:
                    print(proc.stderr, file=sys.stderr)
                    return proc.returncode
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                if not Path(got["package"]).resolve().is_relative_to(root.resolve()):
                    print(f"{label}: geoloc_node came from {got['package']}, not {root}", file=sys.stderr)
                    return 1
                runs[label].append((got, dump))
                load.append(os.getloadavg()[0])
        print(f"replay of {args.bag}: {max(args.repeats, 1)} processes per side, {args.per_process} replays each, "
              f"interleaved; load average {min(load):.2f}-{max(load):.2f}, {os.cpu_count()} CPUs")
        for label, rs in runs.items():
            first = [g["rtf"][0] for g, _ in rs]
            later = [x for g, _ in rs for x in g["rtf"][1:]]
            cpu = [x for g, _ in rs for x in g["cpu_rtf"]]
            print(f"  {label:<14} first replay in a process: median {statistics.median(first):5.1f}x; later: "
                  + (f"median {statistics.median(later):5.1f}x" if later else "-")
                  + f"; message time / CPU time median {statistics.median(cpu):5.1f}")
            print(f"  {'':<14} real-time factors: " + " | ".join(" ".join(f"{x:.1f}" for x in g["rtf"]) for g, _ in rs))
        with open(runs[args.tree][-1][1], "rb") as f:
            old = pickle.load(f)
        with open(runs["working tree"][-1][1], "rb") as f:
            new = pickle.load(f)
        same = {key: repr(old[key]) == repr(new[key]) for key in old}
        print("  identical results: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))
    return 0 if all(same.values()) else 3


if __name__ == "__main__":
    sys.exit(main())
