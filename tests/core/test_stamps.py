from geoloc_node.stamps import ACCEPT, DROP, RESET, StampGate


def test_single_outliers_are_dropped_and_sustained_jumps_reset():
    g = StampGate(jump_s=2.0, confirm=3)
    for t in (10.0, 10.1, 10.2):
        assert g.check("gps", t).action == ACCEPT
    assert g.check("gps", 0.0).reason == "stale_stamps"  # one fix stamped 0
    assert g.check("gps", 1e6).reason == "future_stamps"  # one from the far future
    assert g.check("gps", 10.3).action == ACCEPT and g.clock == 10.3
    assert g.check("gps", 10.3).reason == "duplicate_stamps"
    assert g.check("gps", 10.25).reason == "out_of_order_stamps"
    assert g.check("gps", float("nan")).reason == "bad_stamps"
    verdicts = [g.check("gps", 1.0 + 0.1 * i).action for i in range(3)]  # a looping bag
    assert verdicts == [DROP, DROP, RESET] and g.clock == 1.2


def test_a_gap_in_time_is_accepted_after_agreement_without_reset():
    g = StampGate(jump_s=2.0, confirm=3)
    g.check("gps", 10.0)
    verdicts = [g.check("gps", 70.0 + i).action for i in range(3)]  # one sensor silent for a minute
    assert verdicts == [DROP, DROP, ACCEPT]


def test_late_frames_are_stale_odometry_is_not():
    g = StampGate(jump_s=2.0, confirm=3)
    g.check("odometry", 10.0)
    assert g.check("frame", 7.0).reason == "stale_stamps"
    g.check("frame", 9.9)
    assert g.check("odometry", 10.02).action == ACCEPT
