"""``geoloc replay BAG``: a rosbag2 through the pipeline, an output bag of what the node would publish, a report.

Steps of :func:`replay`:

1. open the bag and pick its topics (:mod:`geoloc_node.bagread`);
2. a :class:`Recorder`: the same :class:`~geoloc_node.session.Session` and
   :class:`~geoloc_node.pipeline.Pipeline` as the node, an MCAP output bag, and a second filter fed the same GPS
   and odometry without camera ("odometry alone", the baseline);
3. feed the messages in header-stamp order, dropping GPS inside ``--gps-outage`` spans (those dropped fixes become
   ground truth when the bag has no ground-truth topic): every publication of the session goes into the output bag,
   with /diagnostics every ``output.diagnostics_period_s`` of message time;
4. close the bag in a ``finally``: Ctrl-C, SIGTERM, SIGHUP or a crash still leave a valid bag of what was processed.

The report (:mod:`geoloc_node.report`) is computed from the :class:`ReplayResult`; the command line is in
:mod:`geoloc_node.replay_cli`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .bagread import BagInputError, BagSource, Topics
from .config import GeolocConfig
from .geodesy import LocalFrame
from .health import HealthChange
from .messages import gps_from_msg
from .pipeline import Estimate, Pipeline
from .progress import progress_bar
from .records import StateReset
from .session import DIAGNOSTICS_TOPIC, DIAGNOSTICS_TYPE, NODE_NAME, OUTPUT_TYPES, Session, output_topic
from .signals import stop_signals_interrupt

#: A bag whose first fix lies farther than this (m) outside the region table gets a warning.
FAR_FROM_TABLE_M = 2000.0
#: the "odometry alone" baseline: no learned odometry scale / yaw-rate bias
ODOMETRY_ONLY = {"tracking.odom_scale_std": 0.0, "tracking.yaw_rate_bias_std": 0.0,
                 "tracking.odom_scale_random_walk": 0.0, "tracking.yaw_rate_bias_random_walk": 0.0}


# -- what a replay records ------------------------------------------------------------------------------------
class EstimateRow(NamedTuple):
    """One estimate as the report scores it (metres in the table's local frame, message time)."""

    stamp: float
    east: float
    north: float
    std_m: float  # the estimate's one sigma (records.major_std_m)
    source: str
    trustworthy: bool
    fallback_active: bool
    cov: tuple = (math.nan, math.nan, math.nan)  # published (east-east, east-north, north-north) m^2
    hpl_m: float = math.inf  # horizontal protection level (m)
    integrity: str = ""  # why trustworthy, or why not


class Position(NamedTuple):
    stamp: float
    east: float
    north: float


class GpsRow(NamedTuple):
    stamp: float
    east: float
    north: float
    trusted: bool  # the health monitor fused it
    dropped: bool  # inside an injected --gps-outage span


class HealthRow(NamedTuple):
    stamp: float
    state: str
    reason: str


@dataclass
class ReplayResult:
    """Everything the report needs, in the table's local frame (metres) and message time."""

    bag: str
    topics: Topics
    estimates: list = field(default_factory=list)  # EstimateRow
    single_frame: list = field(default_factory=list)  # Position: the paper's top-5 mean per processed frame
    odometry_only: list = field(default_factory=list)  # EstimateRow of the baseline
    truth: list = field(default_factory=list)  # Position
    gps: list = field(default_factory=list)  # GpsRow
    health: list = field(default_factory=list)  # HealthRow
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
    recovery: dict | None = None  # what geoloc_node.bag_recover recovered and lost, when the bag was unfinished

    def warn_once(self, text: str) -> None:
        """Keep one warning per kind of problem (its text up to the first number or 60 characters)."""
        key = text.split(":")[0] + ":" + text.split(":")[1][:40] if ":" in text else text
        if not any(w.startswith(key[:60]) for w in self.warnings):
            self.warnings.append(text)


def estimate_row(est: Estimate) -> EstimateRow:
    c = est.cov
    return EstimateRow(est.stamp, est.east, est.north, est.std_m, est.source, bool(est.trustworthy),
                       bool(est.fallback_active), (float(c[0][0]), float(c[0][1]), float(c[1][1])), float(est.hpl_m),
                       est.integrity)


# -- writing ---------------------------------------------------------------------------------------------------
class OutputBag:
    """MCAP rosbag2 (format version 8) of the node's topics; always closed, even on an exception."""

    def __init__(self, path: Path, node_name: str = NODE_NAME):
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        if path.exists():
            shutil.rmtree(path)
        self.store = get_typestore(Stores.ROS2_JAZZY)
        self.writer = Writer(path, version=8, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        topics = {output_topic(k, node_name): (k, t) for k, t in OUTPUT_TYPES.items()}
        topics[DIAGNOSTICS_TOPIC] = (DIAGNOSTICS_TOPIC, DIAGNOSTICS_TYPE)
        self.conns = {key: (self.writer.add_connection(topic, typ, typestore=self.store), typ)
                      for topic, (key, typ) in topics.items()}
        self.path = path
        self.count = 0

    def types(self, name: str):
        """The message class of a ROS type name (the session builds its messages with these)."""
        return self.store.types[name]

    def write(self, publication) -> None:
        conn, typ = self.conns[publication.topic]
        self.writer.write(conn, max(int(round(publication.stamp * 1e9)), 0),
                          self.store.serialize_cdr(publication.message, typ))
        self.count += 1

    def close(self) -> None:
        self.writer.close()


# -- the replay ------------------------------------------------------------------------------------------------
class Recorder:
    """Feeds one bag's messages to the session (as the node's callbacks do), writes its publications, and records
    what the report scores: estimates, the baseline, ground truth, GPS and health."""

    def __init__(self, source: BagSource, out_dir: Path, config: GeolocConfig, encoder, table, outages=()):
        t = source.topics
        self.result = res = ReplayResult(bag=str(source.path), topics=t, warnings=list(source.warnings),
                                         scripted_faults=_scripted_faults(source.path),
                                         recovery=source.recovery.to_dict() if source.recovery else None)
        full = t.camera is not None and table is not None and encoder is not None
        res.mode = "full" if full else "health-only"
        self._mode_warnings(table is not None and encoder is not None, source)
        if full:
            config = GeolocConfig.from_flat({"pipeline.single_frame_baseline": True}, base=config)
        self.pipeline = Pipeline(config, encoder if full else None, table if full else None)
        # odometry alone: dead reckoning from the last trusted GPS state (the same filter fed GPS and odometry, no
        # camera, no learned odometry calibration)
        self.baseline = Pipeline(GeolocConfig.from_flat(ODOMETRY_ONLY, base=config), None, table) if full else None
        self.frame = table.frame if table is not None else None
        self.outages = list(outages)
        self.counts = {"messages": 0, "undecodable": 0, "gps_dropped_by_outage": 0, "estimates": 0}
        out_dir.mkdir(parents=True, exist_ok=True)
        self.writer = OutputBag(out_dir / "bag")
        self.session = Session(config, self.writer.types, on_problem=lambda key, detail: res.warn_once(detail))
        self.session.attach(self.pipeline)
        self._diag_period = config.output.diagnostics_period_s
        self._last_diag: float | None = None

    def _mode_warnings(self, have_model: bool, source: BagSource) -> None:
        res, t = self.result, source.topics
        if t.gps is None and t.camera is None:
            inventory = ", ".join(f"{c.topic} ({c.msgtype}, {c.msgcount})" for c in source.reader.connections)
            res.warnings.append(f"no NavSatFix, Odometry or camera topic in this bag, nothing for the pipeline; "
                                f"topics: {inventory}")
        elif t.camera is None:
            res.warnings.append("no camera topic in this bag: running the GPS health monitor only" +
                                ("; the region table and model given are unused" if have_model else ""))
        elif not have_model:
            res.warnings.append(f"camera topic {t.camera} found but no region table/model given (--table, --model): "
                                "running the GPS health monitor only")

    def feed(self, stamp: float, kind: str, msg) -> None:
        """One message, in stamp order."""
        res = self.result
        if res.first_stamp is None:
            res.first_stamp = stamp
            self._write(self.session.start(stamp))
        res.last_stamp = stamp if res.last_stamp is None else max(res.last_stamp, stamp)
        if kind == "gps":
            self._gps(msg)
        elif kind == "odom":
            step = self.session.on_odometry(msg)
            self._record(step.outputs, step.publications)
            if self.baseline is not None and step.record is not None:
                self._record_baseline(self.baseline.on_odometry(step.record))
        elif kind == "camera":
            step = self.session.on_frame(msg)
            self._record(step.outputs, step.publications)
        elif kind == "camera_info":
            self.session.on_camera_info(msg)
        elif kind == "truth":
            self._truth(msg)
        if self._last_diag is None or stamp - self._last_diag >= self._diag_period - 1e-9:
            self._last_diag = stamp
            self._write([self.session.diagnostics(stamp)])

    def _gps(self, msg) -> None:
        res = self.result
        try:
            fix = gps_from_msg(msg)
        except Exception:  # noqa: BLE001 - a broken message: the session counts and reports it as the node would
            self.session.on_gps(msg)
            return
        if self.frame is None and math.isfinite(fix.lat) and math.isfinite(fix.lon) and abs(fix.lat) <= 90:
            self.frame = LocalFrame(fix.lat, fix.lon)  # health-only: metres around the first fix
            res.frame_origin = (fix.lat, fix.lon)
        ok = math.isfinite(fix.lat) and math.isfinite(fix.lon) and abs(fix.lat) <= 90 and abs(fix.lon) <= 180
        en = tuple(float(v) for v in self.frame.to_en(fix.lat, fix.lon)) if ok else None
        if en is not None and not res.gps:
            self._check_area(en)
        if any(a <= fix.stamp - res.first_stamp < b for a, b in self.outages):  # an injected outage: never seen
            self.counts["gps_dropped_by_outage"] += 1
            if en is not None:
                res.gps.append(GpsRow(fix.stamp, *en, False, True))
                if res.topics.truth is None and fix.status >= 0:
                    res.truth.append(Position(fix.stamp, *en))
            return
        step = self.session.on_gps(msg)
        self._record(step.outputs, step.publications)
        if self.baseline is not None and step.record is not None:
            self._record_baseline(self.baseline.on_gps(step.record))
        trusted = any(isinstance(o, Estimate) and o.source == "gps" for o in step.outputs)
        if en is not None:
            res.gps.append(GpsRow(fix.stamp, *en, trusted, False))
            if res.topics.truth is None and trusted:
                res.truth.append(Position(fix.stamp, *en))

    def _check_area(self, en) -> None:
        """Warn when the bag's first fix lies far outside the region table (a table of another area?)."""
        table = self.pipeline.table
        if table is None:
            return
        c = table.coverage()
        off = math.hypot(max(c["east_min"] - en[0], 0.0, en[0] - c["east_max"]),
                         max(c["north_min"] - en[1], 0.0, en[1] - c["north_max"]))
        if off > FAR_FROM_TABLE_M:
            self.result.warnings.append(f"the bag's first GPS fix is {off / 1000:.1f} km outside the region table's "
                                        "area: is it the table of this place?")

    def _truth(self, msg) -> None:
        fix = gps_from_msg(msg)
        if math.isfinite(fix.lat) and math.isfinite(fix.lon) and self.frame is not None:
            self.result.truth.append(Position(fix.stamp, *(float(v) for v in self.frame.to_en(fix.lat, fix.lon))))

    def _record(self, outputs, publications) -> None:
        res = self.result
        for o in outputs:
            if isinstance(o, Estimate):
                self.counts["estimates"] += 1
                res.estimates.append(estimate_row(o))
                if o.single_frame is not None:
                    res.single_frame.append(Position(o.stamp, *o.single_frame))
            elif isinstance(o, HealthChange):
                res.health.append(HealthRow(o.stamp, o.state, o.reason))
            elif isinstance(o, StateReset):
                res.warn_once(f"state reset: {o.reason}")
        self._write(publications)

    def _record_baseline(self, outputs) -> None:
        self.result.odometry_only.extend(estimate_row(o) for o in outputs if isinstance(o, Estimate))

    def _write(self, publications) -> None:
        for p in publications:
            self.writer.write(p)

    def skipped(self, kind: str, text: str) -> None:
        """A message the bag could not give (does not deserialise), or the end of a truncated file."""
        if kind == "error":
            self.result.warnings.append(text + "; the output holds what came before")
        else:
            self.counts["undecodable"] += 1
            self.result.warn_once(text)

    def close(self, wall_s: float) -> ReplayResult:
        res = self.result
        if res.last_stamp is not None and self._last_diag != res.last_stamp:
            try:  # the bag ends with the final status, also when the replay was interrupted part way
                self._write([self.session.diagnostics(res.last_stamp)])
            except Exception:  # noqa: BLE001 - never lose the bag over its last status
                pass
        self.writer.close()  # the encoder is the caller's: it stays open (see replay)
        res.wall_s = wall_s
        res.status = self.pipeline.status()
        res.counts = {**self.counts, "output_messages": self.writer.count,
                      "camera_rejected": self.session.problems.get("image_bad", 0),
                      "received": dict(self.session.received), "problems": dict(self.session.problems)}
        if res.first_stamp is not None:
            res.outages = [(res.first_stamp + a, res.first_stamp + b) for a, b in self.outages]
        if res.topics.camera is None and res.topics.gps is not None:
            res.warnings.append(f"health monitor only: {len(res.gps)} fixes judged; no position fallback without "
                                "camera")
        return res


def replay(bag, out_dir, config: GeolocConfig, encoder=None, table=None, outages=(), topics: Topics | None = None,
           progress: bool = True, reorder_s: float = 0.5) -> ReplayResult:
    """Replay ``bag`` through a :class:`Pipeline`; write ``out_dir/bag`` (MCAP) and return the result.

    ``encoder`` stays open: whoever loaded it closes it (``encoder.close()``), and may replay again with it. (A replay
    that closed it made the next replay with the same encoder reject every frame: a replay without the camera.)"""
    t_wall = time.perf_counter()
    source = BagSource(bag, topics, recover_dir=Path(out_dir))  # 1. open (recover an unfinished bag), pick topics
    try:
        recorder = Recorder(source, Path(out_dir), config, encoder, table, outages)  # 2. session, baseline, output
    except BaseException:
        source.close()
        raise
    bar = progress_bar(source.count(), enabled=progress, unit="msg", desc="replay", mininterval=0.5)
    try:
        with stop_signals_interrupt():  # SIGTERM and SIGHUP close the outputs as Ctrl-C does
            for stamp, kind, msg in source.in_stamp_order(reorder_s, recorder.skipped):  # 3. feed in stamp order
                recorder.counts["messages"] += 1
                bar.update(1)
                recorder.feed(stamp, kind, msg)
    except KeyboardInterrupt as exc:
        recorder.result.interrupted = True
        recorder.result.warnings.append(f"interrupted ({exc or 'Ctrl-C'}): the output bag and the report hold what "
                                        "was processed so far")
    finally:  # 4. closed whatever happened
        bar.close()
        source.close()
        res = recorder.close(time.perf_counter() - t_wall)
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


__all__ = ["BagInputError", "BagSource", "OutputBag", "Recorder", "ReplayResult", "Topics", "replay"]
