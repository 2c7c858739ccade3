"""What the pipeline refuses in its input records, and why: one policy for the node and a replay.

* A GPS fix with a position or covariance that cannot be a measurement (NaN or infinite, latitude/longitude out of
  range, a negative or NaN variance, latitude and longitude both exactly 0, as an uninitialised message has) is never
  fused; the health monitor counts it as a bad fix (GPS is then not HEALTHY: the receiver is broken, not silent).
* Odometry is checked against physics before it moves anything: a speed or yaw rate beyond the configured maxima, a
  position beyond any real odometry frame, or a position step that no speed allows since the previous message is
  refused and blamed on odometry (it used to reach the GPS jump test and make *GPS* LOST). A restarted odometry
  source (its pose back at 0) is followed again once ``reanchor_messages`` messages in a row agree with each other:
  the filter and the health monitor then restart their odometry reference instead of seeing one huge step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .records import GpsFix, Odometry

#: No odometry frame is this large (m): beyond it, float64 positions lose centimetres and the source is broken.
MAX_ODOMETRY_POSITION_M = 1.0e7
#: Position steps this small (m) are always plausible, whatever the time between two messages (quantisation).
ODOMETRY_STEP_SLACK_M = 1.0


@dataclass(frozen=True)
class Rejection:
    """Why an input record is not used: ``key`` counts it (e.g. ``gps_invalid_covariance``), ``detail`` says it."""

    key: str
    detail: str


def fix_problem(fix: GpsFix) -> Rejection | None:
    """The reason a fix cannot be a measurement, or None. A NO_FIX status is not a problem here: it is a valid
    message saying the receiver has no fix (the health monitor judges it). Nor is any covariance of type UNKNOWN."""
    if fix.status < 0:
        return None
    if not (math.isfinite(fix.lat) and math.isfinite(fix.lon)) or abs(fix.lat) > 90 or abs(fix.lon) > 180:
        return Rejection("gps_invalid_position", "invalid fix (NaN or out-of-range latitude/longitude)")
    if fix.lat == 0.0 and fix.lon == 0.0:
        return Rejection("gps_zero_position", "fix at latitude 0, longitude 0 (an uninitialised message)")
    c = fix.covariance
    if fix.covariance_type == 0:  # COVARIANCE_TYPE_UNKNOWN: the values carry no meaning and are never used
        return None
    if len(c) != 9 or not all(math.isfinite(v) for v in (c[0], c[4])) or c[0] < 0.0 or c[4] < 0.0:
        shown = ", ".join(f"{v:g}" for v in (c[0], c[4])) if len(c) == 9 else f"{len(c)} values"
        return Rejection("gps_invalid_covariance", f"invalid fix covariance (east/north variances {shown})")
    return None


class OdometryGate:
    """Physical plausibility of consecutive odometry records; not thread-safe (called under the pipeline's lock)."""

    def __init__(self, max_speed_mps: float, max_yaw_rate_rps: float, reanchor_messages: int):
        self.max_speed = float(max_speed_mps)
        self.max_yaw_rate = float(max_yaw_rate_rps)
        self.reanchor = max(1, int(reanchor_messages))
        self.reset()

    def reset(self) -> None:
        self._last: Odometry | None = None  # the last accepted record
        self._chain: tuple[Odometry, int] | None = None  # refused records agreeing with each other: (last, count)

    def check(self, odom: Odometry) -> tuple[Rejection | None, bool]:
        """(rejection or None, reanchored): ``reanchored`` means this record starts a new odometry track."""
        if not all(math.isfinite(v) for v in (odom.x, odom.y, odom.yaw, odom.v, odom.yaw_rate)):
            return Rejection("odometry_not_finite", "odometry with a NaN or infinite pose or twist"), False
        if abs(odom.v) > self.max_speed or abs(odom.yaw_rate) > self.max_yaw_rate:
            return Rejection("odometry_implausible_twist", f"odometry twist {odom.v:.3g} m/s, {odom.yaw_rate:.3g} "
                             f"rad/s beyond the maxima ({self.max_speed:g} m/s, {self.max_yaw_rate:g} rad/s)"), False
        if max(abs(odom.x), abs(odom.y)) > MAX_ODOMETRY_POSITION_M:
            return Rejection("odometry_position_out_of_range", f"odometry position ({odom.x:.3g}, {odom.y:.3g}) m is "
                             "beyond any odometry frame"), False
        if self._last is None or self._plausible(self._last, odom):
            self._last, self._chain = odom, None
            return None, False
        chain = self._chain
        n = chain[1] + 1 if chain is not None and self._plausible(chain[0], odom) else 1
        if n >= self.reanchor:
            self._last, self._chain = odom, None
            return None, True
        self._chain = (odom, n)
        step = math.hypot(odom.x - self._last.x, odom.y - self._last.y)
        return Rejection("odometry_position_jump", f"odometry position stepped {step:.3g} m in "
                         f"{odom.stamp - self._last.stamp:.3g} s (faster than {self.max_speed:g} m/s)"), False

    def _plausible(self, a: Odometry, b: Odometry) -> bool:
        dt = max(b.stamp - a.stamp, 0.0)
        return math.hypot(b.x - a.x, b.y - a.y) <= self.max_speed * dt + ODOMETRY_STEP_SLACK_M
