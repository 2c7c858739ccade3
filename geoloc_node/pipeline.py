"""The pipeline: the one place where the steps are wired. The ROS node and ``geoloc replay`` both drive this object.

Per input::

    on_gps(fix)        -> health monitor judges the fix -> (trusted) the filter fuses it      -> Estimate(source=gps)
    on_odometry(odom)  -> health monitor learns motion, notices silence -> the filter predicts -> Estimate(odometry)
    submit_frame(f)    -> one-slot buffer, latest frame wins (a replaced frame counts as dropped)
    process_pending()  -> encode (outside the lock) -> window search + particle update (under the lock)
                          -> divergence check against a global top-k now and then            -> Estimate(visual)

Every output is an :class:`Estimate` or a :class:`HealthChange`. Time comes from message stamps only. Thread safety:
GPS and odometry arrive on other threads than the frame worker; one lock guards the state and is never held while the
encoder runs. Bad input (NaN fixes, duplicate or out-of-order stamps, time jumping backwards as in a looping bag) is
counted and reported, never raised.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .config import GeolocConfig
from .errors import GeolocError
from .health import HEALTHY, GpsHealthMonitor, HealthChange
from .records import CameraFrame, GpsFix, Odometry
from .search import TableSearch
from .tracking import ParticleFilter

__all__ = ["Pipeline", "Estimate", "HealthChange", "FingerprintMismatchError"]


class FingerprintMismatchError(GeolocError):
    """The region table was built by another aerial encoder than the camera encoder's pair (or with other bits)."""


@dataclass(frozen=True)
class Estimate:
    """A fused position at ``stamp`` (message time)."""

    stamp: float
    east: float  # metres in the table's local ENU frame
    north: float
    cov: np.ndarray  # 2x2 m^2 (east, north)
    lat: float
    lon: float
    yaw: float | None  # ENU yaw (rad) when the filter knows it, else None
    source: str  # 'gps' | 'visual' | 'odometry'
    confidence: float  # [0, 1]
    fallback_active: bool  # GPS is not trusted; the position comes from vision and odometry
    trustworthy: bool  # the covariance is small enough to act on
    topk: tuple = ()  # ((east, north, hamming distance), ...) best tiles of the last visual update
    yaw_var: float | None = None  # rad^2
    single_frame: tuple | None = None  # (east, north) of the paper's single-frame top-5 mean (when asked for)

    @property
    def std_m(self) -> float:
        """Square root of the largest covariance eigenvalue (m)."""
        return float(math.sqrt(max(np.linalg.eigvalsh(self.cov).max(), 0.0)))


_STAGES = ("decode", "encode", "search", "filter")


