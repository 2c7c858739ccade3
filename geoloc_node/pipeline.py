"""The pipeline: the one place where the steps are wired. The ROS node and ``geoloc replay`` both drive this object.

Per input::

    on_gps(fix)        -> stamp check -> health monitor judges the fix -> (trusted) the filter fuses it -> Estimate(gps)
    on_odometry(odom)  -> stamp check -> plausibility -> health monitor learns motion, notices silence
                          -> the filter predicts                                               -> Estimate(odometry)
    submit_frame(f)    -> one-slot buffer, latest frame wins (a replaced frame counts as dropped)
    process_pending()  -> stamp check -> encode (outside the lock) -> window search + particle update (under the lock)
    run_deferred()     -> the last frame's track check for the integrity monitor (after its outputs are published)
                          -> divergence check against a global top-k now and then                -> Estimate(visual)

Every output is an :class:`Estimate`, a :class:`HealthChange`, an :class:`InputRejected` (what was not used, and why)
or a :class:`StateReset`. Time comes from message stamps only. Thread safety: GPS and odometry arrive on other threads
than the frame worker; one lock guards the state and is never held while the encoder runs. Bad input is counted and
reported, never raised (:mod:`geoloc_node.inputs`, :mod:`geoloc_node.stamps`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque

import numpy as np

from .config import GeolocConfig
from .errors import GeolocError
from .health import HEALTHY, GpsHealthMonitor, HealthChange
from .inputs import OdometryGate
from .integrity import IntegrityMonitor
from .records import CameraFrame, Estimate, GpsFix, InputRejected, Odometry, StateReset, major_std_m
from .relocalize import Relocalizer
from .search import TableSearch
from .stamps import DROP, RESET, StampGate
from .track_match import TrackFrame, TrackMatcher
from .tracking import ParticleFilter
from .tracking import warm_up as warm_up_tracking

__all__ = ["Pipeline", "Estimate", "HealthChange", "InputRejected", "StateReset", "FingerprintMismatchError"]

#: Above this yaw standard deviation an estimate carries no yaw (the pose's orientation is then "unknown").
YAW_KNOWN_MAX_STD_DEG = 30.0


class FingerprintMismatchError(GeolocError):
    """The region table was built by another aerial encoder than the camera encoder's pair (or with other bits)."""


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
        ic = config.integrity
        self.track = TrackMatcher(self.search, length_m=ic.track_length_m, spacing_m=ic.track_spacing_m,
                                  max_frames=ic.track_max_frames, radius_m=ic.track_radius_m,
                                  separation_m=ic.alert_limit_m, recent_frames=ic.track_recent_frames,
                                  recent_m=ic.track_recent_m) \
            if self.search is not None else None
        self.integrity = IntegrityMonitor(ic, self.track.resolution_m if self.track is not None else 0.0)
        self.relocalizer = Relocalizer(self.search, length_m=ic.track_length_m, spacing_m=ic.relocalize_spacing_m,
                                       headings=ic.relocalize_headings, separation_m=2.0 * ic.alert_limit_m,
                                       min_length_m=ic.relocalize_min_track_m,
                                       min_margin_bits=ic.relocalize_margin_bits, min_z=ic.relocalize_track_z) \
            if self.search is not None and ic.relocalize_headings > 0 and \
            self.search.table.n_tiles <= ic.relocalize_max_tiles else None  # (grids: MBs per frame and heading)
        self.integrity.global_check = self.relocalizer is not None  # no relocalizer (off, table too large): no check
        pc = config.pipeline
        self.stamps = StampGate(pc.time_jump_reset_s, pc.time_jump_confirm_messages)
        self.odometry_gate = OdometryGate(pc.odometry_max_speed_mps, pc.odometry_max_yaw_rate_rps,
                                          pc.odometry_reanchor_messages)
        self._encoder_takes_headings = _takes_headings(encoder)
        self._lock = threading.Lock()  # state: health, filter, counters
        self._slot_lock = threading.Lock()  # the one-slot frame buffer
        self._pending: CameraFrame | None = None
        self._lat = {s: deque(maxlen=2000) for s in _STAGES}
        self.counts = Counter({k: 0 for k in (
            "frames_received", "frames_processed", "frames_dropped", "frames_skipped_rate", "frames_skipped_healthy",
            "frames_rejected", "frames_outside_table", "gps_fixes", "odometry", "reinitialisations", "cold_starts",
            "relocalizations",
            "bad_stamps", "duplicate_stamps", "out_of_order_stamps", "stale_stamps", "future_stamps", "time_resets",
            "frames_gated")})
        self.last_error = ""
        self._reset_state()

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: GeolocConfig, *, threads: int = 2, cache_dir: str = "") -> Pipeline:
        """The pipeline of ``config``: encoder and region table from :func:`load_encoder_and_table`."""
        encoder, table = load_encoder_and_table(config, threads=threads, cache_dir=cache_dir)
        try:
            return cls(config, encoder, table)
        except BaseException:
            close_encoder(encoder)
            raise

    def close(self) -> None:
        """Release the encoder (GPU memory, runtime threads). The pipeline processes no frame after this."""
        encoder, self.encoder = self.encoder, None
        close_encoder(encoder)

    def warm_up(self) -> None:
        """Load what the first messages would otherwise load (the search kernels, the filter's prediction kernel, the
        encoder's first run), so that a live node does not stall at its first frame. Leaves no state behind: no
        counts, no filter, no health change."""
        if self.search is not None:
            self.search.warm_up()
        if self.filter is not None:
            warm_up_tracking()
        hw = getattr(self.encoder, "input_hw", None)  # real encoders; the tests' seams have no first-run cost
        if hw is not None:
            self.encoder.encode(np.zeros((*hw, 3), dtype=np.uint8), headings_deg=[0.0])

    def _reset_state(self) -> None:
        self.health.reset()
        self.stamps.reset()
        self.odometry_gate.reset()
        if self.filter is not None:
            self.filter.reset()
        self.integrity.reset()  # (what the camera is stays known)
        if self.track is not None:
            self.track.reset()
        if self.relocalizer is not None:
            self.relocalizer.reset()
        self._last_relocalize_check: float | None = None
        self._all_headings_next = False  # the relocalizer wants the next frame at every heading (see _lost_state)
        self._have_odometry = False
        self._last_odometry: Odometry | None = None
        self._odometer_m = 0.0
        self._last_track_check: float | None = None
        self._deferred = None  # the last frame's track job (_track_frame + _lost_state), for run_deferred
        self._previous_view = None  # (odometer m, odometry yaw, codes, headings) of the last frame: _note_view_change
        self._odometry_frame = self.config.pipeline.odometry_frame_id or None
        self._last_processed: float | None = None
        self._last_output: float | None = None
        self._last_div_check: float | None = None
        self._last_topk: tuple = ()

    # -- inputs ----------------------------------------------------------------------------------------------
    def on_gps(self, fix: GpsFix) -> list:
        with self._lock:
            out: list = []
            if not self._admit("gps", fix.stamp, out):
                return out
            self.counts["gps_fixes"] += 1
            change = self.health.on_fix(fix)  # judge the fix (an invalid one makes GPS LOST and is not fused)
            problem = self.health.last_problem
            if problem is not None:
                self._reject(fix.stamp, "gps", problem.key, problem.detail, out)
            if change:
                out.append(change)
            if self.health.fix_is_trusted() and self.filter is not None:
                self._fuse_gps(fix)
                self.integrity.note_gps(fix.stamp)
                out.append(self._estimate(fix.stamp, "gps"))
            return out

    def on_odometry(self, odom: Odometry) -> list:
        with self._lock:
            out: list = []
            if not self._admit("odometry", odom.stamp, out):
                return out
            expected = self._odometry_frame = self._odometry_frame or odom.frame_id
            if odom.frame_id != expected:  # a second source publishing on the topic
                self._reject(odom.stamp, "odometry", "odometry_frame", f"odometry in frame {odom.frame_id!r}, "
                             f"expected {expected!r} (pipeline.odometry_frame_id, or the first message's)", out)
                return out
            rejection, reanchored = self.odometry_gate.check(odom)  # physics first: a broken odometry moves nothing
            if rejection is not None:
                self._reject(odom.stamp, "odometry", rejection.key, rejection.detail, out)
                return out
            if reanchored:  # a restarted odometry source: no step from the old track to the new one
                self.health.restart_odometry()
                if self.filter is not None:
                    self.filter.restart_odometry()
            self.counts["odometry"] += 1
            self._have_odometry = True
            self._odometer_m += _distance_driven(self._last_odometry, odom, reanchored)
            self._last_odometry = odom
            self.health.on_odometry(odom)
            change = self.health.tick(odom.stamp)  # GPS silence is noticed on the odometry clock
            if change:
                out.append(change)
            if self.filter is None:
                return out
            t0 = time.perf_counter()
            self.filter.predict_odometry(odom)
            self._lat["filter"].append((time.perf_counter() - t0) * 1e3)
            if self.fallback_active and self.filter.initialized and self._odometry_output_due(odom.stamp):
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
            headings = self._frame_wanted(frame, out)
        if headings is False:
            return out
        codes = self._encode(frame, headings)  # the slow step, outside the lock: GPS/odometry never wait for it
        if codes is None:
            return out
        with self._lock:
            out.extend(self._visual_update(frame.stamp, codes, headings))
        return out

    def on_frame(self, frame: CameraFrame) -> list:
        """Submit and process at once, deferred work included (synchronous replay)."""
        self.submit_frame(frame)
        out = self.process_pending()
        self.run_deferred()
        return out

    def run_deferred(self) -> None:
        """The work of the last processed frame that can wait until its outputs are published: the track check.
        The node's inference thread calls it after publishing; :meth:`on_frame` at once."""
        with self._lock:
            job, self._deferred = self._deferred, None
            if job is not None and self.filter is not None and self.filter.initialized:
                self._check_track(*job)

    def note_decode_ms(self, ms: float) -> None:
        """Record the time the caller spent turning a message into a record (decode stage of the latency)."""
        with self._lock:
            self._lat["decode"].append(float(ms))

    def note_camera(self, check) -> None:
        """The camera checked against the model (:func:`geoloc_node.camera_check.check_camera`): a mismatch makes
        every camera-based estimate untrustworthy."""
        with self._lock:
            self.integrity.note_camera(check)

    def note_rejected_frame(self, reason: str = "") -> None:
        """Count a frame the caller could not decode (lying data length, bad JPEG, ...)."""
        with self._lock:
            self.counts["frames_rejected"] += 1
            if reason:
                self.last_error = reason

    # -- the localisation steps (under the lock, except the encoder) ------------------------------------------
    def _fuse_gps(self, fix: GpsFix) -> None:
        """A trusted fix: (re)start the filter on it, or weigh the particles with it."""
        e, n = self.table.frame.to_en(fix.lat, fix.lon)
        c = fix.covariance
        cov = np.array([[c[0], c[1]], [c[3], c[4]]], dtype=np.float64)
        if not np.all(np.isfinite(cov)) or cov[0, 0] < 0 or cov[1, 1] < 0:  # type UNKNOWN: values mean nothing
            cov = np.eye(2) * self.config.health.max_horizontal_std_m ** 2
        if not self.filter.initialized:
            self.filter.init_gaussian(float(e), float(n), cov + np.eye(2), fix.stamp, reason="gps")
        else:
            self.filter.predict_time(fix.stamp)
            self.filter.update_gps(float(e), float(n), cov)

    def _frame_wanted(self, frame: CameraFrame, out: list):
        """Headings to encode the frame at (None: the encoder takes none), or False when the frame is not used."""
        if not self._admit("frame", frame.stamp, out):
            return False
        # Live, the camera subscription keeps only the newest frame while fixes and odometry wait in queues, so a
        # frame's stamp runs ahead of the fixes by the executor's backlog (traced: up to 2 s in a busy process)
        # and would time GPS out falsely. With odometry (queued like GPS) it alone advances the GPS timeout.
        if not self._have_odometry:
            change = self.health.tick(frame.stamp)
            if change:
                out.append(change)
        if self.filter is None:
            return False
        if not (self.fallback_active or self.config.pipeline.visual_when_healthy):
            self.counts["frames_skipped_healthy"] += 1
            return False
        rate = self.config.pipeline.max_frame_rate_hz
        if rate > 0 and self._last_processed is not None and frame.stamp - self._last_processed < 1.0 / rate - 1e-9:
            self.counts["frames_skipped_rate"] += 1
            return False
        self._last_processed = frame.stamp
        return self._headings_to_encode()

    def _encode(self, frame: CameraFrame, headings):
        """The frame's codes (one per heading hypothesis), or None when the encoder refuses the frame."""
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
            return None
        with self._lock:
            self._lat["encode"].append((time.perf_counter() - t0) * 1e3)
        return codes

    def _headings_to_encode(self):
        """Compass headings to roll a panorama to before encoding (None: the encoder takes no heading)."""
        if getattr(self.encoder, "mode", None) != "panorama" or not self._encoder_takes_headings:
            return None
        pc = self.config.pipeline
        if self.filter.initialized and not self._all_headings_next:
            _, _, yaw, yaw_var = self.filter.estimate()
            if math.sqrt(yaw_var) <= math.radians(pc.heading_known_std_deg):
                return [(90.0 - math.degrees(yaw)) % 360.0]
        k = max(1, pc.heading_hypotheses)
        return [i * 360.0 / k for i in range(k)]

    def _visual_update(self, stamp: float, codes: np.ndarray, headings) -> list:
        f, c, integrity = self.filter, self.config, self.integrity
        t0 = time.perf_counter()
        f.predict_time(stamp)  # 1. bring the particles to the frame's time
        if not f.initialized:  # 2. no prior at all: start from the whole table's best tiles (cold start)
            if not f.init_global(codes, stamp, reason="cold start: global top-k", headings_deg=headings):
                return []
            self.counts["cold_starts"] += 1
            self._started_from_table(stamp)
        t1 = time.perf_counter()
        vu = f.score_visual(codes, c.pipeline.report_topk, headings_deg=headings)  # 3. the frame's word on each
        t2 = time.perf_counter()                                                    #    particle, before it moves any
        used = vu.applied and integrity.admits(stamp, vu)
        if used:  # 4. weigh the particles, unless the frame contradicts a trusted estimate (an unreadable frame)
            f.apply_visual(vu)
        elif vu.applied:
            self.counts["frames_gated"] += 1
        if c.tracking.divergence_checks > 0 and self._divergence_check_due(stamp):  # 5. (off by default) now and
            # then the whole table's best tiles for this frame: persistently elsewhere -> restart there
            if f.check_divergence(codes, vu.best_distance, stamp, headings_deg=headings):
                self.counts["reinitialisations"] += 1
                self._started_from_table(stamp)
                vu = f.update_visual(codes, c.pipeline.report_topk, headings_deg=headings)
                used = vu.applied
        t3 = time.perf_counter()
        self._lat["search"].append((t2 - t1) * 1e3)
        self._lat["filter"].append((t1 - t0 + t3 - t2) * 1e3)
        self.counts["frames_processed"] += 1
        if vu.applied:
            self._last_topk = vu.topk
        else:
            self.counts["frames_outside_table"] += 1
        single = self._single_frame(codes, headings) if c.pipeline.single_frame_baseline else None
        # 6. does the recent track match here, and nowhere else? Deferred until this estimate is out (10-20 ms on
        # a 2 km table, kept off the image -> ~/fix latency: run_deferred): its verdict holds from the next estimate.
        # Only the newest frame's own test runs now (about 1 ms): a vehicle that is elsewhere shows in this frame.
        track_frame = self._track_frame(stamp, codes, headings)
        if track_frame is not None:
            self._note_view_change(track_frame[0], codes, headings)
            if self.track.frames:
                integrity.note_newest_frame(stamp, self.track.frame_z(track_frame[0], track_frame[1]))
        est = self._estimate(stamp, "visual" if used else "odometry", single_frame=single)
        self._deferred = None if track_frame is None else \
            (*track_frame, self._lost_state(stamp, codes, headings))
        return [est]

    def _started_from_table(self, stamp: float) -> None:
        """The filter (re)started from the table's best tiles: its heading may have changed, so the kept track (whose
        panorama codes were rolled by the old heading) starts again, and nothing anchors the estimate."""
        self.integrity.note_start_from_table(stamp)
        self.track.reset()
        if self.relocalizer is not None:  # its frames chose (or saw) the old place: only new ones may confirm this one
            self.relocalizer.reset()

    def _track_frame(self, stamp: float, codes: np.ndarray, headings):
        """What the track check needs of this frame, taken now, under the lock: (the frame's code at the filter's
        heading, placed where odometry puts it; the filter's place, this frame's estimate; its heading). The check
        itself may run later (run_deferred), after newer odometry: it must not see that odometry, or the node would
        decide otherwise than replay. None without odometry (the frames cannot be placed along a track: the camera
        is never confirmed)."""
        odom = self._last_odometry
        if odom is None:
            return None
        f = self.filter
        yaw = f.yaw_mean()
        hypothesis, table_bin = f.code_row_of_yaw(yaw, headings)
        pose = (odom.x, odom.y, odom.yaw)
        frame = TrackFrame(stamp, self._odometer_m, pose, np.atleast_2d(codes)[hypothesis].copy(), table_bin)
        return frame, f.estimate()[0], yaw

    def _note_view_change(self, frame: TrackFrame, codes: np.ndarray, headings) -> None:
        """How far odometry moved and turned since the previous frame, and how much the view changed (the share of
        code bits that differ, the median over the compass headings both frames were encoded at): for the monitor's
        check of a vehicle moved without odometry (:meth:`IntegrityMonitor.note_view_change`)."""
        codes = np.atleast_2d(codes)
        headings = None if headings is None else np.asarray(headings, float)
        previous, self._previous_view = self._previous_view, (frame.odometer_m, frame.odom[2], codes, headings)
        if previous is None:
            return
        odometer_m, yaw, previous_codes, previous_headings = previous
        if previous_codes.shape != codes.shape or (previous_headings is None) != (headings is None):
            return  # encoded at other headings (the relocalizer's frames): not comparable row by row
        changed = np.unpackbits(np.bitwise_xor(previous_codes, codes), axis=1).mean(axis=1)
        turned = abs(math.degrees(math.remainder(frame.odom[2] - yaw, 2.0 * math.pi)))
        if headings is not None:  # the compass headings the rows were encoded at (the filter's, when it knows it)
            turned = max(turned, float(np.max(np.abs((headings - previous_headings + 180.0) % 360.0 - 180.0))))
        self.integrity.note_view_change(frame.stamp, frame.odometer_m - odometer_m, turned, float(np.median(changed)))

    def _lost_state(self, stamp: float, codes: np.ndarray, headings):
        """What the relocalizer needs of this frame, decided now, from this frame's state: live, odometry and its
        estimates keep coming while a frame is encoded and until its deferred job runs, and the node must decide what
        replay decides. None: not lost (in fallback and the estimate not trustworthy), or no relocalizer; else (the
        codes at every heading or None, whether a restart is allowed now). Lost, and the track has moved on by the
        relocalizer's spacing: the *next* frame is encoded at every heading."""
        last = self.integrity.last
        lost = self.relocalizer is not None and self.fallback_active and (last is None or not last.trustworthy)
        self._all_headings_next = lost and self.relocalizer.wants_frame(self._odometer_m)
        if not lost:
            return None
        every_heading = headings is None or len(headings) == max(1, self.config.pipeline.heading_hypotheses)
        return ((codes, headings) if every_heading else None), self._may_restart(stamp)

    def _check_track(self, frame: TrackFrame, mean: np.ndarray, yaw: float, lost) -> None:
        """Keep the frame and, every ``track_check_s``, score the track around the filter for the integrity
        monitor; while lost, look for the place and heading of the recent track on the whole table."""
        stamp = frame.stamp
        if self._relocalize(frame, mean, lost):
            return  # restarted where the track fits: this frame chose the place, it cannot also confirm it
        self.track.add(frame)
        if self._last_track_check is not None and stamp - self._last_track_check < self.config.integrity.track_check_s:
            return
        self._last_track_check = stamp
        self.integrity.note_track(self.track.check(stamp, mean, yaw, frame.odom, self.integrity.fresh_after))
        # Without the relocalizer: restart from the table when the track says the filter is at a wrong place. With it,
        # the relocalizer decides (its test, the whole table at every heading, is the stronger one: on the
        # calibration drives with a table older than the world this single-heading test restarted a filter that was
        # right, p95 362 m against 10 m)
        if self.relocalizer is None and self.fallback_active and self.integrity.should_restart(stamp):
            self.counts["reinitialisations"] += 1
            self.filter.reset()  # the next frame starts it from the whole table, at every heading
            self._started_from_table(stamp)

    def _relocalize(self, frame: TrackFrame, mean: np.ndarray, lost) -> bool:
        """Lost (``lost``: from :meth:`_lost_state`): keep the frame (codes at every heading) and, every
        ``relocalize_check_s``, restart the filter where the recent track fits the whole table decisively, when that
        is not where the filter is. Not lost: drop the frames. Whether it restarted the filter."""
        r, ic = self.relocalizer, self.config.integrity
        if r is None:
            return False
        if lost is None:
            r.reset()
            return False
        lost_codes, may_restart = lost
        if lost_codes is not None:
            r.add(frame.stamp, frame.odometer_m, frame.odom, *lost_codes)
        if self._last_relocalize_check is not None and \
                frame.stamp - self._last_relocalize_check < ic.relocalize_check_s:
            return False
        self._last_relocalize_check = frame.stamp
        found = r.locate(frame.stamp)
        if found is None:
            return False
        distance = math.hypot(found.east - mean[0], found.north - mean[1])
        self.integrity.note_global_fit(found, distance)
        if not found.decisive or distance <= ic.alert_limit_m or not (may_restart or self._corroborated(found)):
            return False
        east, north, yaw = found.east, found.north, found.yaw
        odom, (fx, fy, fyaw) = self._last_odometry, frame.odom
        if odom is not None:  # live, odometry may have moved on since the frame: carry the place forward by it
            phi = found.yaw - fyaw  # odometry frame -> east/north at the found heading
            dx, dy = odom.x - fx, odom.y - fy
            east += math.cos(phi) * dx - math.sin(phi) * dy
            north += math.sin(phi) * dx + math.cos(phi) * dy
            yaw += math.remainder(odom.yaw - fyaw, 2.0 * math.pi)
        stamp = max(frame.stamp, self.filter.stamp if self.filter.stamp is not None else frame.stamp)
        self.filter.init_gaussian(east, north, np.eye(2) * r.stride ** 2, stamp, yaw=yaw,
                                  yaw_std=math.pi / r.n_headings, reason="relocalized: the recent track over the table")
        self.counts["relocalizations"] += 1
        self._started_from_table(frame.stamp)
        return True

    def _corroborated(self, found) -> bool:
        """Whether the filter's own track check (the last verdict, at the filter's heading, over its window) also
        prefers the relocalizer's place to the filter's, by ``relocalize_corroboration_bits`` per frame: two tests
        that disagree on the hypotheses they compare (one heading near the filter; every heading on the whole table)
        and agree on the place. A kidnapped vehicle shows it within seconds (calibration: -17 to -30 bits per frame
        while the relocalizer was decisive at the true place), long before ``relocalize_converged_after_s``."""
        ic, t = self.config.integrity, self.integrity.track
        if ic.relocalize_corroboration_bits <= 0 or t is None or t.length_m < ic.track_min_length_m:
            return False
        return t.margin_bits <= -ic.relocalize_corroboration_bits and math.hypot(
            t.alternative_en[0] - found.east, t.alternative_en[1] - found.north) <= ic.alert_limit_m

    def _may_restart(self, stamp: float) -> bool:
        """A filter whose cloud has not converged may be restarted by the relocalizer at once; a converged one only
        after ``relocalize_converged_after_s`` without a trustworthy estimate: a right filter whose track merely fails
        to confirm (a table older than the world, weak frames) must not be thrown away for a decisive-looking wrong
        place (evaluation, old table: a restart 94 m off)."""
        last, ic = self.integrity.last, self.config.integrity
        if last is None or last.hpl_m > ic.alert_limit_m:
            return True
        since = self.integrity.trusted_stamp if self.integrity.trusted_stamp is not None else \
            self.integrity.lost_since
        return since is None or stamp - since >= ic.relocalize_converged_after_s

    def _single_frame(self, codes: np.ndarray, headings):
        """The paper's estimate: mean position of the global top-5 tiles (no filter, no prior), with the frame
        encoded at the filter's heading."""
        from .estimate import paper_top5_mean

        hypothesis, table_bin = self.filter.code_row_of_yaw(self.filter.yaw_mean(), headings)
        m = self.search.topk(np.atleast_2d(codes)[hypothesis], min(5, self.table.n_tiles), table_bin)
        e, n = paper_top5_mean(m)
        return float(e), float(n)

    def _estimate(self, stamp: float, source: str, single_frame=None) -> Estimate:
        f = self.filter
        mean, cov, yaw, yaw_var = f.estimate()
        verdict = self.integrity.assess(stamp, f.p, f.w, mean, cov, gps_trusted=source == "gps")
        lat, lon = self.table.frame.to_latlon(mean[0], mean[1])
        self._last_output = stamp
        known_yaw = yaw_var < math.radians(YAW_KNOWN_MAX_STD_DEG) ** 2
        # the confidence from the estimate's one sigma (Estimate.std_m of this cov), computed before the Estimate is
        # made: one frozen dataclass per estimate, not a second one from dataclasses.replace
        confidence = math.exp(-major_std_m(verdict.cov) / self.config.tracking.confidence_scale_m)
        return Estimate(stamp=stamp, east=float(mean[0]), north=float(mean[1]), cov=verdict.cov, lat=float(lat),
                        lon=float(lon), yaw=float(yaw) if known_yaw else None, source=source, confidence=confidence,
                        fallback_active=self.fallback_active, trustworthy=verdict.trustworthy,
                        topk=self._last_topk if self.fallback_active else (), yaw_var=float(yaw_var),
                        single_frame=single_frame, hpl_m=verdict.hpl_m, integrity=verdict.reason)

    # -- bookkeeping (under the lock) -------------------------------------------------------------------------
    def _admit(self, stream: str, stamp: float, out: list) -> bool:
        """The stamp gate's verdict: process, drop (counted, reported) or reset everything and process."""
        verdict = self.stamps.check(stream, stamp)
        if verdict.action == DROP:
            self._reject(stamp, stream, verdict.reason, verdict.detail, out)
            return False
        if verdict.action == RESET:
            prev = self.health.state
            self.counts["time_resets"] += 1
            self._reset_state()
            self.stamps.check(stream, stamp)  # the new time line starts with this message
            out.append(StateReset(stamp=stamp, reason=verdict.detail))
            out.append(HealthChange(stamp=stamp, state=self.health.state, previous=prev, reason=verdict.detail))
        return True

    def _reject(self, stamp: float, stream: str, key: str, detail: str, out: list) -> None:
        self.counts[key] += 1
        out.append(InputRejected(stamp=stamp, stream=stream, key=key, detail=detail))

    def _odometry_output_due(self, stamp: float) -> bool:
        rate = self.config.pipeline.odometry_output_rate_hz
        return rate > 0 and (self._last_output is None or stamp - self._last_output >= 1.0 / rate - 1e-9)

    def _divergence_check_due(self, stamp: float) -> bool:
        if self._last_div_check is not None and stamp - self._last_div_check < self.config.tracking.divergence_check_s:
            return False
        self._last_div_check = stamp
        return True

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
                "last_error": self.last_error,
                "integrity": self.integrity.summary(),
            }
            if self.filter is not None:
                st["filter"] = {"initialized": self.filter.initialized, "last_init": self.filter.last_init,
                                "ess": self.filter.ess(), "reinits": self.filter.reinits}
                if self.filter.initialized:
                    scale, bias = self.filter.odometry_calibration()
                    st["filter"].update(odometry_scale=round(scale, 4), yaw_rate_bias=round(bias, 5))
            return st


