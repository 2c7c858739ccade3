"""The geoloc_node lifecycle node: camera, GPS and odometry in; ~/fix, ~/pose, ~/active, ~/markers and /diagnostics out.

A thin layer around :class:`geoloc_node.pipeline.Pipeline`; every decision (GPS health, matching, fusion, when the
fallback engages) is the pipeline's. What happens where::

    lifecycle        on_configure: build the pipeline ON the inference thread (encoder + region table, fingerprint
                     check); failure -> stays unconfigured, one clear log line, reason in /diagnostics.
                     on_activate: subscriptions + publishers on.  on_deactivate: subscriptions off.
                     on_cleanup: publishers destroyed, inference thread stopped, pipeline (GPU memory) released.
    threads          one executor thread (``make_executor``: a SingleThreadedExecutor) runs every callback, each
                     short: decode a frame, feed a fix or odometry to the pipeline; inference runs on its own
                     thread, fed through the pipeline's one-slot latest-frame buffer;
                     ~/markers (costly to build) come from a timer at markers_rate_hz, never from that thread.
    outputs          stamped with the time of the message that produced them (the image for visual estimates);
                     ~/fix and ~/pose follow publish_policy; ~/active is latched (transient local).
    bad input        converted by geoloc_node.messages; anything it refuses, a NaN or zero fix, odometry in an
                     unexpected frame, a stamp jumping backwards: counted in /diagnostics, logged at most every
                     ``LOG_PERIOD_S`` per kind, never raised.

Run: ``ros2 run geoloc_node geoloc_node --ros-args --params-file config/geoloc.yaml -p autostart:=true``.
"""

from __future__ import annotations

import gc
import math
import os
import sys
import threading
import time
from collections import Counter, deque

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, NavSatFix
from std_msgs.msg import Bool
from visualization_msgs.msg import MarkerArray

from geoloc_node import messages
from geoloc_node.ros import outputs, params
from geoloc_node.ros.worker import InferenceWorker, WorkerStartError

try:  # Humble and Jazzy both have it; keep the import defensive for older rclpy
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover
    ExternalShutdownException = KeyboardInterrupt  # type: ignore[misc,assignment]

#: A problem of one kind is logged when first seen, then at most once per this many seconds (with the running count).
LOG_PERIOD_S = 10.0

#: Inputs: best effort, keep last. A best-effort subscription receives from reliable and best-effort publishers alike.
SENSOR_QOS = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=1,
                        durability=DurabilityPolicy.VOLATILE)
#: GPS and odometry: same compatibility, a deeper queue so that a burst is not lost while the pipeline runs.
STREAM_QOS = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=20,
                        durability=DurabilityPolicy.VOLATILE)
#: Outputs: reliable.
OUTPUT_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10,
                        durability=DurabilityPolicy.VOLATILE)
#: ~/active: reliable and latched, so a late subscriber learns the current state.
LATCHED_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def default_pipeline_factory(core_cfg, node_cfg):
    """Build the real pipeline: encoder (``model.*``, with the node's thread count and TensorRT engine cache) + region
    table (``table.*``); ``Pipeline`` checks that the table was built by this encoder's aerial branch."""
    from geoloc_node.encoders import load_encoder
    from geoloc_node.pipeline import Pipeline
    from geoloc_node.table import open_table

    if core_cfg is None:
        raise RuntimeError("geoloc_node.config is missing from this installation")
    if not core_cfg.table.path:
        raise ValueError("parameter table.path is empty: set it to the region table (.gltab) of this area "
                         "(build one with `geoloc build-table`)")
    table = open_table(core_cfg.table.path, verify=core_cfg.table.verify)  # first: cheap, and the usual mistake
    kwargs = {"threads": node_cfg.encoder_threads}
    cache_dir = node_cfg.engine_cache_dir or os.environ.get("GEOLOC_ENGINE_CACHE", "")
    if cache_dir:
        kwargs["cache_dir"] = cache_dir
    backend = {"onnx": "onnxruntime"}.get(core_cfg.model.backend, core_cfg.model.backend)
    if backend == "auto":  # resolved here so that only TensorRT gets the engine cache
        from geoloc_node.encoders import available_backends

        backend = (available_backends() or ["onnxruntime"])[0]
    if backend != "tensorrt":
        kwargs.pop("cache_dir", None)
    model_path = core_cfg.model.path
    if not model_path:  # '' = the shipped panorama model
        from geoloc_node.models import shipped_model_path

        model_path = shipped_model_path()
    encoder = load_encoder(model_path, backend, **kwargs)
    try:
        return Pipeline(core_cfg, encoder, table)
    except BaseException:
        encoder.close()
        raise