class Pipeline:
    """GPS health + camera encoder + region table search + particle filter, fed with records in stamp order."""

    def __init__(self, config: GeolocConfig, encoder, table):
        self.config = config
        self.encoder = encoder
        self.table = table
        if table is not None and encoder is not None:
            check_pair(encoder, table)
        self.search = TableSearch(table) if table is not None else None
        self.health = GpsHealthMonitor(config.health)
        self.filter = ParticleFilter(self.search, config.tracking) if self.search is not None else None
        self._encoder_takes_headings = _takes_headings(encoder)
        self._lock = threading.Lock()  # state: health, filter, counters
        self._slot_lock = threading.Lock()  # the one-slot frame buffer
        self._pending: CameraFrame | None = None
        self._lat = {s: deque(maxlen=2000) for s in _STAGES}
        self.counts = {"frames_received": 0, "frames_processed": 0, "frames_dropped": 0, "frames_skipped_rate": 0,
                       "frames_skipped_healthy": 0, "frames_rejected": 0, "frames_outside_table": 0,
                       "gps_fixes": 0, "odometry": 0, "duplicate_stamps": 0, "out_of_order_stamps": 0,
                       "bad_stamps": 0, "stale_stamps": 0, "time_resets": 0, "reinitialisations": 0, "cold_starts": 0}
        self._reset_state()

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: GeolocConfig) -> Pipeline:
        """Load the encoder (``model.path``, empty: the shipped model; ``model.backend``) and the table
        (``table.path``) and check they pair."""
        from .encoders import load_encoder
        from .table import open_table

        if not config.table.path:
            raise GeolocError("no region table given: set table.path (build one with `geoloc build-table`)")
        model = str(config.model.path or "").strip()
        if not model:  # '' = the shipped panorama model, as in the node
            from .models import shipped_model_path

            try:
                model = shipped_model_path()
            except (FileNotFoundError, ValueError) as exc:
                raise GeolocError(f"{exc}; or set model.path") from None
        # config spells ONNX Runtime 'onnx' (as the node's parameter does); load_encoder wants 'onnxruntime'
        backend = {"onnx": "onnxruntime"}.get(config.model.backend, config.model.backend)
        encoder = load_encoder(model, backend)
        table = open_table(config.table.path, verify=config.table.verify)
        return cls(config, encoder, table)

    def warm_up(self) -> None:
        """Load what the first frame would otherwise load (the search kernels, the encoder's first run), so that a live
        node does not stall at its first frame. Leaves no state behind: no counts, no filter, no health change."""
        if self.search is not None:
            self.search.warm_up()
        hw = getattr(self.encoder, "input_hw", None)  # real encoders; the tests' seams have no first-run cost
        if hw is not None:
            self.encoder.encode(np.zeros((*hw, 3), dtype=np.uint8), headings_deg=[0.0])

    def _reset_state(self) -> None:
        self.health.reset()
        if self.filter is not None:
            self.filter.reset()
        self._last = {"gps": None, "odometry": None, "frame": None}
        self._clock: float | None = None
        self._last_processed: float | None = None
        self._last_output: float | None = None
        self._last_div_check: float | None = None
        self._last_topk: tuple = ()

    # -- inputs ----------------------------------------------------------------------------------------------
    def on_gps(self, fix: GpsFix) -> list:
        with self._lock:
            out: list = []
            if not self._accept("gps", fix.stamp, out):
                return out
            self.counts["gps_fixes"] += 1
            change = self.health.on_fix(fix)
            if change:
                out.append(change)
            if self.health.fix_is_trusted() and self.filter is not None:
                e, n = self.table.frame.to_en(fix.lat, fix.lon)
                c = fix.covariance
                cov = np.array([[c[0], c[1]], [c[3], c[4]]], dtype=np.float64)
                if not np.all(np.isfinite(cov)) or cov[0, 0] < 0 or cov[1, 1] < 0:
                    cov = np.eye(2) * self.config.health.max_horizontal_std_m ** 2
                if not self.filter.initialized:
                    self.filter.init_gaussian(float(e), float(n), cov + np.eye(2), fix.stamp, reason="gps")
                else:
                    self.filter.predict_time(fix.stamp)
                    self.filter.update_gps(float(e), float(n), cov)
                out.append(self._estimate(fix.stamp, "gps"))
            return out

    def on_odometry(self, odom: Odometry) -> list:
        with self._lock:
            out: list = []
            if not self._accept("odometry", odom.stamp, out):
                return out
            self.counts["odometry"] += 1
            self.health.on_odometry(odom)
            change = self.health.tick(odom.stamp)
            if change:
                out.append(change)
            if self.filter is not None:
                t0 = time.perf_counter()
                self.filter.predict_odometry(odom)
                self._lat["filter"].append((time.perf_counter() - t0) * 1e3)
                rate = self.config.pipeline.odometry_output_rate_hz
                if (self.fallback_active and self.filter.initialized and rate > 0 and
                        (self._last_output is None or odom.stamp - self._last_output >= 1.0 / rate - 1e-9)):
                    out.append(self._estimate(odom.stamp, "odometry"))
            return out

    def submit_frame(self, frame: CameraFrame) -> None:
        """Non-blocking: keep only the latest frame; a frame replaced before it was processed counts as dropped."""
        with self._slot_lock:
            self.counts["frames_received"] += 1
            if self._pending is not None:
                self.counts["frames_dropped"] += 1
            self._pending = frame

    def process_pending(self) -> list:
        """Process the buffered frame, if any: encode outside the lock, search and update under it."""
        with self._slot_lock:
            frame, self._pending = self._pending, None
        if frame is None:
            return []
        out: list = []
        with self._lock:
            if not self._accept("frame", frame.stamp, out):
                return out
            # Live, the camera subscription keeps only the newest frame while fixes and odometry wait in queues, so a
            # frame's stamp runs ahead of the fixes by the executor's backlog (traced: up to 2 s in a busy process)
            # and would time GPS out falsely. With odometry (queued like GPS) it alone advances the GPS timeout.
            if self._last["odometry"] is None:
                change = self.health.tick(frame.stamp)
                if change:
                    out.append(change)
            if self.filter is None:
                return out
            if not (self.fallback_active or self.config.pipeline.visual_when_healthy):
                self.counts["frames_skipped_healthy"] += 1
                return out
            rate = self.config.pipeline.max_frame_rate_hz
            if rate > 0 and self._last_processed is not None and \
                    frame.stamp - self._last_processed < 1.0 / rate - 1e-9:
                self.counts["frames_skipped_rate"] += 1
                return out
            self._last_processed = frame.stamp
            headings = self._headings_to_encode()
        # -- encode: the slow step, outside the lock so that GPS/odometry callbacks never wait for it
        t0 = time.perf_counter()
        try:
            img = np.asarray(frame.image)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 1:
                raise ValueError(f"image must be uint8 RGB (H, W, 3), got {img.dtype} {img.shape}")
            if headings is None:
                codes = np.asarray(self.encoder.encode(img[None]))
            else:
                codes = np.asarray(self.encoder.encode(np.repeat(img[None], len(headings), axis=0),
                                                       headings_deg=np.asarray(headings)))
        except Exception as exc:  # noqa: BLE001 - a bad frame must never stop the vehicle's localisation
            with self._lock:
                self.counts["frames_rejected"] += 1
                self.last_error = f"frame at {frame.stamp:.3f}: {exc}"
            return out
        t_enc = (time.perf_counter() - t0) * 1e3
        with self._lock:
            self._lat["encode"].append(t_enc)
            out.extend(self._visual_update(frame.stamp, codes, headings))
        return out

    def _headings_to_encode(self):
        """Compass headings to roll a panorama to before encoding (None: the encoder takes no heading)."""
        if getattr(self.encoder, "mode", None) != "panorama" or not self._encoder_takes_headings:
            return None
        pc = self.config.pipeline
        f = self.filter
        if f.initialized:
            _, _, yaw, yaw_var = f.estimate()
            if math.sqrt(yaw_var) <= math.radians(pc.heading_known_std_deg):
                return [(90.0 - math.degrees(yaw)) % 360.0]
        k = max(1, pc.heading_hypotheses)
        return [i * 360.0 / k for i in range(k)]

    def on_frame(self, frame: CameraFrame) -> list:
        """Submit and process at once (synchronous replay)."""
        self.submit_frame(frame)
        return self.process_pending()

    def note_decode_ms(self, ms: float) -> None:
        """Record the time the caller spent turning a message into a record (decode stage of the latency)."""
        with self._lock:
            self._lat["decode"].append(float(ms))

    def note_rejected_frame(self, reason: str = "") -> None:
        """Count a frame the caller could not decode (lying data length, bad JPEG, ...)."""
        with self._lock:
            self.counts["frames_rejected"] += 1
            if reason:
                self.last_error = reason

    # -- queries ---------------------------------------------------------------------------------------------
    @property
    def fallback_active(self) -> bool:
        return self.health.state != HEALTHY

    def status(self) -> dict:
        with self._lock:
            lat = {}
            for s in _STAGES:
                v = np.asarray(self._lat[s]) if self._lat[s] else None
                lat[s] = {"mean_ms": float(v.mean()) if v is not None else None,
                          "p95_ms": float(np.percentile(v, 95)) if v is not None else None,
                          "last_ms": float(v[-1]) if v is not None else None}
            st = {
                "health": self.health.summary(),
                "fallback_active": self.fallback_active,
                "latency": lat,
                "counts": dict(self.counts),
                "backend": getattr(self.encoder, "backend", None),
                "encoder_mode": getattr(self.encoder, "mode", None),
                "table": self.table.coverage() if self.table is not None else None,
                "last_error": getattr(self, "last_error", ""),
            }
            if self.filter is not None:
                st["filter"] = {"initialized": self.filter.initialized, "last_init": self.filter.last_init,
                                "ess": self.filter.ess(), "reinits": self.filter.reinits}
                if self.filter.initialized:
                    scale, bias = self.filter.odometry_calibration()
                    st["filter"].update(odometry_scale=round(scale, 4), yaw_rate_bias=round(bias, 5))
            return st

    def latencies(self) -> dict:
        """Raw per-stage latency samples (ms), for benchmarks."""
        with self._lock:
            return {s: list(self._lat[s]) for s in _STAGES}

    # -- internals (called under the lock) -------------------------------------------------------------------
    def _accept(self, stream: str, stamp: float, out: list) -> bool:
        """Stamp checks: bad (NaN), duplicate, out of order (dropped); far backwards within the same stream (a looping
        bag): reset; a frame or fix far behind the newest stamp of the *other* streams (processed late, e.g. a bag
        played fast on a loaded machine): dropped as stale, never a reset."""
        if not math.isfinite(stamp):
            self.counts["bad_stamps"] += 1
            return False
        jump = self.config.pipeline.time_jump_reset_s
        last = self._last[stream]
        if last is not None and stamp < last - jump:
            # Only the stream's own stamps decide a time jump: live, a frame may reach the pipeline seconds after
            # GPS/odometry stamped later, which is lateness, not a loop.
            self.counts["time_resets"] += 1
            prev, back = self.health.state, last - stamp
            self._reset_state()
            out.append(HealthChange(stamp=stamp, state=self.health.state, previous=prev,
                                    reason=f"{stream} time jumped back {back:.1f} s (looping bag?): state reset"))
            last = None
        if last is not None:
            if stamp == last:
                self.counts["duplicate_stamps"] += 1
                return False
            if stamp < last:
                self.counts["out_of_order_stamps"] += 1
                return False
        if stream != "odometry" and self._clock is not None and stamp < self._clock - jump:
            # An absolute measurement this old would pull the current state back to where the vehicle was; odometry
            # increments stay valid late (ordered within their stream) and are kept.
            self.counts["stale_stamps"] += 1
            self._last[stream] = stamp
            return False
        self._last[stream] = stamp
        self._clock = stamp if self._clock is None else max(self._clock, stamp)
        return True

    def _visual_update(self, stamp: float, codes: np.ndarray, headings) -> list:
        f = self.filter
        c = self.config
        out = []
        t0 = time.perf_counter()
        f.predict_time(stamp)
        if not f.initialized:
            if not f.init_global(codes, stamp, reason="cold start: global top-k", headings_deg=headings):
                return out
            self.counts["cold_starts"] += 1
        t1 = time.perf_counter()
        vu = f.update_visual(codes, c.pipeline.report_topk, headings_deg=headings)
        t2 = time.perf_counter()
        if self._last_div_check is None or stamp - self._last_div_check >= c.tracking.divergence_check_s:
            self._last_div_check = stamp
            if f.check_divergence(codes, vu.best_distance, stamp, headings_deg=headings):
                self.counts["reinitialisations"] += 1
                vu = f.update_visual(codes, c.pipeline.report_topk, headings_deg=headings)
        if not vu.applied:
            self.counts["frames_outside_table"] += 1
        t3 = time.perf_counter()
        self._lat["search"].append((t2 - t1) * 1e3)
        self._lat["filter"].append((t1 - t0 + t3 - t2) * 1e3)
        self.counts["frames_processed"] += 1
        if vu.applied:
            self._last_topk = vu.topk
        single = None
        if c.pipeline.single_frame_baseline:
            single = self._single_frame(codes, headings)
        out.append(self._estimate(stamp, "visual" if vu.applied else "odometry", single_frame=single))
        return out

    def _single_frame(self, codes: np.ndarray, headings):
        """The paper's estimate: mean position of the global top-5 tiles (no filter, no prior), with the frame
        encoded at the filter's heading."""
        from .estimate import paper_top5_mean

        f = self.filter
        B = self.table.heading_bins
        key = int(f._keys_of(np.array([f.yaw_mean()]), headings if headings is not None else [None])[0])
        codes = np.atleast_2d(codes)
        m = self.search.topk(codes[key // B], min(5, self.table.n_tiles), key % B)
        e, n = paper_top5_mean(m)
        return float(e), float(n)

    def _estimate(self, stamp: float, source: str, single_frame=None) -> Estimate:
        t = self.config.tracking
        mean, cov, yaw, yaw_var = self.filter.estimate()
        lat, lon = self.table.frame.to_latlon(mean[0], mean[1])
        std = float(math.sqrt(max(np.linalg.eigvalsh(cov).max(), 0.0)))
        self._last_output = stamp
        known_yaw = yaw_var < math.radians(30.0) ** 2
        return Estimate(stamp=stamp, east=float(mean[0]), north=float(mean[1]), cov=cov, lat=float(lat),
                        lon=float(lon), yaw=float(yaw) if known_yaw else None, source=source,
                        confidence=float(math.exp(-std / t.confidence_scale_m)),
                        fallback_active=self.fallback_active, trustworthy=std <= t.trust_max_std_m,
                        topk=self._last_topk if self.fallback_active else (), yaw_var=float(yaw_var),
                        single_frame=single_frame)


def check_pair(encoder, table) -> None:
    """Raise :class:`FingerprintMismatchError` unless the table was built by the encoder's aerial branch."""
    want = getattr(encoder, "aerial_fingerprint", None)
    have = table.header.encoder_fingerprint
    if want is not None and want != have:
        raise FingerprintMismatchError(
            f"region table {table.path} was built by aerial encoder {have[:16]}..., but the camera model pairs with "
            f"aerial encoder {str(want)[:16]}...; rebuild the table with this model (geoloc build-table) or load the "
            "model the table was built with")
    bits = getattr(encoder, "bits", None)
    if bits is not None and int(bits) != table.bits:
        raise FingerprintMismatchError(f"the encoder makes {bits}-bit codes but the table holds {table.bits}-bit codes")


def _takes_headings(encoder) -> bool:
    import inspect

    try:
        return "headings_deg" in inspect.signature(encoder.encode).parameters
    except (TypeError, ValueError, AttributeError):
        return False
