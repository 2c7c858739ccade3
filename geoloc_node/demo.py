"""``geoloc demo``: the whole chain on a fresh machine, with no argument.

1. build a small synthetic world (never used in training: its own seed) and write its aerial GeoTIFF;
2. build the region table of that orthophoto with the shipped model's aerial branch;
3. record a drive as a rosbag2 with a two-minute GPS outage;
4. replay it through the pipeline (:mod:`geoloc_node.replay`), and odometry alone and the paper's single-frame
   estimate beside it;
5. print the error inside the outage for the three, and where the report is.

``--json`` prints one JSON object instead, with these keys:

* ``filter``, ``single_frame``, ``odometry_only``: error statistics inside the outage (``n``, ``median_m``,
  ``p95_m``, ``max_m``, ``mean_m``), for the full filter, the paper's top-5 mean and odometry alone;
* ``availability``: share of the outage with a trustworthy estimate at most 1 s old;
* ``end_of_outage``: errors in the last 10 s of the outage (filter, odometry alone, ``p95_ratio``);
* ``time_to_first_visual_s``: from the outage start to the first camera-based estimate;
* ``health``: the monitor's transitions and detection delays;
* ``integrity``: trustworthy and hazardous estimates, 95 % ellipse coverage, NEES (the report's integrity section);
* ``interrupted``: the replay was stopped part way (exit code 130);
* ``timings_s``: seconds per step (world, table, drive, replay, total); ``realtime_factor`` of the replay;
* ``report``, ``report_png``, ``bag``, ``out_dir``: paths; ``seed``, ``world_size_m``, ``outage_s``, ``camera``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from .errors import GeolocError
from .signals import stop_signals_interrupt

DEFAULT_SEED = 9001  # training worlds use small seeds; this one is held out
DEFAULT_SIZE_M = 700.0
DEFAULT_OUTAGE = (40.0, 160.0)
DEFAULT_DURATION_S = 175.0
#: camera rate of the demo drive: the pipeline encodes at most pipeline.max_frame_rate_hz (4 Hz) anyway, and rendering
#: fewer frames keeps the demo under three minutes on two cores
DEMO_IMAGE_RATE_HZ = 5.0


#: marks a folder as a demo output that a later run may empty
_MARKER = ".geoloc_demo"

def default_model(mode: str = "panorama") -> Path:
    """The shipped model's sidecar (ground branch) for a camera mode, from geoloc_node/models."""
    from .models import shipped_model_path

    try:
        return shipped_model_path(mode)
    except (FileNotFoundError, ValueError) as exc:
        raise GeolocError(f"{exc}; or pass --model") from None


