from geoloc_node.inputs import OdometryGate, fix_problem
from geoloc_node.records import GpsFix, Odometry


def fix(**kw):
    base = dict(stamp=1.0, lat=47.0, lon=8.0, alt=0.0, status=0, covariance=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
                covariance_type=2)
    return GpsFix(**{**base, **kw})


def test_fixes_that_cannot_be_measurements():
    assert fix_problem(fix()) is None
    assert fix_problem(fix(lat=float("nan"))).key == "gps_invalid_position"
    assert fix_problem(fix(lat=0.0, lon=0.0)).key == "gps_zero_position"
    assert fix_problem(fix(covariance=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))).key == "gps_invalid_covariance"
    assert fix_problem(fix(covariance=(-1.0,) * 9, covariance_type=0)) is None  # UNKNOWN: values unused
    assert fix_problem(fix(status=-1, lat=float("nan"))) is None  # NO_FIX says so itself


def odom(t, x, v=5.0, yaw_rate=0.0):
    return Odometry(stamp=t, x=x, y=0.0, yaw=0.0, v=v, yaw_rate=yaw_rate)


def test_implausible_odometry_is_refused_and_a_restarted_source_followed():
    g = OdometryGate(max_speed_mps=70.0, max_yaw_rate_rps=6.0, reanchor_messages=3)
    assert g.check(odom(0.0, 0.0)) == (None, False)
    assert g.check(odom(0.1, 0.5)) == (None, False)
    assert g.check(odom(0.2, 1e15))[0].key == "odometry_position_out_of_range"
    assert g.check(odom(0.2, 1.0, v=1e6))[0].key == "odometry_implausible_twist"
    assert g.check(odom(0.2, 500.0))[0].key == "odometry_position_jump"
    assert g.check(odom(0.3, 1.5)) == (None, False)  # the single jump changed nothing
    # the source restarts at 1000 m: refused until 3 messages agree, then followed
    assert g.check(odom(0.4, 1000.0))[0] is not None
    assert g.check(odom(0.5, 1000.5))[0] is not None
    assert g.check(odom(0.6, 1001.0)) == (None, True)
    assert g.check(odom(0.7, 1001.5)) == (None, False)
