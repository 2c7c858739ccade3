"""The geoloc_node lifecycle node: camera, GPS and odometry in; ~/fix, ~/pose, ~/active, ~/markers and /diagnostics out.

A thin layer around :class:`geoloc_node.session.Session` (the same one ``geoloc replay`` uses) and its
:class:`geoloc_node.pipeline.Pipeline`: every decision (conversion and input rules, GPS health, matching, fusion,
integrity, what is published when) is theirs; the node subscribes, hands messages over and publishes what comes back.

    lifecycle        on_configure: build the pipeline ON the inference thread (encoder + region table, fingerprint
                     check); failure -> stays unconfigured, one clear log line, reason in /diagnostics.
                     on_activate: subscriptions + publishers on.  on_deactivate: subscriptions off.
                     on_cleanup: publishers destroyed, inference thread stopped, pipeline (GPU memory) released.
    threads          one executor thread (``make_executor``: a SingleThreadedExecutor) runs every callback, each
                     short: decode a frame, feed a fix or odometry to the session; inference runs on its own thread,
                     fed through the pipeline's one-slot latest-frame buffer.
    outputs          stamped with the time of the message that produced them (the image for visual estimates);
                     ~/active is latched (transient local); /diagnostics on a timer, in every lifecycle state.
    bad input        counted by the session (in /diagnostics), logged at most every ``LOG_PERIOD_S`` per kind, never
                     raised.

Run: ``ros2 run geoloc_node geoloc_node --ros-args --params-file config/geoloc.yaml -p autostart:=true``.
"""

from __future__ import annotations

import gc
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, NavSatFix

from geoloc_node.health import HealthChange
from geoloc_node.ros import params
from geoloc_node.ros.interfaces import OUTPUT_QOS, OUTPUTS, SENSOR_QOS, STREAM_QOS, descriptor, rclpy_type
from geoloc_node.ros.worker import InferenceWorker, WorkerStartError
from geoloc_node.session import DIAGNOSTICS_TOPIC, Session
from geoloc_node.signals import stop_signals_interrupt

try:  # Humble and Jazzy both have it; keep the import defensive for older rclpy
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover
    ExternalShutdownException = KeyboardInterrupt  # type: ignore[misc,assignment]

#: A problem of one kind is logged when first seen, then at most once per this many seconds (with the running count).
LOG_PERIOD_S = 10.0

def default_pipeline_factory(core_cfg, node_cfg):
    """The real pipeline (:meth:`Pipeline.from_config`), with the node's encoder threads and TensorRT engine cache."""
    import os

    from geoloc_node.pipeline import Pipeline

    cache_dir = node_cfg.engine_cache_dir or os.environ.get("GEOLOC_ENGINE_CACHE", "")
    return Pipeline.from_config(core_cfg, threads=node_cfg.encoder_threads, cache_dir=cache_dir)


class ProblemLog:
    """Logs each kind of input problem at most every ``period_s`` (the first at once); the session counts them."""

    def __init__(self, logger, counts, period_s: float = LOG_PERIOD_S):
        self._logger, self._counts, self._period = logger, counts, period_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def report(self, kind: str, detail: str) -> None:
        now = time.monotonic()  # wall clock for log throttling only, never for data
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._period:
                return
            self._last[kind] = now
        self._logger.warning(f"{detail} [{kind}: {self._counts[kind]} so far; this kind is logged at most every "
                             f"{self._period:.0f} s]")


