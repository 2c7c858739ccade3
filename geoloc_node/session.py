"""The session around the pipeline: the one place that turns input messages into records and the pipeline's outputs
into the messages the node publishes. The ROS node publishes them with rclpy; ``geoloc replay`` writes them into a bag.
Neither has a rule of its own, so a replayed bag is what the node would have published.

What it decides (``output.*`` parameters):

* inputs: the conversion of each message (:mod:`geoloc_node.messages`); every message that could not be converted,
  or that the pipeline did not use (:mod:`geoloc_node.inputs`), is counted by reason;
* the camera: CameraInfo and the frames' size against the model's camera (:mod:`geoloc_node.camera_check`), and
  CameraInfo arriving while images do not;
* ``~/fix`` and ``~/pose`` of each estimate while the fallback is active (``publish_policy`` fallback_only) or always;
* ``~/active`` (latched) whenever the fallback engages or ends, and once at the start;
* ``~/markers`` of the latest estimate at most ``markers_rate_hz`` (message time), with the GPS and estimate trails;
* ``/diagnostics``: localisation (GPS health, fallback, integrity), inputs (received, published, problems), camera;
* a time jump (a looping bag): trails cleared with the pipeline's state.

Thread safety: the node calls it from its executor thread (GPS, odometry, CameraInfo) and its inference thread
(frame results); a lock guards the session's own state and is never held while the pipeline runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from . import messages as m
from .camera_check import CameraCheck, check_camera
from .config import GeolocConfig
from .health import HEALTHY, HealthChange
from .records import CameraFrame, Estimate, InputRejected, StateReset

NODE_NAME = "geoloc_node"
#: Output topics, relative to the node's namespace (``~/fix``), and their types.
OUTPUT_TYPES = {
    "fix": "sensor_msgs/msg/NavSatFix",
    "pose": "geometry_msgs/msg/PoseWithCovarianceStamped",
    "active": "std_msgs/msg/Bool",
    "markers": "visualization_msgs/msg/MarkerArray",
}
DIAGNOSTICS_TOPIC, DIAGNOSTICS_TYPE = "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray"
#: Images stop arriving while CameraInfo still does for this long (s of message time): a diagnostic says so.
IMAGES_MISSING_AFTER_S = 2.0
#: Fast DDS delivers samples up to about this size through shared memory at 10 Hz; larger frames were lost unseen.
TRANSPORT_FRAME_LIMIT_BYTES = 512 * 1024


def output_topic(name: str, node_name: str = NODE_NAME) -> str:
    """``fix`` -> ``/geoloc_node/fix`` (what ``~/fix`` resolves to for a node named ``node_name``)."""
    return f"/{node_name}/{name}"


@dataclass(frozen=True)
class Publication:
    """A message to publish: ``topic`` is ``fix``, ``pose``, ``active``, ``markers`` (the node's ``~/`` topics) or
    ``/diagnostics``; ``message`` was built with the session's message classes."""

    topic: str
    stamp: float
    message: object


@dataclass
class Step:
    """What one input message did: its record (None if it could not be converted), the pipeline's outputs, and
    the publications they make."""

    record: object = None
    outputs: list = field(default_factory=list)
    publications: list = field(default_factory=list)


class Session:
    """One session of the pipeline with its inputs and outputs. ``types(name)`` gives message classes (rclpy's or a
    rosbags typestore's); ``on_problem(key, detail)`` is told every input problem (the node logs it, replay keeps a
    warning)."""

    def __init__(self, config: GeolocConfig, types: Callable[[str], type], *,
                 on_problem: Callable[[str, str], None] | None = None):
        self.config = config
        self.types = types
        self.on_problem = on_problem or (lambda key, detail: None)
        self._lock = threading.Lock()
        self.pipeline = None
        self.received: Counter[str] = Counter()
        self.published: Counter[str] = Counter()
        self.problems: Counter[str] = Counter()
        self._last_problem = ""
        self._reset_outputs()

    def _reset_outputs(self) -> None:
        n = self.config.output.trail_length
        self._gps_trail = m.PointTrail(self.types, n)  # (east, north) with their marker Points, made once each
        self._est_trail = m.PointTrail(self.types, n)
        self._altitude = math.nan
        self._active: bool | None = None
        self._last_markers: float | None = None
        self._camera_info: tuple | None = None  # (stamp, width, height, fx, distortion model) of the last CameraInfo
        self._last_image: float | None = None
        self.camera: CameraCheck | None = None

    # -- life --------------------------------------------------------------------------------------------------
    def attach(self, pipeline) -> None:
        """Start serving ``pipeline`` (the node: on configure; replay: at once)."""
        with self._lock:
            self.pipeline = pipeline
            self._reset_outputs()

    def detach(self) -> None:
        with self._lock:
            self.pipeline = None
            self._reset_outputs()

    def set_config(self, config: GeolocConfig) -> None:
        """New parameter values (the node's live parameters: publish policy, frames, variances, trail length)."""
        with self._lock:
            self.config = config
            n = config.output.trail_length
            if self._gps_trail.maxlen != n:
                self._gps_trail = self._gps_trail.resized(n)
                self._est_trail = self._est_trail.resized(n)

    def start(self, stamp: float) -> list[Publication]:
        """``~/active`` with the current state, published once at the start (latched: late subscribers see it)."""
        with self._lock:
            active = bool(self.pipeline is None or self.pipeline.fallback_active)
            self._active = active
            return [self._publication("active", stamp, self.types("std_msgs/msg/Bool")(data=active))]

    # -- inputs ------------------------------------------------------------------------------------------------
    def on_gps(self, msg) -> Step:
        step = self._convert("gps", m.gps_from_msg, msg)
        pipeline = self.pipeline
        if step.record is None or pipeline is None:
            return step
        fix = step.record
        step.outputs = pipeline.on_gps(fix)
        with self._lock:
            if math.isfinite(fix.alt):
                self._altitude = fix.alt  # ~/fix carries the last GPS altitude (the fallback estimates east/north)
            if fix.status >= 0 and not any(isinstance(o, InputRejected) for o in step.outputs):
                self._add_gps_trail(pipeline, fix)
        step.publications = self.on_outputs(step.outputs)
        return step

    def on_odometry(self, msg) -> Step:
        step = self._convert("odometry", m.odometry_from_msg, msg)
        pipeline = self.pipeline
        if step.record is None or pipeline is None:
            return step
        step.outputs = pipeline.on_odometry(step.record)
        step.publications = self.on_outputs(step.outputs)
        return step

    def decode_frame(self, msg) -> CameraFrame | None:
        """An image message -> a frame record (None: undecodable, counted), checked against the camera model."""
        t0 = time.perf_counter()
        step = self._convert("image", m.frame_from_msg, msg)
        frame, pipeline = step.record, self.pipeline
        if frame is None or pipeline is None:
            if pipeline is not None:
                pipeline.note_rejected_frame(self._last_problem)
            return None
        pipeline.note_decode_ms((time.perf_counter() - t0) * 1e3)
        h, w = frame.image.shape[:2]
        with self._lock:
            self._last_image = frame.stamp
            info = self._camera_info
        if info is not None and (info[1], info[2]) != (w, h):
            self._problem("image_size_mismatch", f"image is {w}x{h} but CameraInfo says {info[1]}x{info[2]}")
        elif info is None and self.camera is None:
            self._set_camera(check_camera(*_model_camera(pipeline), w, h))
        return frame

    def on_frame(self, msg) -> Step:
        """Decode and process a frame at once (replay; the node hands frames to its inference thread instead)."""
        frame = self.decode_frame(msg)
        step = Step(record=frame)
        if frame is not None:
            step.outputs = self.pipeline.on_frame(frame)
            step.publications = self.on_outputs(step.outputs)
        return step

    def on_camera_info(self, msg) -> None:
        self.received["camera_info"] += 1
        pipeline = self.pipeline
        try:
            stamp, w, h = m.stamp_of(msg), int(msg.width), int(msg.height)
            k, dist = list(msg.k), str(msg.distortion_model)
        except (AttributeError, TypeError, ValueError) as exc:
            self._problem("camera_info_bad", f"CameraInfo skipped: {exc}")
            return
        with self._lock:
            known = self._camera_info
            self._camera_info = info = (stamp, w, h, k[0] if k else 0.0, dist)
        if pipeline is not None and (known is None or known[1:] != info[1:]):  # checked once, and on a change
            self._set_camera(check_camera(*_model_camera(pipeline), w, h, k, dist))

    def note_problem(self, key: str, detail: str) -> None:
        """A problem the caller found (the node: an inference error)."""
        self._problem(key, detail)

    # -- outputs -----------------------------------------------------------------------------------------------
    def on_outputs(self, outputs) -> list[Publication]:
        """The pipeline's outputs -> publications, by the output rules (any thread)."""
        pubs: list[Publication] = []
        for o in outputs or ():
            if isinstance(o, InputRejected):
                self._problem(o.key, o.detail)
                continue
            with self._lock:
                if isinstance(o, StateReset):
                    self._gps_trail.clear()
                    self._est_trail.clear()
                elif isinstance(o, HealthChange):
                    self._active_changed(o.stamp, o.state != HEALTHY, pubs)
                elif isinstance(o, Estimate):
                    self._estimate_publications(o, pubs)
        return pubs

    def _estimate_publications(self, est: Estimate, pubs: list) -> None:
        out = self.config.output
        self._active_changed(est.stamp, est.fallback_active, pubs)
        if math.isfinite(est.east) and math.isfinite(est.north):
            self._est_trail.append(est.east, est.north)
        if out.publish_policy == "always" or est.fallback_active:
            pubs.append(self._publication("fix", est.stamp, self.types(OUTPUT_TYPES["fix"])(**m.navsatfix_fields(
                self.types, est, frame_id=out.fix_frame_id, altitude=self._altitude,
                altitude_variance_m2=out.altitude_variance_m2))))
            pubs.append(self._publication("pose", est.stamp, self.types(OUTPUT_TYPES["pose"])(**m.pose_fields(
                self.types, est, frame_id=out.map_frame_id, altitude_variance_m2=out.altitude_variance_m2,
                unknown_variance=out.unknown_variance))))
        if self._last_markers is None or est.stamp - self._last_markers >= 1.0 / out.markers_rate_hz - 1e-9:
            self._last_markers = est.stamp
            tile = float(self.pipeline.table.header.stride_m) if self.pipeline is not None else 10.0
            pubs.append(self._publication("markers", est.stamp, self.types(OUTPUT_TYPES["markers"])(
                **m.marker_array_fields(self.types, est, frame_id=out.map_frame_id, gps_trail=self._gps_trail,
                                        estimate_trail=self._est_trail, tile_size_m=tile))))

    def _active_changed(self, stamp: float, active: bool, pubs: list) -> None:
        if active != self._active:
            self._active = active
            pubs.append(self._publication("active", stamp, self.types("std_msgs/msg/Bool")(data=bool(active))))

    def diagnostics(self, stamp: float, *, lifecycle_state: str = "active", last_error: str = "") -> Publication:
        """/diagnostics: the localisation, inputs and camera statuses at ``stamp``."""
        pipeline = self.pipeline
        status = {}
        if pipeline is not None:
            try:
                status = dict(pipeline.status())
            except Exception as exc:  # noqa: BLE001 - diagnostics must never fail
                status = {"status_error": str(exc)}
        level, message, values = m.localization_diagnostic(
            status, lifecycle_state=lifecycle_state, last_error=last_error,
            publish_policy=self.config.output.publish_policy, fallback_default=bool(self._active))
        statuses = [m.diagnostic_status_msg(self.types, m.LOCALIZATION_STATUS, level, message, values),
                    m.diagnostic_status_msg(self.types, m.INPUTS_STATUS, *self._inputs_status()),
                    m.diagnostic_status_msg(self.types, m.CAMERA_STATUS, *self._camera_status(stamp))]
        return self._publication(DIAGNOSTICS_TOPIC, stamp, self.types(DIAGNOSTICS_TYPE)(
            **m.diagnostic_array_fields(self.types, stamp, statuses)))

    def _inputs_status(self) -> tuple[int, str, dict]:
        problems = dict(self.problems)
        total = sum(problems.values())
        values = {"received": dict(self.received), "published": dict(self.published), "problems": problems,
                  "problems_total": total}
        if not total:
            return m.LEVEL_OK, "inputs ok", values
        worst = max(problems, key=problems.get)
        return m.LEVEL_WARN, f"{total} input messages not used (most: {worst} x{problems[worst]})", values

    def _camera_status(self, stamp: float) -> tuple[int, str, dict]:
        with self._lock:
            info, last_image, check = self._camera_info, self._last_image, self.camera
        values = {"camera_info": "none" if info is None else f"{info[1]}x{info[2]}",
                  "model_check": "not yet" if check is None else check.detail}
        if check is not None and not check.ok:
            return m.LEVEL_ERROR, f"camera does not match the model: {check.detail}", values
        if info is not None and stamp - info[0] <= IMAGES_MISSING_AFTER_S and (
                last_image is None or stamp - last_image > IMAGES_MISSING_AFTER_S):
            size = info[1] * info[2] * 3
            why = (f"a {info[1]}x{info[2]} rgb8 frame is {size / 1024:.0f} KB, over the ~"
                   f"{TRANSPORT_FRAME_LIMIT_BYTES // 1024} KB that Fast DDS shared memory delivers at 10 Hz: send "
                   "smaller or compressed frames" if size > TRANSPORT_FRAME_LIMIT_BYTES
                   else "check the image topic name and its QoS (this node subscribes best effort)")
            since = "never" if last_image is None else f"not for {stamp - last_image:.1f} s"
            return m.LEVEL_WARN, f"CameraInfo arrives but images do not ({since}): {why}", values
        if check is None:
            return m.LEVEL_OK, "no camera data yet", values
        return m.LEVEL_OK, check.detail, values

    # -- helpers -----------------------------------------------------------------------------------------------
    def _convert(self, kind: str, convert, msg) -> Step:
        self.received[kind] += 1
        try:
            return Step(record=convert(msg))
        except Exception as exc:  # noqa: BLE001 - BadMessageError, and anything a decoder or a broken message raises
            self._problem(f"{kind}_bad", f"{kind} message skipped: {exc}")
            return Step()

    def _problem(self, key: str, detail: str) -> None:
        with self._lock:
            self.problems[key] += 1
            self._last_problem = detail
        self.on_problem(key, detail)

    def _set_camera(self, check: CameraCheck) -> None:
        with self._lock:
            changed = self.camera is None or self.camera != check
            self.camera = check
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.note_camera(check)
        if changed and not check.ok:
            self._problem("camera_model_mismatch", f"camera does not match the model: {check.detail}")

    def _add_gps_trail(self, pipeline, fix) -> None:
        table = getattr(pipeline, "table", None)
        if table is None or not (math.isfinite(fix.lat) and math.isfinite(fix.lon)):
            return
        try:
            e, n = table.frame.to_en(fix.lat, fix.lon)
        except Exception:  # noqa: BLE001 - out-of-range coordinates: the trail is only for RViz
            return
        self._gps_trail.append(e, n)

    def _publication(self, topic: str, stamp: float, message) -> Publication:
        self.published[topic] += 1
        return Publication(topic, stamp, message)


def _model_camera(pipeline) -> tuple[str, float | None]:
    encoder = getattr(pipeline, "encoder", None)
    return str(getattr(encoder, "mode", "panorama")), getattr(encoder, "hfov_deg", None)
