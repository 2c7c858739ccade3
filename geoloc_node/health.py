"""GPS health monitor: HEALTHY / DEGRADED / LOST with the reason, from NavSatFix records, odometry and message time.

Each fix is judged on its own (NaN, NO_FIX, unknown status or covariance type, horizontal standard deviation) and
against odometry (a frozen payload while the vehicle moves, a jump that dead-reckoning from the last trusted fix cannot
explain). Silence is judged by :meth:`GpsHealthMonitor.tick`, called with the stamp of every message, so that a GPS
outage is noticed from the other sensors' time.

The state gets worse at once (a fault is flagged by the first fix that shows it) and better only after
``recover_s`` seconds and ``recover_min_fixes`` fixes of continuously better evidence: hysteresis, so that it cannot
flap. Jump test: with odometry, the monitor learns the rotation between the odometry frame and east/north from healthy
fixes and predicts the next fix by dead-reckoning; until it knows the rotation, it compares distances only.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

from .config import HealthConfig
from .inputs import Rejection, fix_problem
from .records import GpsFix, Odometry

HEALTHY, DEGRADED, LOST = "HEALTHY", "DEGRADED", "LOST"
_RANK = {HEALTHY: 0, DEGRADED: 1, LOST: 2}
_EARTH_R = 6_378_137.0


@dataclass(frozen=True)
class HealthChange:
    """The GPS health state changed at ``stamp`` (message time)."""

    stamp: float
    state: str
    previous: str
    reason: str


class GpsHealthMonitor:
    """Judges GPS fixes. Not thread-safe by itself: the pipeline calls it under its lock."""

    def __init__(self, config: HealthConfig = HealthConfig()):
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.state = LOST
        self.reason = "no GPS fix received yet"
        self.changed_at: float | None = None
        self.last_problem: Rejection | None = None  # why the last fix was not a measurement (None: it was one)
        self.counts = {"fixes": 0, "nan_fixes": 0, "invalid_fixes": 0, "no_fix": 0, "frozen": 0, "jumps": 0,
                       "high_covariance": 0, "timeouts": 0, "transitions": 0}
        self._origin: tuple[float, float] | None = None
        self._last_fix: GpsFix | None = None
        self._last_stamp: float | None = None
        self._clock: float | None = None  # newest stamp of any stream seen (tick or fix)
        self._lateness: deque[float] = deque(maxlen=50)  # how far behind that clock each fix arrived (s)
        self._periods: deque[float] = deque(maxlen=21)
        self._better_since: float | None = None
        self._better_fixes = 0
        self._frozen_since: float | None = None
        self._ot: list[float] = []  # odometry stamps, x, y and cumulative distance driven
        self._ox: list[float] = []
        self._oy: list[float] = []
        self._oc: list[float] = []
        self._ref: tuple[float, float, float, float, tuple | None] | None = None  # stamp, e, n, std, odom xy
        self._rot_c = 0.0  # running sums of cos/sin of the odometry->ENU rotation
        self._rot_s = 0.0
        self._rot_n = 0
        self._rot_anchor: tuple[float, float, tuple] | None = None
        self._jump_since: float | None = None
        self._jump_prev: tuple[float, float, float, tuple | None] | None = None

    # -- inputs ----------------------------------------------------------------------------------------------
    def on_odometry(self, odom: Odometry) -> None:
        if self._ot and odom.stamp <= self._ot[-1]:
            return
        step = math.hypot(odom.x - self._ox[-1], odom.y - self._oy[-1]) if self._ot else 0.0
        self._oc.append((self._oc[-1] if self._oc else 0.0) + step)
        self._ot.append(odom.stamp)
        self._ox.append(odom.x)
        self._oy.append(odom.y)
        if len(self._ot) > 20000:  # keep the last few minutes
            for a in (self._ot, self._ox, self._oy, self._oc):
                del a[:10000]

    def restart_odometry(self) -> None:
        """The odometry source restarted (a new track): forget the old one; the jump test re-learns the rotation."""
        for a in (self._ot, self._ox, self._oy, self._oc):
            a.clear()
        self._ref = None
        self._rot_anchor = None
        self._jump_prev = None
        self._jump_since = None

    def on_fix(self, fix: GpsFix) -> HealthChange | None:
        """Judge one fix; return the state change it causes, if any."""
        self.counts["fixes"] += 1
        if self._last_stamp is not None and fix.stamp > self._last_stamp:
            self._periods.append(fix.stamp - self._last_stamp)
        if self._clock is not None:
            self._lateness.append(max(0.0, self._clock - fix.stamp))
        self._advance(fix.stamp)
        self._last_stamp = fix.stamp
        level, reason = self._judge(fix)
        self._last_fix = fix
        self.last_fix_level = level
        return self._transition(fix.stamp, level, reason, is_fix=True)

    def tick(self, stamp: float) -> HealthChange | None:
        """Advance message time: a fix older than the timeout makes GPS LOST."""
        self._advance(stamp)
        if self._last_stamp is None:
            return None
        age = stamp - self._last_stamp
        timeout = self.timeout_s
        if age > timeout and self.state != LOST:
            self.counts["timeouts"] += 1
            return self._transition(stamp, LOST, f"no fix for {age:.1f} s (timeout {timeout:.1f} s)", is_fix=False)
        if age > timeout:
            self._better_since, self._better_fixes = None, 0
        return None

    def _advance(self, stamp: float) -> None:
        self._clock = stamp if self._clock is None else max(self._clock, stamp)

    # -- queries ---------------------------------------------------------------------------------------------
    @property
    def fix_latency_s(self) -> float:
        """How much later than the other sensors' messages fixes have been arriving (recent maximum, capped)."""
        if not self._lateness:
            return 0.0
        return min(max(self._lateness), max(self.config.max_fix_latency_s, 0.0))

    @property
    def timeout_s(self) -> float:
        if len(self._periods) >= 3:
            med = sorted(self._periods)[len(self._periods) // 2]
            base = max(self.config.fix_timeout_s, self.config.timeout_periods * med)
        else:
            base = max(self.config.fix_timeout_s, 1.5)  # before the rate is known: lenient
        return base + self.fix_latency_s

    def fix_is_trusted(self) -> bool:
        """Whether the last fix may be fused: the state is HEALTHY and that fix was judged healthy itself."""
        return self.state == HEALTHY and getattr(self, "last_fix_level", LOST) == HEALTHY

    def summary(self) -> dict:
        return {"state": self.state, "reason": self.reason, "since": self.changed_at, "timeout_s": self.timeout_s,
                "fix_latency_s": round(self.fix_latency_s, 3), **self.counts}

    # -- judging one fix -------------------------------------------------------------------------------------
    def _judge(self, fix: GpsFix) -> tuple[str, str]:
        c = self.config
        cov = fix.covariance
        if fix.status < 0:
            self.last_problem = None
            self.counts["no_fix"] += 1
            return LOST, "receiver reports NO_FIX"
        self.last_problem = problem = fix_problem(fix)
        if problem is not None:
            self.counts["nan_fixes" if problem.key == "gps_invalid_position" else "invalid_fixes"] += 1
            return LOST, problem.detail
        e, n = self._en(fix.lat, fix.lon)
        odo = self._odom_at(fix.stamp)
        frozen = self._check_frozen(fix, odo)
        if frozen:
            self.counts["frozen"] += 1
            return LOST, frozen
        # fix_problem() has checked the variances unless their type is UNKNOWN (then they may be anything)
        var = max(cov[0], cov[4]) if len(cov) == 9 else math.nan
        std = math.sqrt(var) if math.isfinite(var) and var >= 0.0 else c.max_horizontal_std_m
        level, reason = HEALTHY, "fix OK"
        if fix.covariance_type == 0 and c.unknown_covariance_degrades:
            level, reason = DEGRADED, "covariance type UNKNOWN: accuracy cannot be checked"
        if fix.status not in (0, 1, 2):
            level, reason = DEGRADED, f"unknown receiver status {fix.status}"
        if std > c.lost_horizontal_std_m:
            self.counts["high_covariance"] += 1
            return LOST, f"horizontal std {std:.1f} m above {c.lost_horizontal_std_m:g} m (covariance blow-up)"
        if std > c.max_horizontal_std_m and level == HEALTHY:
            self.counts["high_covariance"] += 1
            level, reason = DEGRADED, f"horizontal std {std:.1f} m above {c.max_horizontal_std_m:g} m"
        jump = self._check_jump(fix.stamp, e, n, std, odo)
        if jump:
            self.counts["jumps"] += 1
            return LOST, jump
        if level == HEALTHY:
            self._set_reference(fix.stamp, e, n, std, odo)
        return level, reason

    def _check_frozen(self, fix: GpsFix, odo) -> str | None:
        last = self._last_fix
        if last is None or (fix.lat, fix.lon) != (last.lat, last.lon):
            self._frozen_since = None
            return None
        if self._frozen_since is None:
            self._frozen_since = last.stamp
        dur = fix.stamp - self._frozen_since
        if dur < self.config.frozen_s or odo is None:
            return None
        odo0 = self._odom_at(self._frozen_since)
        if odo0 is None:
            return None
        moved = self._path_length(self._frozen_since, fix.stamp)
        if moved >= self.config.frozen_min_motion_m:
            return f"frozen: identical position for {dur:.1f} s while odometry moved {moved:.1f} m"
        return None

    def _check_jump(self, stamp, e, n, std, odo) -> str | None:
        c = self.config
        ref = self._ref
        if ref is None:
            return None
        rstamp, re_, rn, rstd, rodo = ref
        dt = stamp - rstamp
        if dt <= 0:
            return None
        sig = math.hypot(std if math.isfinite(std) else 0.0, rstd)
        allow = c.jump_min_m + c.jump_sigma * sig
        if odo is not None and rodo is not None:
            dx, dy = odo[0] - rodo[0], odo[1] - rodo[1]
            driven = self._path_length(rstamp, stamp)
            allow += c.jump_odometry_drift * driven
            if self._rot_n >= 2:
                a = math.atan2(self._rot_s, self._rot_c)
                pe = re_ + math.cos(a) * dx - math.sin(a) * dy
                pn = rn + math.sin(a) * dx + math.cos(a) * dy
                err = math.hypot(e - pe, n - pn)
            else:
                err = abs(math.hypot(e - re_, n - rn) - math.hypot(dx, dy))
        else:
            err = math.hypot(e - re_, n - rn) - c.max_speed_mps * dt
        if err <= allow:
            self._jump_since = None
            return None
        # Inconsistent with the trusted reference. Accept the new position after it stays self-consistent long enough.
        prev = self._jump_prev
        self._jump_prev = (stamp, e, n, odo)
        if self._jump_since is None or prev is None or not self._consistent(prev, (stamp, e, n, odo), allow):
            self._jump_since = stamp
        elif stamp - self._jump_since >= c.jump_reacquire_s:
            self._jump_since = None
            self._ref = None  # re-anchor on this fix
            self._rot_anchor = None
            return None
        return f"jump: fix {err:.0f} m away from where odometry puts the vehicle (allowed {allow:.0f} m)"

    def _consistent(self, a, b, allow) -> bool:
        (t0, e0, n0, o0), (t1, e1, n1, o1) = a, b
        d = math.hypot(e1 - e0, n1 - n0)
        if o0 is not None and o1 is not None:
            return abs(d - math.hypot(o1[0] - o0[0], o1[1] - o0[1])) <= allow
        return d <= self.config.max_speed_mps * (t1 - t0) + allow

    def _set_reference(self, stamp, e, n, std, odo) -> None:
        self._ref = (stamp, e, n, std if math.isfinite(std) else 0.0, odo)
        # Learn the odometry -> ENU rotation from displacements of at least 10 m.
        if odo is None:
            self._rot_anchor = None
            return
        if self._rot_anchor is None:
            self._rot_anchor = (e, n, odo)
            return
        ae, an, ao = self._rot_anchor
        ge, gn = e - ae, n - an
        ox, oy = odo[0] - ao[0], odo[1] - ao[1]
        if math.hypot(ge, gn) >= 10.0 and math.hypot(ox, oy) >= 10.0:
            a = math.atan2(gn, ge) - math.atan2(oy, ox)
            alpha = 1.0 / (self._rot_n + 1) if self._rot_n < 5 else 0.3  # a mean, then an EMA (odometry yaw drifts)
            self._rot_c = (1 - alpha) * self._rot_c + alpha * math.cos(a)
            self._rot_s = (1 - alpha) * self._rot_s + alpha * math.sin(a)
            self._rot_n += 1
            self._rot_anchor = (e, n, odo)

    # -- state machine ---------------------------------------------------------------------------------------
    def _transition(self, stamp: float, level: str, reason: str, is_fix: bool) -> HealthChange | None:
        c = self.config
        if _RANK[level] > _RANK[self.state] or (level == self.state == LOST and not is_fix):
            self._better_since, self._better_fixes = None, 0
            if level == self.state:
                return None
            return self._set(stamp, level, reason)
        if _RANK[level] == _RANK[self.state]:
            self._better_since, self._better_fixes = None, 0
            self.reason = reason if level != HEALTHY else self.reason
            return None
        # Better evidence: wait for recover_s seconds and recover_min_fixes fixes of it (hysteresis).
        if self.reason == "no GPS fix received yet":
            self.reason = f"fixes arriving; trusted after {c.recover_s:g} s and {c.recover_min_fixes} good fixes"
        if self._better_since is None:
            self._better_since, self._better_fixes, self._better_level = stamp, 0, level
        self._better_fixes += 1
        self._better_level = level if _RANK[level] > _RANK[self._better_level] else self._better_level
        if stamp - self._better_since >= c.recover_s and self._better_fixes >= c.recover_min_fixes:
            target = self._better_level
            self._better_since, self._better_fixes = None, 0
            return self._set(stamp, target, reason if target != HEALTHY else "fix OK")
        return None

    def _set(self, stamp, state, reason) -> HealthChange:
        prev = self.state
        self.state, self.reason, self.changed_at = state, reason, stamp
        self.counts["transitions"] += 1
        return HealthChange(stamp=stamp, state=state, previous=prev, reason=reason)

    # -- helpers ---------------------------------------------------------------------------------------------
    def _en(self, lat: float, lon: float) -> tuple[float, float]:
        if self._origin is None:
            self._origin = (lat, lon)
        lat0, lon0 = self._origin
        return (math.radians(lon - lon0) * _EARTH_R * math.cos(math.radians(lat0)),
                math.radians(lat - lat0) * _EARTH_R)

    def _odom_at(self, stamp: float):
        """Odometry (x, y) interpolated at ``stamp``; None when odometry does not cover it (within 1 s)."""
        v = self._interp(stamp)
        return None if v is None else (v[0], v[1])

    def _interp(self, stamp: float):
        t = self._ot
        if not t or stamp < t[0] - 1.0 or stamp > t[-1] + 1.0:
            return None
        i = bisect.bisect_right(t, stamp)
        if i <= 0:
            return self._ox[0], self._oy[0], self._oc[0]
        if i >= len(t):
            return self._ox[-1], self._oy[-1], self._oc[-1]
        t0, t1 = t[i - 1], t[i]
        w = (stamp - t0) / (t1 - t0) if t1 > t0 else 0.0
        return tuple(a[i - 1] + w * (a[i] - a[i - 1]) for a in (self._ox, self._oy, self._oc))

    def _path_length(self, t0: float, t1: float) -> float:
        """Distance driven according to odometry between two stamps."""
        a, b = self._interp(t0), self._interp(t1)
        return 0.0 if a is None or b is None else b[2] - a[2]
