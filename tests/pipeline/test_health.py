import math

import numpy as np
import pytest
from fakes import gps_fix

from geoloc_node.config import HealthConfig
from geoloc_node.geodesy import LocalFrame
from geoloc_node.health import DEGRADED, HEALTHY, LOST, GpsHealthMonitor
from geoloc_node.records import GpsFix, Odometry

FRAME = LocalFrame(47.0, 8.0)


def truth(t):
    s = 8.0 * t / 150.0
    return 150 * math.cos(s), 150 * math.sin(s)


def run(mon, duration, faults=(), seed=0, gps_rate=10.0, odom_rate=20.0, rot=0.9, gps_std=1.5):
    """Feed a drive; return the HealthChanges. faults: (kind, start, end)."""
    rng = np.random.default_rng(seed)
    changes, frozen_at, x, y, prev = [], None, 0.0, 0.0, None
    n = int(duration * odom_rate)
    for i in range(n):
        t = i / odom_rate
        e, nn = truth(t)
        if prev is not None:  # odometry in a frame rotated by `rot`, 1 % scale error
            de, dn = (e - prev[0]) * 1.01, (nn - prev[1]) * 1.01
            x += math.cos(-rot) * de - math.sin(-rot) * dn
            y += math.sin(-rot) * de + math.cos(-rot) * dn
        prev = (e, nn)
        ch = mon.on_odometry(Odometry(stamp=t, x=x, y=y, yaw=0.0, v=8.0, yaw_rate=0.0)) or mon.tick(t)
        if ch:
            changes.append(ch)
        if i % int(odom_rate / gps_rate):
            continue
        kind = next((k for k, a, b in faults if a <= t < b), None)
        if kind == "outage":
            continue
        fe, fn = e + rng.normal(0, gps_std), nn + rng.normal(0, gps_std)
        std, status = gps_std, 0
        if kind == "no_fix":
            status = -1
        elif kind == "covariance":
            std = 60.0
        elif kind == "jump":
            fe += 60.0
        if kind == "frozen":
            frozen_at = frozen_at or (fe, fn)
            fe, fn = frozen_at
        else:
            frozen_at = None
        fix = gps_fix(FRAME, t, fe, fn, std=std, status=status)
        if kind == "nan":
            fix = GpsFix(stamp=t, lat=math.nan, lon=math.nan, alt=0.0, status=0, covariance=fix.covariance,
                         covariance_type=2)
        ch = mon.on_fix(fix)
        if ch:
            changes.append(ch)
    return changes


@pytest.mark.parametrize("kind", ["outage", "no_fix", "covariance", "frozen", "jump", "nan"])
def test_each_fault_flagged_within_one_second_then_recovers(kind):
    mon = GpsHealthMonitor(HealthConfig())
    changes = run(mon, 90.0, faults=[(kind, 40.0, 50.0)])
    assert changes[0].state == HEALTHY and changes[0].stamp < 5.0
    bad = [c for c in changes if c.stamp >= 40.0 and c.state != HEALTHY]
    assert bad, changes
    assert bad[0].stamp - 40.0 <= 1.0, bad[0]
    assert not [c for c in changes if 5.0 < c.stamp < 40.0], "false alarm before the fault"
    assert changes[-1].state == HEALTHY and changes[-1].stamp < 50.0 + 6.0, changes
    assert len(changes) <= 4, changes  # no flapping: healthy, bad (maybe two levels), healthy


def test_covariance_levels():
    mon = GpsHealthMonitor(HealthConfig())
    run(mon, 10.0)
    assert mon.state == HEALTHY
    assert mon.on_fix(gps_fix(FRAME, 10.05, *truth(10.05), std=12.0)).state == DEGRADED
    assert mon.on_fix(gps_fix(FRAME, 10.15, *truth(10.15), std=40.0)).state == LOST