class ProblemLog:
    """Counts input problems per kind and logs each kind at most every ``period_s`` (first occurrence at once)."""

    def __init__(self, logger, period_s: float = LOG_PERIOD_S):
        self._logger = logger
        self._period = period_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self.counts: Counter[str] = Counter()

    def report(self, kind: str, detail: str) -> None:
        now = time.monotonic()  # wall clock for log throttling only, never for data
        with self._lock:
            self.counts[kind] += 1
            n = self.counts[kind]
            last = self._last.get(kind)
            if last is not None and now - last < self._period:
                return
            self._last[kind] = now
        self._logger.warning(f"{detail} [{kind}: {n} so far; this kind is logged at most every {self._period:.0f} s]")


def _descriptor(spec: params.ParamSpec) -> ParameterDescriptor:
    note = {"live": "applied to the next message", "configure": "applied on configure (change while unconfigured)",
            "read_only": "read-only: set at start-up"}[spec.when]
    extra = f"one of: {', '.join(spec.choices)}; " if spec.choices else ""
    d = ParameterDescriptor(name=spec.name, description=spec.doc, read_only=spec.when == "read_only",
                            additional_constraints=extra + note)
    if isinstance(spec.default, float) and spec.lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.lo), to_value=float(spec.hi), step=0.0)]
    elif isinstance(spec.default, int) and not isinstance(spec.default, bool) and spec.lo is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.lo), to_value=int(spec.hi), step=1)]
    return d


