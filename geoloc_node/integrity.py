"""The integrity monitor: the one place that decides whether an estimate may be published as trustworthy, and bounds
its error with a horizontal protection level (HPL).

The rule: **never trustworthy unless the evidence bounds the error**. A GPS fallback that publishes a wrong position as
trustworthy is worse than one that publishes nothing: the vehicle's EKF fuses it. Satellite navigation's integrity
vocabulary (RAIM/SBAS) is the model: an integrity risk per estimate, a protection level that the error exceeds with
at most that probability, an alert limit above which the position is not usable, and a reason when it is not.

What bounds the error, in order of the checks (the first that fails gives the reason):

1. the camera is the model's camera (:mod:`geoloc_node.camera_check`: projection, field of view); without CameraInfo
   the camera cannot be checked and nothing is trusted (``require_camera_info``);
2. the protection level is below the alert limit. HPL = max(K sigma, r_q): K = sqrt(-2 ln risk) times the published
   sigma (a 2-D Gaussian leaves a circle of K sigma with probability ``risk``), and the particle cloud's radius r_q
   that holds all but ``10 x risk`` of its weight, so that a second mode of the cloud widens the bound;
3. no other place of the table matches as well (the filter's global divergence checks found no credible, far, better
   cluster recently): an ambiguous position is not bounded by its own cloud;
4. an anchor: either a trusted GPS fix at most ``gps_anchor_s`` ago (dead-reckoning from it, the cloud grows with the
   odometry noise), or visual confirmation: the camera frames keep agreeing with the filter's *prediction* (the log
   Bayes factor of each frame, :class:`~geoloc_node.tracking.VisualUpdate`, averaged over the last frames, at least
   ``evidence_min``), recently (``evidence_max_age_s``), and the track check (:mod:`geoloc_node.track_match`) finds
   the recent track fitting here and nowhere else; after a failed check, on frames taken since (``track_regain_m``;
   once they cover a track of their own, or pass the track's tests on their own, they alone are judged: the older
   frames neither confirm nor blur it);
   a view that changes more than odometry explains (a vehicle moved without odometry) fails it at once
   (:meth:`IntegrityMonitor.note_view_change`);
5. after the filter (re)started from the table: the relocalizer (:mod:`geoloc_node.relocalize`) also finds the
   recent track fitting the whole table best here, at any heading (the track check compares places at the filter's
   heading only).

Frames that do not agree with a confident prediction (log Bayes factor below ``frame_gate``) do not move the filter
(:meth:`IntegrityMonitor.admits`): black, noisy or wrong-domain frames then cost only their evidence, and the position
dead-reckons on odometry instead of chasing chance matches; once the track is confirmed again on new frames, or the
newest frames stand out best inside the protection level, they may tighten the cloud that dead-reckoned through the
trouble. A kidnapped vehicle loses its anchor within a few frames,
the gate opens, and the divergence check restarts the filter from the table.

The published covariance is the particle covariance calibrated once on worlds not used for evaluation
(``covariance_scale``, ``covariance_floor_m``; docs/pipeline.md#integrity has the measurements).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .camera_check import CameraCheck
from .config import IntegrityConfig

#: How many consecutive frame pairs tell how much this camera's codes usually change (at 5 frames/s, 4 s).
_VIEW_PAIRS = 20


@dataclass(frozen=True)
class Integrity:
    """The verdict on one estimate."""

    trustworthy: bool
    hpl_m: float  # horizontal protection level (m) at the configured integrity risk
    reason: str  # why it is trustworthy ("gps", "visual: ...") or why not
    cov: np.ndarray  # the published east/north covariance (m^2)


def protection_factor(risk: float) -> float:
    """K with P(|e| > K sigma) = risk for a 2-D isotropic Gaussian error of per-axis sigma: sqrt(-2 ln risk)."""
    return math.sqrt(-2.0 * math.log(min(max(risk, 1e-12), 0.5)))


class IntegrityMonitor:
    """Not thread-safe by itself: the pipeline calls it under its lock."""

    def __init__(self, config: IntegrityConfig = IntegrityConfig(), camera_resolution_m: float = 0.0):
        self.config = config
        self.camera: CameraCheck | None = None
        #: How close two places can be and still be told apart by the track check (its "the filter's place" is
        #: every tile within 1.5 table strides): without GPS the protection level is never below it. On an evaluation
        #: drive the track confirmed a filter 11 m off whose cloud said 3 m (HPL 10.8 m): 25 hazardous estimates.
        self.camera_resolution_m = float(camera_resolution_m)
        self.global_check = True  # the pipeline clears it when it has no relocalizer to answer note_global_fit
        self.reset()

    def reset(self) -> None:
        self.anchor_stamp: float | None = None  # last trusted GPS fix fused
        self.evidence: float | None = None  # running mean of the frames' log Bayes factors
        self.evidence_stamp: float | None = None
        self.distinctness: float | None = None
        self.track = None  # the last TrackVerdict (geoloc_node.track_match)
        self.track_problem: str | None = "no track checked yet"
        self.track_ok = False  # the track is confirmed (see note_track)
        self.fresh_after: float | None = None  # only frames taken after this may (re)confirm the track (None: any)
        self.moved_unseen = False  # the view jumped (note_view_change): only driving may restore trust
        self.newest_doubt: float | None = None  # the newest frame's z when below track_newest_trust_z
        self.fresh_vouched = False  # the frames since the last contradiction confirm the place, the whole track not
        self._view_changes: deque = deque(maxlen=_VIEW_PAIRS)  # changed_frac of the last frame pairs
        self.from_table = False  # the filter's place came from the table (a start or restart), not from continuity
        self.global_fit = None  # (stamp, distance of the best place from the filter, Relocalization) while lost
        self.locked_until: float | None = None  # frames that contradict the estimate are not used until then
        self.frames_gated = 0
        self.last: Integrity | None = None
        self.last_mean = None
        self.restart_stamp: float | None = None  # the last restart of the filter
        self.contradicted_at: float | None = None  # when the newest frames last stopped fitting a confirmed track
        self.trusted_stamp: float | None = None  # the last trustworthy estimate
        self.lost_since: float | None = None  # the first untrustworthy estimate since a (re)start

    # -- evidence ----------------------------------------------------------------------------------------------
    def note_camera(self, check: CameraCheck) -> None:
        self.camera = check

    def note_gps(self, stamp: float) -> None:
        """A trusted GPS fix was fused: the estimate is anchored to it."""
        self.anchor_stamp = stamp
        self.from_table = False

    def note_start_from_table(self, stamp: float) -> None:
        """The filter (re)started from the table's best matches (cold start, divergence, or the place its track fits
        better): nothing anchors it until a track of new frames confirms it (the old frames chose the place: they
        cannot also confirm it)."""
        self.anchor_stamp = None
        self.evidence = None
        self.restart_stamp = stamp
        self.locked_until = None  # the new cloud's prediction is no reason to refuse a frame
        self.track = None
        self.track_problem = "no track checked yet"
        self.track_ok, self.fresh_after = False, None  # the track starts again: all its frames are new
        self.moved_unseen, self.newest_doubt = False, None
        self.from_table, self.global_fit = True, None
        self.trusted_stamp = None
        self.lost_since = stamp

    def note_track(self, verdict) -> None:
        """The latest track check (:class:`geoloc_node.track_match.TrackVerdict`). Hysteresis: a confirmed track stays
        confirmed while each check passes. After a check that found the newest frames at odds with the filter's place
        (a long track that is only ambiguous or weak for a moment withdraws trust while it is: calibration, 3 filter
        seeds, nominal availability 0.914 -> 0.929 and no new hazard when it stopped demanding new frames too), only
        frames taken after it may confirm the place again: ``track_regain_m`` of driving of them (or ``track_regain_s``
        of them, for a vehicle standing still), which on their own
        prefer the filter's place outright (``track_recent_regain_bits``) and stand out (``track_regain_min_z``).
        Right after a kidnapping the old frames still vouch for the old place, and a few new frames can match it by
        chance (calibration, 5 frames/s: three checks in a row within 0.6 s did, 3.4 s after a 500 m teleport); a
        stretch of road measured in metres, not a count of checks, is the same evidence at any frame rate."""
        c = self.config
        self.track = verdict = self._judged(verdict)
        self.track_problem = self._track_problem(verdict) if verdict is not None else "no track checked yet"
        if verdict is not None:  # the same frame's z as note_newest_frame gave (the check may run without it)
            self.newest_doubt = self._newest_doubt(verdict.newest_z, verdict.length_m)
        self.fresh_vouched = self.track_problem is not None and self._fresh_vouches(verdict)
        if self.fresh_vouched:
            self.track_problem = None
        if self.track_problem is not None:
            # the newest frames at odds with the place (not merely a short, weak or ambiguous track): from here on
            # the older frames may vouch for a place the vehicle has left
            if verdict is not None and verdict.length_m >= c.track_min_length_m and self._newest_at_odds(verdict):
                if self.track_ok:  # from here on the old frames may vouch for a wrong place
                    self.contradicted_at = verdict.stamp
                self.fresh_after = verdict.stamp
            self.track_ok = False
        elif not self.track_ok:
            self.track_ok = (self._fresh_enough(verdict) and verdict.fresh_margin_bits >= c.track_recent_regain_bits
                             and verdict.fresh_z >= c.track_regain_min_z)
            self.moved_unseen = self.moved_unseen and not self.track_ok

    def _fresh_enough(self, verdict) -> bool:
        """Enough new evidence since a contradiction: a stretch of road, or (a vehicle standing still sees no new
        road) some time, unless the view jumped (a vehicle moved without odometry: only driving counts)."""
        c = self.config
        return verdict.fresh_length_m >= c.track_regain_m or (
            not self.moved_unseen and self.fresh_after is not None and
            verdict.stamp - self.fresh_after >= c.track_regain_s)

    def _fresh_vouches(self, verdict) -> bool:
        """After a contradiction, whether the frames taken since vouch for the filter's place on their own, though
        the whole track fails (ambiguous, weak, short): enough of them (:meth:`_fresh_enough`), and on their own
        they pass the whole track's tests but its length (:meth:`_track_problem`: ``track_margin_bits``,
        ``track_min_z``, the newest not at odds), which are stricter than the regain's (checked after, as always).
        The older frames were taken during the trouble: unreadable ones (black, noise, another domain) blur the
        margin for as long as they stay in the track, and a vehicle that stands still once good frames return never
        drives them out (evaluation, black frames: new frames at the right place with a margin of 26 bits per frame
        and z 6 were called ambiguous for 10 s on the whole track, margin near 0). A kidnapped vehicle's old frames
        would pass, not fail: there the new frames alone decide already."""
        if verdict is None or self.fresh_after is None or verdict.fresh_frames >= verdict.frames:
            return False
        return self._fresh_enough(verdict) and self._track_problem(_fresh_only(verdict), min_length_m=0.0) is None

    def _judged(self, verdict):
        """The track to judge the place on: after a contradiction, once the frames taken since cover a track of
        their own (``track_min_length_m``), those frames alone. The older ones may vouch for a place the vehicle has
        left, and frames the camera could not read (black, noise) blur the margin as long as they stay in the track:
        after 50 s of black frames, good frames at the right place were called ambiguous for 10 s (evaluation)."""
        if verdict is None or self.fresh_after is None or verdict.fresh_length_m < self.config.track_min_length_m:
            return verdict
        return _fresh_only(verdict)

    def note_newest_frame(self, stamp: float, z: float | None) -> None:
        """The newest frame's robust z at the filter's place (:meth:`TrackMatcher.frame_z`), before the estimate of
        that frame is published: the whole track check runs after it is out (for latency) and holds from the next
        estimate. A frame that does not stand out there (``track_newest_min_z``) withdraws a long track's
        confirmation at once, as the check will: the first frame after a kidnapping shows it (evaluation, teleported
        500 m: newest z 1.2-1.6 on the first frame after the jump, 4.1-4.4 on the one before), and the estimate made
        with that frame must not be trusted on the track confirmed before it. One that stands out only a little
        (below ``track_newest_trust_z``) leaves the track confirmed but its estimate, and those until the next
        frame, untrusted: after a teleport while driving the first two frames still fit the old place at z 2.6-2.7."""
        c, t = self.config, self.track
        self.newest_doubt = None if t is None else self._newest_doubt(z, t.length_m)
        if z is None or t is None or t.length_m < c.track_min_length_m or z >= c.track_newest_min_z:
            return
        self._withdraw(stamp, f"the newest frame does not fit the track's place (newest z {z:.1f}): the vehicle may "
                              "not be where the track says")

    def _newest_doubt(self, z: float | None, track_length_m: float) -> float | None:
        """``z`` when the newest frame of a long track stands out less than ``track_newest_trust_z``, else None."""
        c = self.config
        long_track = z is not None and track_length_m >= c.track_min_length_m
        return z if long_track and z < c.track_newest_trust_z else None

    def _withdraw(self, stamp: float, problem: str, moved_unseen: bool = False) -> None:
        """The track no longer vouches for the place: only frames taken from ``stamp`` on may confirm it again."""
        if self.track_ok:
            self.contradicted_at = stamp
        self.track_ok, self.fresh_after, self.track_problem = False, stamp, problem
        self.moved_unseen = self.moved_unseen or moved_unseen

    def note_view_change(self, stamp: float, moved_m: float, turned_deg: float, changed_frac: float) -> None:
        """Two consecutive frames: ``moved_m`` and ``turned_deg`` of odometry between them, ``changed_frac`` of
        their code bits differ. A view that changes more than that motion explains (``view_change_*``) and more than
        ``view_change_noise_factor`` times as much as this camera's consecutive frames usually do (the median of the
        last pairs: an encoder whose codes flicker from frame to frame is no sign of anything) is a vehicle moved
        without odometry: the track, taken before, may vouch for a place it has left, and the first frames at the
        new place may fit the old one by chance (a 1 km teleport: newest z 3.8 there, standing; 2.7 and 2.6 on the
        two frames after one at 10 m/s), so trust needs ``track_regain_m`` of new driving. No decision before the
        usual change is known (the track is not confirmed that soon anyway)."""
        c = self.config
        usual = self._usual_view_change(changed_frac)
        explained = c.view_change_max_frac + c.view_change_per_m * max(moved_m, 0.0)
        if usual is None or turned_deg > c.view_change_max_turn_deg or changed_frac <= explained or \
                changed_frac <= c.view_change_noise_factor * usual:
            return
        self._withdraw(stamp, f"the view changed more than odometry explains ({100 * changed_frac:.0f} % of the code "
                              f"bits over {moved_m:.1f} m, usually {100 * usual:.0f} %): the vehicle may have been "
                              "moved", moved_unseen=True)

    def _usual_view_change(self, changed_frac: float) -> float | None:
        """The median change of the last pairs before this one (None while fewer than half the window are known);
        this pair joins them."""
        recent = self._view_changes
        usual = float(np.median(recent)) if len(recent) >= _VIEW_PAIRS // 2 else None
        recent.append(changed_frac)
        return usual

    def note_global_fit(self, found, distance_m: float) -> None:
        """The relocalizer's latest answer (:class:`geoloc_node.relocalize.Relocalization`): where on the whole table,
        at any heading, the recent track fits best, ``distance_m`` from the filter."""
        self.global_fit = (found.stamp, distance_m, found)

    def should_restart(self, stamp: float) -> bool:
        """Whether the filter is at a wrong place and should restart from the whole table (a cold start at every
        heading: a kidnapped vehicle may also face another way). All of: its track has not been confirmed for
        ``relocalize_after_s`` since the last trustworthy estimate or restart (``relocalize_unconverged_s`` while the
        protection level is above the alert limit: a cloud that is still converging); the track holds only frames
        taken since its place was contradicted; and on that track the filter's place does not stand out (z below
        ``track_min_z``) while some other place does (``relocalize_min_z``) and fits better. Unreadable frames match
        no place distinctly: they never restart it (it dead-reckons through them); an ambiguous place (two places
        stand out) does not either.

        Restarting near the best other place with the filter's heading was tried and dropped: after a kidnapping the
        heading is wrong too, and the place its track preferred was wrong (calibration drive: 553 m off)."""
        c, t, last = self.config, self.track, self.last
        if t is None or self.track_ok or last is None:
            return False
        converged = last.hpl_m <= c.alert_limit_m
        # a wide cloud is restarted only on a track that stands out beyond doubt: chance codes reach z 5 over the
        # thousands of positions of a table (calibration: noise frames 5.1)
        need_z = c.relocalize_min_z + (0.0 if converged else c.relocalize_unconverged_extra_z)
        if t.length_m < c.track_min_length_m or t.best_z < need_z:
            return False
        if self.contradicted_at is not None and t.first_stamp < self.contradicted_at:
            return False  # the track still holds frames from before its place was contradicted
        since = max(v for v in (self.trusted_stamp, self.restart_stamp, self.lost_since, -math.inf) if v is not None)
        # a cloud still converging gets ``relocalize_unconverged_s``; one that spread over the table has lost track
        wait = c.relocalize_after_s if converged else c.relocalize_unconverged_s
        return stamp - since >= wait and t.z < c.track_min_z and t.margin_bits < 0.0

    def admits(self, stamp: float, vu) -> bool:
        """Record a frame's evidence (its log Bayes factor, in a running mean over ``evidence_frames`` frames);
        whether it may weigh the particles: not when it, or the running mean, contradicts the prediction of an
        estimate trusted less than ``gate_hold_s`` ago, as unreadable frames do (the position then dead-reckons on
        odometry; chance codes agree with the prediction half the time, so the frame alone is not enough). Good
        frames come back through the gate on a track confirmed again, or standing out inside the protection level
        (:meth:`_readable_within_bound`)."""
        c = self.config
        lbf = float(vu.log_bayes_factor)
        a = 1.0 / max(c.evidence_frames, 1.0)
        self.evidence = lbf if self.evidence is None else (1.0 - a) * self.evidence + a * lbf
        self.evidence_stamp = stamp
        self.distinctness = float(vu.distinctness)
        unreadable = lbf < c.frame_gate or self.evidence < c.evidence_min  # this frame, or the last few
        # ... unless the camera's track, confirmed again on frames taken since the trouble, vouches for the filter's
        # place while its estimate is not trusted: the camera reads the world there again, and its frames are what
        # tightens a cloud that dead-reckoned through the trouble (wide, so good frames agree with it only weakly)
        vouched = self.track_ok and self.last is not None and not self.last.trustworthy
        if self.locked_until is not None and stamp <= self.locked_until and unreadable and not vouched and \
                not self._readable_within_bound(stamp):
            self.frames_gated += 1
            return False
        return True

    def _readable_within_bound(self, stamp: float) -> bool:
        """Whether the newest frames (the last track check's recent window) stand out best (``track_min_z``) at a
        place inside the last estimate's protection level around the filter: readable frames of this
        neighbourhood, which may pull a cloud that dead-reckoned through unreadable frames onto the vehicle though
        they agree with its prediction only weakly (evaluation, black frames: the cloud 19 m off when good frames
        returned, their evidence 0.1-0.2, held back by the gate for 10 s). Unreadable frames stand out at a random
        place of the 1 km window: inside a bound of 15-45 m at most 2 of 197 checks per drive (calibration)."""
        t, last, mean = self.track, self.last, self.last_mean
        if t is None or last is None or mean is None or stamp - t.stamp > self.config.evidence_max_age_s or \
                t.recent_best_z < self.config.track_min_z:
            return False
        return math.hypot(t.recent_best_en[0] - mean[0], t.recent_best_en[1] - mean[1]) <= last.hpl_m

    # -- the decision --------------------------------------------------------------------------------------------
    def assess(self, stamp: float, particles: np.ndarray, weights: np.ndarray, mean: np.ndarray, cov: np.ndarray,
               gps_trusted: bool) -> Integrity:
        """Trustworthy or not, the protection level and the reason, for the filter's estimate at ``stamp``."""
        c = self.config
        pub = c.covariance_scale ** 2 * np.asarray(cov, dtype=np.float64) + c.covariance_floor_m ** 2 * np.eye(2)
        sigma = math.sqrt(max(float(np.linalg.eigvalsh(0.5 * (pub + pub.T)).max()), 0.0))
        self.last_mean = mean
        hpl = max(protection_factor(c.integrity_risk) * sigma, c.covariance_scale * _tail_radius(
            particles, weights, mean, min(0.5, 10.0 * c.integrity_risk)))
        if not math.isfinite(hpl):
            hpl = math.inf
        anchored = self.anchor_stamp is not None and stamp - self.anchor_stamp <= c.gps_anchor_s
        if not gps_trusted and not anchored:  # the camera vouches for the place only as finely as it can tell places
            hpl = max(hpl, self.camera_resolution_m)
        reason = self._distrust(stamp, hpl, gps_trusted)
        if reason is None:
            self.locked_until = stamp + c.gate_hold_s
            self.trusted_stamp = stamp
            self.from_table, self.global_fit = False, None  # the place is confirmed: continuity from here
        elif self.lost_since is None:
            self.lost_since = stamp
        self.last = Integrity(reason is None, hpl, self._trust_reason(stamp, gps_trusted) if reason is None else reason,
                              pub)
        return self.last

    def _distrust(self, stamp: float, hpl: float, gps_trusted: bool) -> str | None:
        """Why the estimate is not trustworthy, or None."""
        c = self.config
        if gps_trusted:
            return None if hpl <= c.alert_limit_m else f"protection level {hpl:.0f} m above the alert limit"
        if self.camera is not None and not self.camera.ok:
            return f"camera does not match the model: {self.camera.detail}"
        if self.camera is None and c.require_camera_info:
            return "no CameraInfo yet: the camera cannot be checked against the model"
        if not math.isfinite(hpl) or hpl > c.alert_limit_m:
            return f"protection level {hpl:.0f} m above the alert limit {c.alert_limit_m:g} m (not converged)"
        if self.anchor_stamp is not None and stamp - self.anchor_stamp <= c.gps_anchor_s:
            return None
        return self._visual_distrust(stamp)

    def _visual_distrust(self, stamp: float) -> str | None:
        c, t = self.config, self.track
        if self.evidence is None or self.evidence_stamp is None or t is None:
            return "no visual confirmation yet (and no recent trusted GPS fix)"
        age = stamp - min(self.evidence_stamp, t.stamp)
        if age > c.evidence_max_age_s:
            return f"no camera frame confirmed the position for {age:.0f} s"
        if self.evidence < c.evidence_min:
            return (f"camera frames do not confirm the position (evidence {self.evidence:.1f} < {c.evidence_min:g}; "
                    f"best-match distinctness {self.distinctness or 0.0:.1f}): unreadable frames, or another place")
        if self.track_problem is not None:
            return self.track_problem
        if self.newest_doubt is not None:
            return (f"the newest frame barely stands out at the track's place (newest z {self.newest_doubt:.1f} < "
                    f"{c.track_newest_trust_z:g}): not trusted until a frame does")
        if self.from_table:
            problem = self._global_problem(stamp)
            if problem is not None:
                return problem
        if not self.track_ok:
            return (f"confirming the camera's track on new frames ({t.fresh_length_m:.0f} of {c.track_regain_m:g} m; "
                    f"margin {max(t.fresh_margin_bits, -999.0):.1f} bits per frame, z {t.fresh_z:.1f})")
        return None

    def _global_problem(self, stamp: float) -> str | None:
        """After the filter (re)started from the table, its place is trusted only where the recent track also fits
        the whole table best at *any* heading: the track check compares places at the filter's heading only, and a
        wrong place with the wrong heading can fit a track there (calibration, a kidnapped drive: a restart settled
        320 m off and its track check passed with a margin of 20 bits per frame). The best place must also win
        decisively (:attr:`Relocalization.decisive`): a filter started from the table settles where the same frames
        fit best, so a best place that merely coincides with it is no evidence (a 1 km Helsinki layout: a place 800 m
        off, best at a margin of 6.3 bits per frame and z 5.9, was trusted for 3.5 s: 36 hazardous estimates)."""
        c = self.config
        if c.relocalize_headings <= 0 or not self.global_check:
            return None
        fit = self.global_fit
        if fit is None or stamp - fit[0] > c.evidence_max_age_s:
            return "checking the place against the whole table at every heading (not enough track yet)"
        _, distance, found = fit
        if distance > c.alert_limit_m:
            return (f"another place fits the camera's track better at some heading ({distance:.0f} m away; margin "
                    f"{found.margin_bits:.1f} bits per frame)")
        if not found.decisive:  # best here, but not by much: the filter settled on the same frames' best guess
            return (f"the whole table does not single out this place yet (margin {found.margin_bits:.1f} bits per "
                    f"frame, z {found.z:.1f})")
        return None

    def _track_problem(self, t, min_length_m: float | None = None) -> str | None:
        """Why a track check fails, or None (``min_length_m``: instead of ``track_min_length_m``)."""
        c = self.config
        need = c.track_min_length_m if min_length_m is None else min_length_m
        if t.length_m < need:
            return f"confirming the camera's track ({t.length_m:.0f} of {need:g} m driven)"
        if t.margin_bits < c.track_margin_bits:
            far = math.hypot(t.alternative_en[0] - self.last_mean[0], t.alternative_en[1] - self.last_mean[1]) \
                if self.last_mean is not None else math.nan
            return (f"ambiguous: a place {far:.0f} m away matches the camera's track as well (margin "
                    f"{t.margin_bits:.1f} bits per frame)")
        if t.z < c.track_min_z:
            return f"the camera's track does not stand out from chance (z {t.z:.1f} < {c.track_min_z:g})"
        if self._newest_at_odds(t):
            return (f"the newest frames do not fit the track's place (margin {t.recent_margin_bits:.1f} bits per "
                    f"frame, newest z {t.newest_z:.1f}): the vehicle may not be where the track says")
        return None

    def _newest_at_odds(self, t) -> bool:
        """The newest frames alone prefer another place, or the newest frame does not stand out at the filter's: the
        first sign of a vehicle that is no longer where its track says."""
        c = self.config
        return (t.recent_margin_bits < c.track_recent_margin_bits and t.recent_z < c.track_recent_max_z) or \
            t.newest_z < c.track_newest_min_z

    def _trust_reason(self, stamp: float, gps_trusted: bool) -> str:
        if gps_trusted:
            return "gps"
        if self.anchor_stamp is not None and stamp - self.anchor_stamp <= self.config.gps_anchor_s:
            return f"odometry from a trusted GPS fix {stamp - self.anchor_stamp:.1f} s ago"
        t = self.track
        if self.fresh_vouched:
            return (f"the camera's new frames confirm the position ({t.fresh_length_m:.0f} m since the trouble, "
                    f"margin {t.fresh_margin_bits:.1f} bits per frame, z {t.fresh_z:.1f})")
        return (f"camera track confirms the position ({t.length_m:.0f} m, margin {t.margin_bits:.1f} bits per frame, "
                f"z {t.z:.1f})")

    def summary(self) -> dict:
        last = self.last
        return {"trustworthy": None if last is None else last.trustworthy,
                "hpl_m": None if last is None else round(last.hpl_m, 2),
                "reason": "no estimate yet" if last is None else last.reason,
                "evidence": None if self.evidence is None else round(self.evidence, 2),
                "distinctness": None if self.distinctness is None else round(self.distinctness, 2),
                "frames_gated": self.frames_gated,
                "track": None if self.track is None else {
                    "length_m": round(self.track.length_m, 1), "frames": self.track.frames,
                    "margin_bits": round(self.track.margin_bits, 2), "z": round(self.track.z, 2)},
                "camera": "not checked" if self.camera is None else self.camera.detail}


def _fresh_only(v):
    """The verdict on the frames taken since the last contradiction alone (its ``fresh_*`` fields as the track's; the
    newest frames' fields are theirs already)."""
    return dataclasses.replace(v, frames=v.fresh_frames, length_m=v.fresh_length_m, margin_bits=v.fresh_margin_bits,
                               z=v.fresh_z, alternative_en=v.fresh_alternative_en, best_z=v.fresh_best_z,
                               first_stamp=v.fresh_first_stamp)


def _tail_radius(particles: np.ndarray, weights: np.ndarray, mean: np.ndarray, tail: float) -> float:
    """The radius around ``mean`` outside which the particles hold ``tail`` of the weight."""
    if particles.size == 0:
        return math.inf
    r = np.hypot(particles[:, 0] - mean[0], particles[:, 1] - mean[1])
    order = np.argsort(r)
    cum = np.cumsum(weights[order])
    i = int(np.searchsorted(cum, (1.0 - tail) * cum[-1]))
    return float(r[order[min(i, r.size - 1)]])