def run_demo(out_dir, seed: int = DEFAULT_SEED, size_m: float = DEFAULT_SIZE_M, outage=DEFAULT_OUTAGE,
             duration_s: float = DEFAULT_DURATION_S, camera: str = "panorama", model=None, backend: str = "auto",
             progress: bool = True, log=print) -> dict:
    """Run the demo into ``out_dir`` (emptied first) and return the metrics dictionary."""
    from .config import GeolocConfig
    from .encoders import find_spec
    from .pipeline import close_encoder, load_encoder_and_table
    from .replay import replay
    from .report import compute_metrics, write_report

    try:
        from .synth.drive import DriveConfig
        from .synth.world import WorldConfig, make_world
    except ImportError as exc:
        raise GeolocError(f"the synthetic world is not available ({exc})") from None
    from .table_builder import build_table_from_geotiff

    model = Path(model) if model else default_model(camera)
    out = Path(out_dir)
    if out.exists():
        # Only ever delete an earlier demo's output: a mistyped --out must not wipe someone's folder.
        if any(out.iterdir()) and not (out / _MARKER).exists():
            raise GeolocError(f"{out} exists and is not an earlier demo output; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / _MARKER).write_text("written by geoloc demo; the next run empties this folder\n")
    timings = {}
    t_all = t = time.perf_counter()

    log(f"[1/4] world: {size_m:g} m x {size_m:g} m, seed {seed}")
    world = make_world(WorldConfig(size_m=size_m, seed=seed))
    aerial = world.write_geotiff(out / "aerial.tif")
    timings["world"] = time.perf_counter() - t

    t = time.perf_counter()
    spec, _ = find_spec(model)
    log(f"[2/4] region table: {model.name} ({spec.mode}, {spec.bits} bits), 50 m tiles every 10 m")
    table_path = build_table_from_geotiff(aerial, model, out / "table.gltab", tile_size_m=50.0, stride_m=10.0,
                                          progress=progress, backend=backend)
    config = GeolocConfig.from_flat({"model.path": str(model), "model.backend": backend, "table.path": str(table_path)})
    encoder, table = load_encoder_and_table(config)  # as the node and replay load them
    timings["table"] = time.perf_counter() - t

    t = time.perf_counter()
    log(f"[3/4] drive: {duration_s:g} s, {camera} camera, GPS outage {outage[0]:g}-{outage[1]:g} s")
    bag = out / "drive"
    _record_demo_drive(world, bag, DriveConfig(duration_s=duration_s, seed=seed, camera=camera,
                                               image_rate_hz=DEMO_IMAGE_RATE_HZ,
                                               gps_faults=[("outage", outage[0], outage[1])]), progress)
    timings["drive"] = time.perf_counter() - t

    t = time.perf_counter()
    log("[4/4] replay")
    try:
        res = replay(bag, out / "replay", config, encoder, table, progress=progress)
    finally:
        close_encoder(encoder)  # replay leaves the encoder to whoever loaded it
    timings["replay"] = time.perf_counter() - t
    m = compute_metrics(res)
    paths = write_report(res, m, out / "replay", aerial=aerial, table=table)
    timings["total"] = time.perf_counter() - t_all
    io = m["inside_outage"]
    return {
        "filter": io["filter"], "single_frame": io["single_frame"], "odometry_only": io["odometry_only"],
        "availability": io["availability"], "end_of_outage": io["end_of_outage"],
        "time_to_first_visual_s": io["time_to_first_visual_s"], "health": m["health"],
        "timings_s": {k: round(v, 1) for k, v in timings.items()}, "realtime_factor": m["realtime_factor"],
        "report": str(paths["json"]), "report_png": str(paths.get("png", "")), "bag": str(out / "replay" / "bag"),
        "out_dir": str(out), "seed": seed, "world_size_m": size_m, "outage_s": list(outage), "camera": camera,
        "model": str(model), "backend": encoder.backend, "evaluation_spans_s": m["evaluation_spans_s"],
        "interrupted": res.interrupted, "integrity": m["integrity"],
    }


def _record_demo_drive(world, bag, config, progress: bool) -> None:
    from .progress import progress_bar
    from .synth.drive import record_drive

    bar = progress_bar(int(config.duration_s * DEMO_IMAGE_RATE_HZ), enabled=progress, unit="frame", desc="drive")

    def tick(done, total):
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        record_drive(world, bag, config, progress=tick)
    finally:
        bar.close()


def format_table(r: dict) -> str:
    rows = [("full filter (this)", r["filter"]), ("single frame (paper top-5)", r["single_frame"]),
            ("odometry alone", r["odometry_only"])]
    lines = [f"error inside the {r['outage_s'][1] - r['outage_s'][0]:g} s GPS outage ({r['camera']} camera, world "
             f"seed {r['seed']}):",
             f"  {'':<28}{'median m':>10}{'p95 m':>10}{'max m':>10}"]
    for name, s in rows:
        if s.get("n"):
            lines.append(f"  {name:<28}{s['median_m']:>10.1f}{s['p95_m']:>10.1f}{s['max_m']:>10.1f}")
        else:
            lines.append(f"  {name:<28}{'n/a':>10}")
    e = r["end_of_outage"]
    lines.append(f"  availability {100 * (r['availability'] or 0):.1f}%; last 10 s p95: filter "
                 f"{e['filter'].get('p95_m')} m, odometry alone {e['odometry_only'].get('p95_m')} m "
                 f"(ratio {e.get('p95_ratio')})")
    tt = r["timings_s"]
    lines.append(f"  time: world {tt['world']} s, table {tt['table']} s, drive {tt['drive']} s, "
                 f"replay {tt['replay']} s ({r['realtime_factor']}x real time), total {tt['total']} s")
    lines.append(f"report: {r['report']} and {r['report_png']}\noutput bag: {r['bag']}")
    return "\n".join(lines)


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the whole chain on a synthetic world with a GPS outage",
                              description=__doc__.split("\n\n")[0],
                              epilog=__doc__[__doc__.index("``--json``"):],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"world seed (default {DEFAULT_SEED})")
    p.add_argument("--out", default="geoloc_demo", help="output folder, emptied first (default geoloc_demo)")
    p.add_argument("--size", type=float, default=DEFAULT_SIZE_M, help="world side in metres")
    p.add_argument("--camera", default="panorama", choices=("panorama", "pinhole"))
    p.add_argument("--model", help="model sidecar JSON (default: the shipped model)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object (keys below)")
    p.set_defaults(func=main)


def main(args) -> int:
    quiet = bool(args.json)
    try:
        with stop_signals_interrupt():  # SIGTERM/SIGHUP: the replay closes its bag and marks its report interrupted
            r = run_demo(args.out, seed=args.seed, size_m=args.size, camera=args.camera, model=args.model,
                         backend=args.backend, progress=not quiet,
                         log=(lambda *a: print(*a, file=sys.stderr)) if quiet else print)
    except GeolocError as exc:
        print(f"geoloc demo: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(r) if args.json else format_table(r))
    if r["interrupted"]:
        print("geoloc demo: interrupted during the replay: the report covers what was processed", file=sys.stderr)
        return 130
    return 0