class GeolocNode(LifecycleNode):
    """The lifecycle node. ``pipeline_factory(core_cfg, node_cfg) -> pipeline`` is replaceable for tests."""

    def __init__(self, node_name: str = "geoloc_node", *, pipeline_factory=None, **kwargs):
        super().__init__(node_name, **kwargs)
        self._factory = pipeline_factory or default_pipeline_factory
        self._lock = threading.Lock()
        self._state = "unconfigured"
        self._last_error = ""
        self._worker: InferenceWorker | None = None
        self._pubs: dict = {}
        self._subs: list = []
        self._problems = ProblemLog(self.get_logger())
        self._received: Counter[str] = Counter()
        self._published: Counter[str] = Counter()
        self._last_stamp: dict[str, float] = {}
        self._gps_trail: deque = deque(maxlen=2)
        self._est_trail: deque = deque(maxlen=2)
        self._last_altitude = math.nan
        self._active: bool | None = None
        self._marker_est = None  # the latest estimate whose markers are not published yet
        self._camera_info: tuple[int, int] | None = None
        self._odom_frame: str | None = None
        self._local_frame = None
        self._tile_size_m = 10.0

        self._specs = {s.name: s for s in params.param_specs()}
        for spec in self._specs.values():
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        self._values = {name: self.get_parameter(name).value for name in self._specs}
        unknown = sorted(name for name in getattr(self, "_parameter_overrides", {})
                         if not self.has_parameter(name) and not name.startswith("qos_overrides."))
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameters (typo in the YAML?): {', '.join(unknown)}")
        self.core_cfg, self.cfg = params.build_configs(self._values)  # invalid start-up values: raise, clearly
        self._resize_trails()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # /diagnostics is a plain publisher and a plain timer: it reports in every lifecycle state.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self._diag_timer = self.create_timer(self.cfg.diagnostics_period_s, self.publish_diagnostics)
        self._markers_timer = self.create_timer(1.0 / self.cfg.markers_rate_hz, self.publish_markers)

    # ------------------------------------------------------------------------------------------------ parameters
    def _on_set_parameters(self, changes) -> SetParametersResult:
        candidate = dict(self._values)
        for p in changes:
            spec = self._specs.get(p.name)
            if spec is None:
                continue  # use_sim_time and other rclpy parameters
            if spec.when == "configure" and self._state != "unconfigured":
                return SetParametersResult(successful=False, reason=(
                    f"{p.name} is applied on configure and the node is {self._state}: deactivate, cleanup, set it, "
                    "then configure again"))
            candidate[p.name] = p.value
        try:
            core_cfg, cfg = params.build_configs(candidate)
        except (ValueError, TypeError) as e:
            return SetParametersResult(successful=False, reason=str(e))
        with self._lock:
            self._values, self.core_cfg, self.cfg = candidate, core_cfg, cfg
            self._resize_trails()
        return SetParametersResult(successful=True)

    def _resize_trails(self) -> None:
        n = self.cfg.trail_length
        if self._gps_trail.maxlen != n:
            self._gps_trail = deque(self._gps_trail, maxlen=n)
            self._est_trail = deque(self._est_trail, maxlen=n)

    # ------------------------------------------------------------------------------------------------- lifecycle
    @property
    def lifecycle_state(self) -> str:
        return self._state

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        core_cfg, cfg = self.core_cfg, self.cfg
        self._state = "configuring"  # parameters applied on configure are refused from now on
        worker = InferenceWorker(build=lambda: self._factory(core_cfg, cfg), on_results=self._handle_results,
                                 on_error=self._on_worker_error)
        try:
            pipeline = worker.start()
        except WorkerStartError as e:
            self._state = "unconfigured"
            self._last_error = f"configure failed: {e}"
            self.get_logger().error(f"{self._last_error} -- staying unconfigured; fix the parameter and configure "
                                    "again")
            return TransitionCallbackReturn.FAILURE
        self._worker = worker
        self._last_error = ""
        table = getattr(pipeline, "table", None)
        self._local_frame = getattr(table, "frame", None)
        self._tile_size_m = float(getattr(getattr(table, "header", None), "stride_m", 10.0))
        self._pubs = {
            "fix": self.create_lifecycle_publisher(NavSatFix, "~/fix", OUTPUT_QOS),
            "pose": self.create_lifecycle_publisher(PoseWithCovarianceStamped, "~/pose", OUTPUT_QOS),
            "active": self.create_lifecycle_publisher(Bool, "~/active", LATCHED_QOS),
            "markers": self.create_lifecycle_publisher(MarkerArray, "~/markers", OUTPUT_QOS),
        }
        ret = super().on_configure(state)
        self._state = "inactive" if ret == TransitionCallbackReturn.SUCCESS else "unconfigured"
        if ret == TransitionCallbackReturn.SUCCESS:
            # The ~150,000 objects alive now (rclpy, numpy, ONNX Runtime, the pipeline) live as long as the
            # configuration. Left in the collector's view, every full collection walks them all: 60-85 ms with the
            # GIL held, every 10-15 s while frames stream in (measured with gc.callbacks in benchmarks/bench_node.py),
            # which stalls every thread and was the node's latency tail. Frozen, they are skipped; _release unfreezes.
            gc.collect()
            gc.freeze()
            backend = getattr(getattr(pipeline, "encoder", None), "backend", None) or type(pipeline).__name__
            self.get_logger().info(f"configured: pipeline ready ({backend}); waiting for activate")
        return ret

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.cfg
        image_type = CompressedImage if cfg.image_transport == "compressed" else Image
        self._subs = [
            self.create_subscription(image_type, cfg.subscribed_image_topic, self._on_image, SENSOR_QOS),
            self.create_subscription(CameraInfo, cfg.camera_info_topic, self._on_camera_info, SENSOR_QOS),
            self.create_subscription(NavSatFix, cfg.gps_topic, self._on_gps, STREAM_QOS),
            self.create_subscription(Odometry, cfg.odom_topic, self._on_odometry, STREAM_QOS),
        ]
        ret = super().on_activate(state)  # activates the lifecycle publishers
        if ret == TransitionCallbackReturn.SUCCESS:
            self._state = "active"
            current = self._active if self._active is not None else getattr(self._pipeline(), "fallback_active", False)
            self._publish_active(bool(current), force=True)
            self.get_logger().info(f"active: listening to {cfg.subscribed_image_topic}, {cfg.gps_topic}, "
                                   f"{cfg.odom_topic}")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_subscriptions()
        ret = super().on_deactivate(state)
        self._state = "inactive"
        return ret

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        ret = super().on_cleanup(state)
        self._state = "unconfigured"
        return ret

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error during a transition from {state.label}: releasing everything")
        self._release()
        self._state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _destroy_subscriptions(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []

    def _release(self) -> None:
        """Subscriptions, inference thread (the pipeline and the encoder's GPU memory go with it), publishers."""
        self._destroy_subscriptions()
        gc.unfreeze()  # the pipeline and its encoder are about to become garbage: let the collector see them again
        if self._worker is not None:
            if not self._worker.stop():
                self.get_logger().warning("inference thread did not stop within 10 s; abandoning it")
            self._worker = None
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        with self._lock:
            self._gps_trail.clear()
            self._est_trail.clear()
            self._last_stamp.clear()
            self._active = None
            self._odom_frame = None
            self._marker_est = None

    def shutdown(self) -> None:
        """Leave cleanly from any state (used by ``main`` on Ctrl-C)."""
        if self._state not in ("finalized",):
            try:
                self.trigger_shutdown()
            except Exception:  # noqa: BLE001 - already shut down, or rcl context gone
                self._release()

    # ---------------------------------------------------------------------------------------------------- inputs
    def _pipeline(self):
        worker = self._worker
        return None if worker is None else worker.pipeline

    def _check_time(self, kind: str, stamp: float) -> None:
        """Count a stamp that jumps backwards (the pipeline resets its own state on a jump, by its own threshold)."""
        last = self._last_stamp.get(kind)
        self._last_stamp[kind] = stamp
        if last is None or stamp >= last:
            return
        jump = last - stamp
        threshold = self.core_cfg.pipeline.time_jump_reset_s if self.core_cfg is not None else 1.0
        if jump > threshold:
            self._problems.report(f"{kind}_time_jump", f"{kind} time jumped back by {jump:.2f} s (a looping bag or a "
                                  "restarted clock): the pipeline starts over")
            with self._lock:
                self._gps_trail.clear()
                self._est_trail.clear()
        else:
            self._problems.report(f"{kind}_out_of_order", f"{kind} stamp {jump:.3f} s older than the previous one")

    def _on_image(self, msg) -> None:
        self._received["image"] += 1
        worker = self._worker
        if worker is None:
            return
        t0 = time.perf_counter()
        try:
            frame = messages.frame_from_msg(msg)
        except Exception as e:  # noqa: BLE001 - BadMessageError and anything a decoder may raise
            self._problems.report("image_bad", f"camera frame skipped: {e}")
            note = getattr(worker.pipeline, "note_rejected_frame", None)
            if callable(note):
                note(f"undecodable image: {e}")
            return
        note = getattr(worker.pipeline, "note_decode_ms", None)
        if callable(note):
            note((time.perf_counter() - t0) * 1e3)
        if self._camera_info is not None and self._camera_info != frame.image.shape[:2]:
            self._problems.report("image_size_mismatch", f"image is {frame.image.shape[1]}x{frame.image.shape[0]} "
                                  f"but CameraInfo says {self._camera_info[1]}x{self._camera_info[0]}")
        self._check_time("image", frame.stamp)
        try:
            worker.submit(frame)
        except Exception as e:  # noqa: BLE001
            self._problems.report("image_rejected", f"pipeline refused a frame: {e}")

    def _on_camera_info(self, msg) -> None:
        self._received["camera_info"] += 1
        if msg.height > 0 and msg.width > 0:
            self._camera_info = (int(msg.height), int(msg.width))

    def _on_gps(self, msg) -> None:
        self._received["gps"] += 1
        pipeline = self._pipeline()
        if pipeline is None:
            return
        try:
            fix = messages.gps_from_msg(msg)
        except Exception as e:  # noqa: BLE001
            self._problems.report("gps_bad", f"NavSatFix skipped: {e}")
            return
        if fix.stamp == 0.0 and fix.lat == 0.0 and fix.lon == 0.0:
            self._problems.report("gps_zero", "zero-initialised NavSatFix (stamp 0, lat/lon 0) skipped")
            return
        finite = math.isfinite(fix.lat) and math.isfinite(fix.lon)
        if not finite and fix.status >= 0:
            # Kept: the health monitor judges it (a receiver that claims a fix without coordinates is not healthy).
            self._problems.report("gps_nan", "NavSatFix claims a fix but its latitude/longitude are NaN")
        self._check_time("gps", fix.stamp)
        if finite and self._local_frame is not None and fix.status >= 0:
            try:
                e, n = self._local_frame.to_en(fix.lat, fix.lon)
                with self._lock:
                    self._gps_trail.append((float(e), float(n)))
            except Exception:  # noqa: BLE001 - out-of-range coordinates: the trail is only for RViz
                pass
        if math.isfinite(fix.alt):
            self._last_altitude = fix.alt
        self._feed(pipeline.on_gps, fix, "gps")

    def _on_odometry(self, msg) -> None:
        self._received["odom"] += 1
        pipeline = self._pipeline()
        if pipeline is None:
            return
        try:
            odo = messages.odometry_from_msg(msg)
        except Exception as e:  # noqa: BLE001
            self._problems.report("odom_bad", f"odometry skipped: {e}")
            return
        expected = self.cfg.odom_frame_id or self._odom_frame
        if expected is None:
            self._odom_frame = expected = odo.frame_id  # '': the first message's frame is the expected one
        if odo.frame_id != expected:
            self._problems.report("odom_frame", f"odometry in frame {odo.frame_id!r}, expected {expected!r} "
                                  "(parameter odom_frame_id, or the first message's frame): skipped")
            return
        self._check_time("odom", odo.stamp)
        self._feed(pipeline.on_odometry, odo, "odom")

    def _feed(self, fn, record, kind: str) -> None:
        try:
            results = fn(record)
        except Exception as e:  # noqa: BLE001 - the pipeline refusing one record never stops the node
            self._problems.report(f"{kind}_rejected", f"pipeline refused a {kind} message: {e}")
            return
        self._handle_results(results)

    def _on_worker_error(self, e: BaseException) -> None:
        self._problems.report("inference_error", f"inference failed on a frame: {type(e).__name__}: {e}")

    # --------------------------------------------------------------------------------------------------- outputs
    def _handle_results(self, results) -> None:
        """Estimates and health changes from any thread (inference, GPS, odometry) -> topics."""
        for r in results or ():
            if hasattr(r, "east") and hasattr(r, "lat"):
                self._publish_estimate(r)
            else:
                state = getattr(r, "state", None)
                reason = getattr(r, "reason", "")
                fallback = getattr(r, "fallback_active", None)
                if fallback is None and state is not None:
                    fallback = str(getattr(state, "name", state)) != "HEALTHY"
                self.get_logger().info(f"GPS health -> {getattr(state, 'name', state)}: {reason}"
                                       + ("" if fallback is None else f" (fallback {'ON' if fallback else 'off'})"))
                if fallback is not None:
                    self._publish_active(bool(fallback))

    def _publish_active(self, active: bool, force: bool = False) -> None:
        pub = self._pubs.get("active")
        with self._lock:  # called from the inference, GPS and odometry threads
            if pub is None or (not force and active == self._active):
                return
            self._active = active
        pub.publish(Bool(data=active))
        self._published["active"] += 1

    def _publish_estimate(self, est) -> None:
        pubs, cfg = self._pubs, self.cfg
        if not pubs:
            return
        fallback = bool(est.fallback_active)
        self._publish_active(fallback)
        if math.isfinite(est.east) and math.isfinite(est.north):
            with self._lock:
                self._est_trail.append((float(est.east), float(est.north)))
        if cfg.publish_policy == "always" or fallback:
            pubs["fix"].publish(outputs.navsatfix(est, frame_id=cfg.fix_frame_id, altitude=self._last_altitude,
                                                  altitude_variance_m2=cfg.altitude_variance_m2))
            pubs["pose"].publish(outputs.pose(est, frame_id=cfg.map_frame_id,
                                              altitude_variance_m2=cfg.altitude_variance_m2,
                                              unknown_variance=cfg.unknown_variance))
            self._published["fix"] += 1
        with self._lock:
            self._marker_est = est  # ~/markers: published by publish_markers at markers_rate_hz

    def publish_markers(self) -> None:
        """Timer: ~/markers of the latest estimate, if a new one came since the last call."""
        with self._lock:
            est, self._marker_est = self._marker_est, None
            gps, trail = list(self._gps_trail), list(self._est_trail)
        pub = self._pubs.get("markers")
        if est is None or pub is None:
            return
        try:
            pub.publish(outputs.markers(est, frame_id=self.cfg.map_frame_id, gps_trail=gps, estimate_trail=trail,
                                        tile_size_m=self._tile_size_m))
            self._published["markers"] += 1
        except Exception as e:  # noqa: BLE001 - a visualisation problem must never take the node down
            self.get_logger().error(f"markers failed: {type(e).__name__}: {e}", throttle_duration_sec=10.0)

    def diagnostics_values(self) -> tuple[bytes, str, dict]:
        """(level, message, values) of the localisation status; also used by tests."""
        pipeline = self._pipeline()
        status = {}
        if pipeline is not None:
            try:
                status = dict(pipeline.status())
            except Exception as e:  # noqa: BLE001
                status = {"status_error": str(e)}
        level, message, values = messages.localization_diagnostic(
            status, lifecycle_state=self._state, last_error=self._last_error,
            publish_policy=self.cfg.publish_policy, fallback_default=self._active)
        return bytes([level]), message, values

    def publish_diagnostics(self) -> None:
        try:
            level, message, values = self.diagnostics_values()
            inputs = {"received": dict(self._received), "published": dict(self._published),
                      "problems": dict(self._problems.counts),
                      "problems_total": sum(self._problems.counts.values())}
            in_level = outputs.LEVEL_WARN if self._problems.counts else outputs.LEVEL_OK
            in_msg = (f"{inputs['problems_total']} bad or skipped input messages" if self._problems.counts
                      else "inputs ok")
            msg = outputs.diagnostic_array(self.get_clock().now().to_msg(), [
                outputs.status(messages.LOCALIZATION_STATUS, level, message, values),
                outputs.status(messages.INPUTS_STATUS, in_level, in_msg, inputs)])
            self._diag_pub.publish(msg)
        except Exception as e:  # noqa: BLE001 - diagnostics must never take the node down
            self.get_logger().error(f"diagnostics failed: {type(e).__name__}: {e}", throttle_duration_sec=10.0)


def make_executor(context=None):
    """The executor the node is spun by (``main``, the tests): a SingleThreadedExecutor.

    Why not rclpy's MultiThreadedExecutor: in Python it re-yields every queued-but-not-started callback task on each
    wake-up, so as soon as its pool threads wait for the GIL (the inference thread runs too) the spin thread
    busy-loops re-submitting them and input falls behind. benchmarks/bench_executor.py (a live 32 s drive, odometry
    50 Hz, GPS 5 Hz, images 10 Hz, 2-core VM): with 4 threads up to 1,207 of 1,601 odometry messages dropped from full
    queues, fixes up to 1.4 s late, a false GPS LOST; single-threaded nothing dropped, fixes 1.5 ms late (median,
    max 10 ms), a quarter of the spin-thread CPU. Every callback here is short (the slow work is on the inference
    thread), so one thread is enough. A lifecycle transition requested through its service runs on this thread too:
    /diagnostics pauses while configure builds the pipeline (seconds; minutes for a first TensorRT engine build).
    docs/ros.md#threads has the measurements.
    """
    return SingleThreadedExecutor(context=context)


def main(args=None) -> int:
    """Console script ``geoloc_node``: spin the node on :func:`make_executor`'s executor until Ctrl-C."""
    rclpy.init(args=args)
    try:
        node = GeolocNode()
    except Exception as e:  # noqa: BLE001 - invalid start-up parameters: one clear line, exit code 2
        print(f"geoloc_node: cannot start: {type(e).__name__}: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = make_executor()
    executor.add_node(node)
    if node.cfg.autostart:
        node.trigger_configure()
        if node.lifecycle_state == "inactive":
            node.trigger_activate()
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
