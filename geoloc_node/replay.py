"""``geoloc replay BAG``: a rosbag2 through the pipeline, an output bag of what the node would publish, a report.

Steps (each a named call in :func:`replay`):

1. open the bag with ``rosbags`` (sqlite3 or MCAP, with or without message definitions inside; a definition that does
   not parse, such as a service event's, is skipped with a warning and the built-in ROS 2 definitions are used);
2. find the camera, GPS, odometry and ground-truth topics by type and name (or take them from the options);
3. feed the pipeline in header-stamp order (a short re-order buffer), dropping GPS inside ``--gps-outage`` spans
   (those dropped fixes become ground truth when the bag has no ground-truth topic); feed the same GPS and odometry to
   a second filter without camera: "odometry alone", the baseline;
4. write every estimate, state change, top-k marker set and a diagnostics message per second to an MCAP bag; the bag
   is closed in a ``finally``: Ctrl-C or a crash still leaves a valid bag of what was processed;
5. compute the metrics and write ``report.json`` and ``report.png`` (:mod:`geoloc_node.report`).

Exit codes: 0 done, 2 the bag (or an option) cannot be used, with the reason on stderr, 130 interrupted (the output
and a partial report are still written).
"""

from __future__ import annotations

import heapq
import json
import math
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import GeolocConfig
from .errors import GeolocError
from .messages import (
    LOCALIZATION_STATUS,
    BadMessageError,
    diagnostic_array_fields,
    diagnostic_status_msg,
    frame_from_msg,
    gps_from_msg,
    localization_diagnostic,
    marker_array_fields,
    navsatfix_fields,
    odometry_from_msg,
    pose_fields,
    stamp_of,
)
from .pipeline import Estimate, HealthChange, Pipeline