def test_unknown_covariance_type_and_status_degrade():
    mon = GpsHealthMonitor(HealthConfig())
    run(mon, 10.0)
    assert mon.on_fix(gps_fix(FRAME, 10.05, *truth(10.05), cov_type=0)).state == DEGRADED
    mon = GpsHealthMonitor(HealthConfig())
    run(mon, 10.0)
    assert mon.on_fix(gps_fix(FRAME, 10.05, *truth(10.05), status=7)).state == DEGRADED


def test_no_false_lost_on_ten_minutes_of_healthy_gps():
    mon = GpsHealthMonitor(HealthConfig())
    changes = run(mon, 600.0, seed=5)
    assert [c.state for c in changes] == [HEALTHY]


def test_flapping_input_does_not_flap():
    # a fix every 0.1 s alternating between NO_FIX and good: stays LOST (hysteresis)
    mon = GpsHealthMonitor(HealthConfig())
    run(mon, 10.0)
    states = []
    for i in range(100):
        t = 10.0 + 0.1 * i
        ch = mon.on_fix(gps_fix(FRAME, t, *truth(t), status=-1 if i % 2 else 0))
        if ch:
            states.append(ch.state)
    assert states == [LOST]


def test_gps_only_one_hz_without_odometry_is_healthy():
    mon = GpsHealthMonitor(HealthConfig())
    changes = []
    for i in range(120):
        ch = mon.on_fix(gps_fix(FRAME, float(i), *truth(i * 0.1), std=2.3))
        ch2 = mon.tick(i + 0.9)
        changes += [c for c in (ch, ch2) if c]
    assert [c.state for c in changes] == [HEALTHY]
    assert mon.tick(125.0).state == LOST  # 6 s of silence at 1 Hz


def _late_gps_drive(mon, duration, latency, outage=None):
    """10 Hz fixes that reach the monitor ``latency`` s after the 50 Hz odometry stamped at the same time (as a
    receiver with a delay, or a loaded computer, delivers them); returns the HealthChanges."""
    changes, pending = [], []
    for i in range(int(duration * 50)):
        t = i / 50
        ch = mon.on_odometry(Odometry(stamp=t, x=8.0 * t, y=0.0, yaw=0.0, v=8.0, yaw_rate=0.0)) or mon.tick(t)
        changes += [ch] if ch else []
        if i % 5 == 0 and not (outage and outage[0] <= t < outage[1]):
            pending.append(gps_fix(FRAME, t, 8.0 * t, 0.0, std=1.5))
        while pending and pending[0].stamp <= t - latency + 1e-9:
            ch = mon.on_fix(pending.pop(0))
            changes += [ch] if ch else []
    return changes


def test_late_fixes_are_not_an_outage_but_a_real_outage_still_is():
    # fixes 0.25 s late: the allowance learns it (at most max_fix_latency_s)
    mon = GpsHealthMonitor(HealthConfig())
    assert [c.state for c in _late_gps_drive(mon, 30.0, 0.25)] == [HEALTHY]
    assert mon.fix_latency_s == pytest.approx(0.25, abs=0.03) == mon.summary()["fix_latency_s"]
    # 0.55 s late at a 0.6 s timeout: without the allowance the monitor calls LOST between two fixes
    strict = GpsHealthMonitor(HealthConfig(max_fix_latency_s=0.0))
    _late_gps_drive(strict, 30.0, 0.55)
    assert strict.state == LOST  # never trusted: every gap between two late fixes looks like an outage
    mon = GpsHealthMonitor(HealthConfig(max_fix_latency_s=0.5))
    changes = _late_gps_drive(mon, 30.0, 0.55, outage=(20.0, 25.0))
    assert mon.fix_latency_s == 0.5  # capped
    # no false outage, and the real one is still flagged, later by no more than the (capped) allowance
    lost = [c for c in changes if c.state == LOST]
    assert changes[0].state == HEALTHY and lost and 20.0 <= lost[0].stamp <= 20.0 + 0.6 + 0.5 + 0.05, changes