class GeolocNode(LifecycleNode):
    """The lifecycle node. ``pipeline_factory(core_cfg, node_cfg) -> pipeline`` is replaceable for tests."""

    def __init__(self, node_name: str = "geoloc_node", *, pipeline_factory=None, **kwargs):
        super().__init__(node_name, **kwargs)
        self._factory = pipeline_factory or default_pipeline_factory
        self._state = "unconfigured"
        self._last_error = ""
        self._worker: InferenceWorker | None = None
        self._pubs: dict = {}
        self._subs: list = []
        self._specs = {s.name: s for s in params.param_specs()}
        for spec in self._specs.values():
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
        self._values = {name: self.get_parameter(name).value for name in self._specs}
        unknown = sorted(name for name in getattr(self, "_parameter_overrides", {})
                         if not self.has_parameter(name) and not name.startswith("qos_overrides."))
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameters (typo in the YAML?): {', '.join(unknown)}")
        self.core_cfg, self.cfg = params.build_configs(self._values)  # invalid start-up values: raise, clearly
        self.session = Session(self.core_cfg, rclpy_type,
                               on_problem=lambda kind, detail: self._problems.report(kind, detail))
        self._problems = ProblemLog(self.get_logger(), self.session.problems)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # /diagnostics is a plain publisher and a plain timer: it reports in every lifecycle state.
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, OUTPUT_QOS)
        self._diag_timer = self.create_timer(self.core_cfg.output.diagnostics_period_s, self.publish_diagnostics)

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
        self._values, self.core_cfg, self.cfg = candidate, core_cfg, cfg
        self.session.set_config(core_cfg)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------------------------- lifecycle
    @property
    def lifecycle_state(self) -> str:
        return self._state

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        core_cfg, cfg = self.core_cfg, self.cfg
        self._state = "configuring"  # parameters applied on configure are refused from now on
        worker = InferenceWorker(build=lambda: self._factory(core_cfg, cfg), on_results=self._on_results,
                                 on_error=self._on_worker_error)
        try:
            pipeline = worker.start()
        except WorkerStartError as e:
            self._state = "unconfigured"
            self._last_error = f"configure failed: {e}"
            self.get_logger().error(f"{self._last_error} -- staying unconfigured; fix the parameter and configure "
                                    "again")
            return TransitionCallbackReturn.FAILURE
        self._worker, self._last_error = worker, ""
        self.session.attach(pipeline)
        self._pubs = {name: self.create_lifecycle_publisher(typ, f"~/{name}", qos)
                      for name, (typ, qos) in OUTPUTS.items()}
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
            self.create_subscription(CameraInfo, cfg.camera_info_topic, self.session.on_camera_info, SENSOR_QOS),
            self.create_subscription(NavSatFix, cfg.gps_topic, self._on_gps, STREAM_QOS),
            self.create_subscription(Odometry, cfg.odom_topic, self._on_odometry, STREAM_QOS),
        ]
        ret = super().on_activate(state)  # activates the lifecycle publishers
        if ret == TransitionCallbackReturn.SUCCESS:
            self._state = "active"
            self._publish(self.session.start(self._now()))
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
        self.session.detach()
        gc.unfreeze()  # the pipeline and its encoder are about to become garbage: let the collector see them again
        if self._worker is not None:
            if not self._worker.stop():
                self.get_logger().warning("inference thread did not stop within 10 s; abandoning it")
            self._worker = None
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}

    def shutdown(self) -> None:
        """Leave cleanly from any state (used by ``main`` on Ctrl-C)."""
        if self._state not in ("finalized",):
            try:
                self.trigger_shutdown()
            except Exception:  # noqa: BLE001 - already shut down, or rcl context gone
                self._release()

    # ------------------------------------------------------------------------------------- inputs and outputs
    def _on_image(self, msg) -> None:
        frame = self.session.decode_frame(msg)
        worker = self._worker
        if frame is not None and worker is not None:
            worker.submit(frame)

    def _on_gps(self, msg) -> None:
        step = self.session.on_gps(msg)
        self._on_outputs(step.outputs, step.publications)

    def _on_odometry(self, msg) -> None:
        step = self.session.on_odometry(msg)
        self._on_outputs(step.outputs, step.publications)

    def _on_results(self, outputs) -> None:
        """The inference thread's outputs (visual estimates)."""
        self._on_outputs(outputs, self.session.on_outputs(outputs))

    def _on_outputs(self, outputs, publications) -> None:
        for o in outputs:
            if isinstance(o, HealthChange):
                self.get_logger().info(f"GPS health -> {o.state}: {o.reason} (fallback "
                                       f"{'off' if o.state == 'HEALTHY' else 'ON'})")
        self._publish(publications)

    def _publish(self, publications) -> None:
        pubs = self._pubs
        for p in publications:
            pub = pubs.get(p.topic)
            if pub is not None:
                pub.publish(p.message)

    def _on_worker_error(self, e: BaseException) -> None:
        self.session.note_problem("inference_error", f"inference failed on a frame: {type(e).__name__}: {e}")

    def _now(self) -> float:
        sec, nanosec = self.get_clock().now().seconds_nanoseconds()
        return sec + nanosec * 1e-9

    def publish_diagnostics(self) -> None:
        try:
            self._diag_pub.publish(self.session.diagnostics(self._now(), lifecycle_state=self._state,
                                                            last_error=self._last_error).message)
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


USAGE = """usage: geoloc_node [--help] [--ros-args --params-file FILE -p NAME:=VALUE ...]

The geoloc_node lifecycle node (GPS fallback by cross-view hashing). Parameters: config/geoloc.yaml (every one
documented there and in docs/ros.md); the region table is table.path. Start it configured and active with
-p autostart:=true, or drive the lifecycle (ros2 lifecycle set /geoloc_node configure, then activate).
Example: geoloc_node --ros-args --params-file ~/geoloc.yaml -p autostart:=true
"""


def main(args=None) -> int:
    """Console script ``geoloc_node``: spin the node on :func:`make_executor`'s executor until Ctrl-C or SIGTERM."""
    argv = list(sys.argv[1:] if args is None else args)
    ours = argv[:argv.index("--ros-args")] if "--ros-args" in argv else argv
    if any(a in ("-h", "--help") for a in ours):
        print(USAGE, end="")
        return 0
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
        with stop_signals_interrupt():  # systemd, docker stop and launch send SIGTERM: leave as cleanly as Ctrl-C
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