#: Points kept in the GPS and estimate trails of ~/markers (the node's ``trail_length`` default).
TRAIL_LENGTH = 300
GPS_T, ODOM_T = "sensor_msgs/msg/NavSatFix", "nav_msgs/msg/Odometry"
IMAGE_T, COMPRESSED_T = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
OUTPUT_TOPICS = {  # topic -> type: what the node publishes
    "/geoloc_node/fix": GPS_T,
    "/geoloc_node/pose": "geometry_msgs/msg/PoseWithCovarianceStamped",
    "/geoloc_node/state": "std_msgs/msg/String",
    "/geoloc_node/markers": "visualization_msgs/msg/MarkerArray",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


#: the "odometry alone" baseline: no learned odometry scale / yaw-rate bias
ODOMETRY_ONLY = {"tracking.odom_scale_std": 0.0, "tracking.yaw_rate_bias_std": 0.0,
                 "tracking.odom_scale_random_walk": 0.0, "tracking.yaw_rate_bias_random_walk": 0.0}


class BagInputError(GeolocError):
    """The bag cannot be replayed (not a rosbag2, unsupported serialization, no usable topic, ...)."""


# -- reading ---------------------------------------------------------------------------------------------------
@dataclass
class Topics:
    camera: str | None = None
    gps: str | None = None
    odom: str | None = None
    truth: str | None = None
    ignored: list = field(default_factory=list)


class BagSource:
    """A rosbag2 opened for replay: topic selection and per-connection deserialisation."""

    def __init__(self, path, topics: Topics | None = None):
        from rosbags.rosbag2 import Reader
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if self.path.is_file() and (self.path.parent / "metadata.yaml").exists():
            self.path = self.path.parent
        if not self.path.exists():
            raise BagInputError(f"{self.path}: no such file or directory")
        if not (self.path.is_dir() and (self.path / "metadata.yaml").exists()):
            hint = " (a ROS 1 bag? convert it with `rosbags-convert`)" if self.path.suffix == ".bag" else ""
            raise BagInputError(f"{self.path}: not a rosbag2 directory (no metadata.yaml){hint}")
        self.warnings: list[str] = []
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except Exception as exc:  # rosbags raises ReaderError and others for unreadable bags
            raise BagInputError(f"{self.path}: cannot read this bag: {exc}") from None
        self.default_store = get_typestore(Stores.ROS2_HUMBLE)
        self._stores: dict[int, object] = {}
        self.topics = self._select(topics or Topics())

    def close(self) -> None:
        try:
            self.reader.close()
        except Exception:  # noqa: BLE001
            pass

    def _by_type(self, *types):
        return [c for c in self.reader.connections if c.msgtype in types]

    def _select(self, want: Topics) -> Topics:
        conns = self.reader.connections
        names = {c.topic for c in conns}
        for t in (want.camera, want.gps, want.odom, want.truth):
            if t and t not in names:
                raise BagInputError(f"topic {t!r} is not in the bag; it has: {', '.join(sorted(names))}")

        def pick(cands, prefer=()):
            cands = [c for c in cands if c.msgcount > 0] or cands
            if not cands:
                return None
            return max(cands, key=lambda c: (any(p in c.topic for p in prefer), c.msgcount, -len(c.topic))).topic

        navsat = self._by_type(GPS_T)
        is_truth = [c for c in navsat if "truth" in c.topic or "ground" in c.topic]
        sel = Topics(
            camera=want.camera or pick(self._by_type(IMAGE_T, COMPRESSED_T), ("image_raw", "camera")),
            gps=want.gps or pick([c for c in navsat if c not in is_truth], ("gps", "fix")),
            odom=want.odom or pick([c for c in self._by_type(ODOM_T) if "truth" not in c.topic], ("odom",)),
            truth=want.truth or pick(is_truth))
        used = {sel.camera, sel.gps, sel.odom, sel.truth}
        sel.ignored = sorted({c.topic for c in self._by_type(IMAGE_T, COMPRESSED_T, GPS_T, ODOM_T)} - used)
        for c in conns:
            if c.topic in used:
                self._stores[c.id] = self._store_for(c)
        return sel

    def _store_for(self, conn):
        """A typestore able to deserialise this connection: the bag's own definition, else the built-in one."""
        from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

        fmt = getattr(conn.msgdef, "format", None)
        data = getattr(conn.msgdef, "data", "")
        if fmt is not None and getattr(fmt, "name", "NONE") != "NONE" and data:
            try:
                store = get_typestore(Stores.EMPTY)
                if fmt.name == "MSG":
                    store.register(get_types_from_msg(data, conn.msgtype))
                else:
                    typs = {}
                    sep = "=" * 80 + "\n"
                    parts = data.split(sep)[1:] if data.startswith(f"{sep}IDL: ") else [None]
                    for part in parts:
                        idl = data if part is None else part.split("\n", 1)[1]
                        typs.update(get_types_from_idl(idl))
                    store.register(typs)
                return store
            except Exception as exc:  # noqa: BLE001 - an unparsable schema must not stop the replay
                self.warnings.append(f"{conn.topic}: the bag's message definition does not parse ({exc}); "
                                     "using the built-in ROS 2 definition")
        if conn.msgtype not in self.default_store.types:
            raise BagInputError(f"{conn.topic}: no definition of {conn.msgtype} in the bag or built in")
        return self.default_store

    def count(self) -> int:
        t = self.topics
        wanted = {t.camera, t.gps, t.odom, t.truth} - {None}
        return sum(c.msgcount for c in self.reader.connections if c.topic in wanted)

    def messages(self):
        """Yield (kind, message object or None, error text) in record order; kind in camera/gps/odom/truth."""
        t = self.topics
        kinds = {t.camera: "camera", t.gps: "gps", t.odom: "odom", t.truth: "truth"}
        conns = [c for c in self.reader.connections if c.topic in kinds and c.topic is not None]
        if not conns:  # an empty selection would mean "every topic" to rosbags
            return
        it = self.reader.messages(connections=conns)
        while True:
            try:
                conn, _, raw = next(it)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file: keep what was read
                yield "error", None, f"reading the bag stopped early ({type(exc).__name__}: {exc})"
                return
            kind = kinds[conn.topic]
            try:
                msg = self._stores[conn.id].deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:  # noqa: BLE001 - a corrupt message is counted, not fatal
                yield kind, None, f"{conn.topic}: message does not deserialise ({exc})"
                continue
            yield kind, msg, ""


# -- writing ---------------------------------------------------------------------------------------------------
class OutputBag:
    """MCAP rosbag2 (format version 8) of the node's topics; always closed, even on an exception."""

    def __init__(self, path: Path):
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        if path.exists():
            shutil.rmtree(path)
        self.store = get_typestore(Stores.ROS2_JAZZY)
        self.writer = Writer(path, version=8, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.conns = {topic: self.writer.add_connection(topic, typ, typestore=self.store)
                      for topic, typ in OUTPUT_TOPICS.items()}
        self.path = path
        self.count = 0

    def write(self, topic: str, stamp: float, fields: dict) -> None:
        typ = OUTPUT_TOPICS[topic]
        msg = self.store.types[typ](**fields)
        self.writer.write(self.conns[topic], max(int(round(stamp * 1e9)), 0), self.store.serialize_cdr(msg, typ))
        self.count += 1

    def types(self, name: str):
        return self.store.types[name]

    def close(self) -> None:
        self.writer.close()


# -- the replay ------------------------------------------------------------------------------------------------
@dataclass
class ReplayResult:
    """Everything the report needs, in the table's local frame (metres) and message time."""

    bag: str
    topics: Topics
    estimates: list = field(default_factory=list)  # (stamp, e, n, std, source, trustworthy, fallback)
    single_frame: list = field(default_factory=list)  # (stamp, e, n)
    odometry_only: list = field(default_factory=list)  # (stamp, e, n, std)
    truth: list = field(default_factory=list)  # (stamp, e, n)
    gps: list = field(default_factory=list)  # (stamp, e, n, used: bool, dropped: bool)
    health: list = field(default_factory=list)  # (stamp, state, reason)
    outages: list = field(default_factory=list)  # injected (start, end) in message time
    scripted_faults: list = field(default_factory=list)  # (kind, start, end) from a synthetic drive's sidecar
    status: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    first_stamp: float | None = None
    last_stamp: float | None = None
    wall_s: float = 0.0
    interrupted: bool = False
    mode: str = "full"  # full | health-only
    frame_origin: tuple | None = None


def replay(bag, out_dir, config: GeolocConfig, encoder=None, table=None, outages=(), topics: Topics | None = None,
           progress: bool = True, reorder_s: float = 0.5) -> ReplayResult:
    """Replay ``bag`` through a :class:`Pipeline`; write ``out_dir/bag`` (MCAP) and return the result."""
    from .geodesy import LocalFrame

    out_dir = Path(out_dir)
    source = BagSource(bag, topics)  # 1. open, 2. topics
    t = source.topics
    res = ReplayResult(bag=str(source.path), topics=t, warnings=list(source.warnings),
                       scripted_faults=_scripted_faults(source.path))
    if t.gps is None and t.camera is None:
        inventory = ", ".join(f"{c.topic} ({c.msgtype}, {c.msgcount})" for c in source.reader.connections)
        res.warnings.append(f"no NavSatFix, Odometry or camera topic in this bag, nothing for the pipeline; "
                            f"topics: {inventory}")
    elif t.camera is None:
        res.warnings.append("no camera topic in this bag: running the GPS health monitor only")
    elif table is None or encoder is None:
        res.warnings.append(f"camera topic {t.camera} found but no region table/model given (--table, --model): "
                            "running the GPS health monitor only")
    full = t.camera is not None and table is not None and encoder is not None
    res.mode = "full" if full else "health-only"
    if full:
        config = _with(config, {"pipeline.single_frame_baseline": True})
    pipe = Pipeline(config, encoder if full else None, table if full else None)
    # odometry alone: dead reckoning from the last trusted GPS state (the same filter fed GPS and odometry, no camera,
    # no learned odometry calibration)
    odo = Pipeline(_with(config, ODOMETRY_ONLY), None, table) if full else None
    frame = table.frame if table is not None else None
    counts = {"messages": 0, "undecodable": 0, "camera_decoded": 0, "camera_rejected": 0, "gps_dropped_by_outage": 0,
              "estimates": 0}
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = OutputBag(out_dir / "bag")  # 4. output, closed in the finally below
    types = writer.types
    heap: list = []
    seq = 0
    last_diag = None
    bar = None
    t_wall = time.perf_counter()
    outage_rel = list(outages)
    # What the node keeps for its outputs: the last finite GPS altitude (~/fix altitude) and the trails of ~/markers.
    last_alt = math.nan
    tile_size_m = float(getattr(getattr(table, "header", None), "stride_m", 10.0))
    gps_trail: deque = deque(maxlen=TRAIL_LENGTH)
    est_trail: deque = deque(maxlen=TRAIL_LENGTH)

    def emit(outputs):
        nonlocal last_diag
        for o in outputs:
            if isinstance(o, Estimate):
                counts["estimates"] += 1
                res.estimates.append((o.stamp, o.east, o.north, o.std_m, o.source, o.trustworthy, o.fallback_active))
                if o.single_frame is not None:
                    res.single_frame.append((o.stamp, *o.single_frame))
                if math.isfinite(o.east) and math.isfinite(o.north):
                    est_trail.append((float(o.east), float(o.north)))
                writer.write("/geoloc_node/fix", o.stamp, navsatfix_fields(types, o, altitude=last_alt))
                writer.write("/geoloc_node/pose", o.stamp, pose_fields(types, o))
                if o.source == "visual":
                    writer.write("/geoloc_node/markers", o.stamp, marker_array_fields(
                        types, o, gps_trail=gps_trail, estimate_trail=est_trail,
                        tile_size_m=tile_size_m))
                stamp = o.stamp
            elif isinstance(o, HealthChange):
                res.health.append((o.stamp, o.state, o.reason))
                writer.write("/geoloc_node/state", o.stamp, {"data": f"{o.state}: {o.reason}"})
                stamp = o.stamp
            else:
                continue
            if last_diag is None or stamp - last_diag >= 1.0:
                last_diag = stamp
                level, message, values = localization_diagnostic(pipe.status())
                writer.write("/diagnostics", stamp, diagnostic_array_fields(
                    types, stamp, [diagnostic_status_msg(types, LOCALIZATION_STATUS, level, message, values)]))

    def process(stamp, kind, msg):
        nonlocal frame, last_alt
        if kind == "gps":
            fix = gps_from_msg(msg)
            if frame is None and math.isfinite(fix.lat) and math.isfinite(fix.lon) and abs(fix.lat) <= 90:
                frame = LocalFrame(fix.lat, fix.lon)
                res.frame_origin = (fix.lat, fix.lon)
            rel = fix.stamp - res.first_stamp
            dropped = any(a <= rel < b for a, b in outage_rel)
            ok = math.isfinite(fix.lat) and math.isfinite(fix.lon) and abs(fix.lat) <= 90 and abs(fix.lon) <= 180
            if dropped:
                counts["gps_dropped_by_outage"] += 1
                if ok and t.truth is None and fix.status >= 0:
                    e, n = frame.to_en(fix.lat, fix.lon)
                    res.truth.append((fix.stamp, float(e), float(n)))
                if ok:
                    e, n = frame.to_en(fix.lat, fix.lon)
                    res.gps.append((fix.stamp, float(e), float(n), False, True))
                return
            if math.isfinite(fix.alt):
                last_alt = fix.alt
            if ok and fix.status >= 0 and frame is not None:
                gps_trail.append(tuple(float(v) for v in frame.to_en(fix.lat, fix.lon)))
            emit(pipe.on_gps(fix))
            if odo is not None:
                odo_out = odo.on_gps(fix)
                _collect_odo(res, odo_out)
            if ok:
                e, n = frame.to_en(fix.lat, fix.lon)
                res.gps.append((fix.stamp, float(e), float(n), pipe.health.fix_is_trusted(), False))
                if t.truth is None and pipe.health.fix_is_trusted():
                    res.truth.append((fix.stamp, float(e), float(n)))
        elif kind == "odom":
            rec = odometry_from_msg(msg)
            emit(pipe.on_odometry(rec))
            if odo is not None:
                _collect_odo(res, odo.on_odometry(rec))
        elif kind == "truth":
            fix = gps_from_msg(msg)
            if math.isfinite(fix.lat) and math.isfinite(fix.lon) and frame is not None:
                e, n = frame.to_en(fix.lat, fix.lon)
                res.truth.append((fix.stamp, float(e), float(n)))
        elif kind == "camera":
            t0 = time.perf_counter()
            try:
                fr = frame_from_msg(msg)
            except BadMessageError as exc:
                counts["camera_rejected"] += 1
                pipe.note_rejected_frame(str(exc))
                _warn_once(res, f"camera frame skipped: {exc}")
                return
            pipe.note_decode_ms((time.perf_counter() - t0) * 1e3)
            counts["camera_decoded"] += 1
            if full:
                emit(pipe.on_frame(fr))

    try:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=source.count(), unit="msg", desc="replay", file=sys.stderr, mininterval=0.5)
        for kind, msg, err in source.messages():  # 3. feed in stamp order
            counts["messages"] += 1
            if bar is not None:
                bar.update(1)
            if kind == "error":
                res.warnings.append(err + "; the output holds what came before")
                break
            if msg is None:
                counts["undecodable"] += 1
                _warn_once(res, err)
                continue
            try:
                stamp = stamp_of(msg)
            except Exception:  # noqa: BLE001 - a message without a usable header
                counts["undecodable"] += 1
                continue
            if res.first_stamp is None:
                res.first_stamp = stamp
                if frame is None and table is not None:
                    frame = table.frame
            heapq.heappush(heap, (stamp, seq, kind, msg))
            seq += 1
            while heap and heap[0][0] < stamp - reorder_s:
                s, _, k, m = heapq.heappop(heap)
                process(s, k, m)
            if res.last_stamp is None or stamp > res.last_stamp:
                res.last_stamp = stamp
        while heap:
            s, _, k, m = heapq.heappop(heap)
            process(s, k, m)
    except KeyboardInterrupt:
        res.interrupted = True
        res.warnings.append("interrupted: the output bag and the report hold what was processed so far")
    finally:
        if bar is not None:
            bar.close()
        writer.close()
        source.close()
        res.wall_s = time.perf_counter() - t_wall
        res.status = pipe.status()
        res.counts = {**counts, "output_messages": writer.count}
        if res.first_stamp is not None:
            res.outages = [(res.first_stamp + a, res.first_stamp + b) for a, b in outage_rel]
    if t.camera is None and t.gps is not None:
        res.warnings.append(f"health monitor only: {len(res.gps)} fixes judged; no position fallback without camera")
    return res


def _scripted_faults(bag: Path) -> list:
    """GPS faults scripted into a synthetic drive (its ``geoloc_drive.json`` sidecar), in message time."""
    side = bag / "geoloc_drive.json"
    if not side.exists():
        return []
    try:
        d = json.loads(side.read_text())
        t0 = float(d["start_time_s"])
        return [(str(k), t0 + float(a), t0 + float(b)) for k, a, b in d.get("gps_faults", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _collect_odo(res: ReplayResult, outputs) -> None:
    for o in outputs:
        if isinstance(o, Estimate):
            res.odometry_only.append((o.stamp, o.east, o.north, o.std_m))


def _warn_once(res: ReplayResult, text: str) -> None:
    key = text.split(":")[0] + ":" + text.split(":")[1][:40] if ":" in text else text
    if not any(w.startswith(key[:60]) for w in res.warnings):
        res.warnings.append(text)


def _with(config: GeolocConfig, flat: dict) -> GeolocConfig:
    return GeolocConfig.from_flat(flat, base=config)


# -- command line ----------------------------------------------------------------------------------------------
def parse_outage(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"--gps-outage {text!r}: expected START:END in seconds from the bag start") from None
    if not (math.isfinite(a) and math.isfinite(b) and b > a >= 0):
        raise ValueError(f"--gps-outage {text!r}: need 0 <= START < END")
    return a, b


def register(subparsers) -> None:
    p = subparsers.add_parser("replay", help="replay a rosbag2 through the pipeline and write a report",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("bag", help="rosbag2 directory (sqlite3 or MCAP)")
    p.add_argument("--table", help="region table (.gltab); without it only the GPS health monitor runs")
    p.add_argument("--model", help="camera model (.json spec or .onnx); default: the shipped model")
    p.add_argument("--backend", default="auto", help="encoder backend: auto, onnxruntime, tensorrt, torch")
    p.add_argument("--config", help="YAML parameters (config/geoloc.yaml format)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter, e.g. --set tracking.n_particles=300 (repeatable)")
    p.add_argument("--gps-outage", action="append", default=[], type=_outage_arg, metavar="START:END",
                   help="drop GPS between these seconds from the bag start (repeatable)")
    p.add_argument("--out", help="output folder (default: replay_<bag name>)")
    p.add_argument("--aerial", help="GeoTIFF to draw the trajectory over in the report")
    p.add_argument("--camera-topic")
    p.add_argument("--gps-topic")
    p.add_argument("--odom-topic")
    p.add_argument("--truth-topic", help="NavSatFix ground truth (default: a NavSatFix topic named *truth*)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=main)


def _outage_arg(text):
    import argparse

    try:
        return parse_outage(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_config(args) -> GeolocConfig:
    cfg = GeolocConfig.from_yaml(args.config) if getattr(args, "config", None) else GeolocConfig()
    flat = {}
    for item in getattr(args, "set", []) or []:
        if "=" not in item:
            raise GeolocError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        flat[k.strip()] = v.strip()
    return GeolocConfig.from_flat(flat, base=cfg) if flat else cfg


def main(args) -> int:
    from . import report

    try:
        cfg = load_config(args)
        encoder = table = None
        if args.table:
            from .demo import default_model
            from .encoders import load_encoder
            from .table import open_table

            table = open_table(args.table, verify=cfg.table.verify)
            try:
                encoder = load_encoder(args.model or cfg.model.path or default_model(),
                                       args.backend or cfg.model.backend)
            except (OSError, ValueError, RuntimeError) as exc:
                raise GeolocError(f"cannot load the camera model: {exc}") from None
        out = Path(args.out or f"replay_{Path(args.bag).name}")
        res = replay(args.bag, out, cfg, encoder, table, outages=args.gps_outage,
                     topics=Topics(args.camera_topic, args.gps_topic, args.odom_topic, args.truth_topic),
                     progress=not args.no_progress)
    except GeolocError as exc:
        print(f"geoloc replay: {exc}", file=sys.stderr)
        return 2
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


__all__ = ["BagInputError", "BagSource", "OutputBag", "ReplayResult", "Topics", "replay", "register", "main"]