def _distance_driven(prev: Odometry | None, odom: Odometry, restarted: bool) -> float:
    """Metres driven between two odometry records (from the twist when the pose does not move)."""
    if prev is None or restarted:
        return 0.0
    step = math.hypot(odom.x - prev.x, odom.y - prev.y)
    return step if step > 1e-9 else abs(prev.v) * max(odom.stamp - prev.stamp, 0.0)


def close_encoder(encoder) -> None:
    """Release an encoder's runtime (GPU memory, threads), if it holds one: None, and test encoders without a
    ``close``, are fine."""
    close = getattr(encoder, "close", None)
    if callable(close):
        close()


def load_encoder_and_table(config: GeolocConfig, *, threads: int = 2, cache_dir: str = ""):
    """The one factory of node, replay, demo and benchmarks: (encoder, region table) of ``config``.

    The table (``table.path``) is opened first: the usual mistake, and cheap. The encoder: ``model.path`` ('' = the
    shipped panorama model), ``model.backend`` ('auto' = TensorRT on an NVIDIA GPU, else ONNX Runtime), ``threads``
    for ONNX Runtime / torch, TensorRT engines cached in ``cache_dir`` ('' = the backend's default). Raises
    :class:`GeolocError` with the reason; :class:`Pipeline` then checks that the two are a pair.
    """
    from .encoders import available_backends, load_encoder
    from .table import open_table

    if not config.table.path:
        raise GeolocError("no region table given: set table.path (build one with `geoloc build-table`)")
    table = open_table(config.table.path, verify=config.table.verify)
    backend = config.model.backend_name
    if backend == "auto":  # resolved here so that only TensorRT gets the engine cache
        backend = (available_backends() or ["onnxruntime"])[0]
    kwargs = {"cache_dir": cache_dir} if cache_dir and backend == "tensorrt" else {}
    try:
        return load_encoder(model_path(config), backend, threads=threads, **kwargs), table
    except (OSError, ValueError, RuntimeError) as exc:
        raise GeolocError(f"cannot load the camera model: {exc}") from None


def model_path(config: GeolocConfig) -> str:
    """``model.path``, or the shipped panorama model's sidecar when it is empty."""
    path = str(config.model.path or "").strip()
    if path:
        return path
    from .models import shipped_model_path

    try:
        return str(shipped_model_path())
    except (FileNotFoundError, ValueError) as exc:
        raise GeolocError(f"{exc}; or set model.path") from None


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
