"""The ``geoloc replay`` command: options -> configuration -> :func:`geoloc_node.replay.replay` -> report.

Exit codes: 0 done, 2 the bag (or an option) cannot be used, with the reason on stderr, 130 interrupted (Ctrl-C,
SIGTERM, SIGHUP: the output bag and a report marked interrupted are still written).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from .config import GeolocConfig
from .errors import GeolocError


def parse_outage(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"--gps-outage {text!r}: expected START:END in seconds from the bag start") from None
    if not (math.isfinite(a) and math.isfinite(b) and b > a >= 0):
        raise ValueError(f"--gps-outage {text!r}: need 0 <= START < END")
    return a, b


def _outage_arg(text):
    try:
        return parse_outage(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers) -> None:
    p = subparsers.add_parser("replay", help="replay a rosbag2 through the pipeline and write a report",
                              description="A rosbag2 through the pipeline: an output bag of what the node would "
                              "publish, and a report (report.json, report.png).")
    p.add_argument("bag", help="rosbag2 directory (sqlite3 or MCAP)")
    p.add_argument("--table", help="region table (.gltab); without it only the GPS health monitor runs")
    p.add_argument("--model", help="camera model (.json sidecar or .onnx); default: model.path, else the shipped model")
    p.add_argument("--backend", help="encoder backend: auto, onnxruntime, tensorrt, torch (default: model.backend)")
    p.add_argument("--config", help="YAML parameters (config/geoloc.yaml format)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter, e.g. --set tracking.n_particles=300 (repeatable)")
    p.add_argument("--gps-outage", action="append", default=[], type=_outage_arg, metavar="START:END",
                   help="drop GPS between these seconds from the bag start (repeatable)")
    p.add_argument("--out", help="output folder (default: a new replay_<bag name>[.N] folder here)")
    p.add_argument("--force", action="store_true", help="write into --out even if it holds files (replaced)")
    p.add_argument("--aerial", help="GeoTIFF to draw the trajectory over in the report")
    p.add_argument("--camera-topic")
    p.add_argument("--gps-topic")
    p.add_argument("--odom-topic")
    p.add_argument("--truth-topic", help="NavSatFix ground truth (default: a NavSatFix topic named *truth*)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (there is none off a terminal)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=main)


def load_config(args) -> GeolocConfig:
    """--config YAML, then --set KEY=VALUE overrides, then --table/--model/--backend."""
    cfg = GeolocConfig.from_yaml(args.config) if getattr(args, "config", None) else GeolocConfig()
    flat = {}
    for item in getattr(args, "set", []) or []:
        if "=" not in item:
            raise GeolocError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        flat[k.strip()] = v.strip()
    for key, option in (("table.path", "table"), ("model.path", "model"), ("model.backend", "backend")):
        if getattr(args, option, None):
            flat[key] = getattr(args, option)
    return GeolocConfig.from_flat(flat, base=cfg) if flat else cfg


def output_folder(args) -> Path:
    """--out (refused when it holds files, unless --force), else a fresh ``replay_<bag>`` folder: ``.2``, ``.3``, ...
    when earlier ones exist, so that no earlier report is overwritten."""
    if args.out:
        out = Path(args.out)
        if out.exists() and any(out.iterdir()) and not args.force:
            raise GeolocError(f"--out {out} holds files; choose another folder or add --force to replace them")
        return out
    base = f"replay_{Path(args.bag).resolve().name}"
    out, n = Path(base), 1
    while out.exists():
        n += 1
        out = Path(f"{base}.{n}")
    return out


def main(args) -> int:
    from . import report
    from .bagread import Topics
    from .pipeline import close_encoder, load_encoder_and_table
    from .replay import replay

    encoder = table = None
    try:
        cfg = load_config(args)
        if cfg.table.path:  # --table, or table.path of --config: without one, only the health monitor runs
            encoder, table = load_encoder_and_table(cfg)
        out = output_folder(args)
        res = replay(args.bag, out, cfg, encoder, table, outages=args.gps_outage,
                     topics=Topics(args.camera_topic, args.gps_topic, args.odom_topic, args.truth_topic),
                     progress=not args.no_progress)
    except GeolocError as exc:
        print(f"geoloc replay: {exc}", file=sys.stderr)
        return 2
    finally:
        close_encoder(encoder)  # replay leaves the encoder to whoever loaded it (GPU memory, runtime threads)
    metrics = report.compute_metrics(res)
    paths = report.write_report(res, metrics, out, aerial=args.aerial, table=table)
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics, default=_json_default))
    else:
        print(report.summary_text(res, metrics))
        print(f"output bag: {out / 'bag'}\nreport: {paths['json']}" + (f", {paths['png']}" if paths.get("png") else ""))
    return 130 if res.interrupted else 0


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
