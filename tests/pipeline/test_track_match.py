"""The track check on the fake world: frames taken along a drive line up at the true place only."""

from __future__ import annotations

import numpy as np

from geoloc_node.search import TableSearch
from geoloc_node.track_match import TrackFrame, TrackMatcher


def _matcher(table):
    return TrackMatcher(TableSearch(table), length_m=60.0, spacing_m=2.0, max_frames=30, radius_m=1000.0,
                        separation_m=25.0, recent_frames=3)


def _drive(world, matcher, rng, flip=0.1, codes_of=None):
    """Frames every 4 m eastwards from (-100, 20) for 60 m; the odometry frame is rotated by 90 degrees from ENU
    (the vehicle drives along the odometry y axis), so the check must rotate the track by the filter's heading.
    Returns the last pose."""
    for i in range(16):
        e, n = -100.0 + 4.0 * i, 20.0
        code = world.codes(np.array([[e, n]]))[0] if codes_of is None else codes_of(i)
        bits = np.unpackbits(code)
        bits ^= (rng.random(bits.size) < flip).astype(np.uint8)
        pose = (0.0, 4.0 * i, np.pi / 2)  # odometry: driving along +y in its own frame ...
        matcher.add(TrackFrame(float(i), 4.0 * i, pose, np.packbits(bits), 0))
    return pose


def test_the_true_place_wins_and_a_wrong_one_loses(world, table):
    rng = np.random.default_rng(3)
    m = _matcher(table)
    pose = _drive(world, m, rng)
    yaw = 0.0  # ... which is east in ENU: phi = yaw - odometry yaw = -90 degrees
    right = m.check(15.0, (-40.0, 20.0), yaw, pose)
    assert right.margin_bits > 5.0 and right.z > 4.0 and right.newest_z > 2.5 and right.length_m == 60.0
    wrong = m.check(15.0, (150.0, -200.0), yaw, pose)
    assert wrong.margin_bits < -5.0 and wrong.z < 3.0 and wrong.best_z > 4.0
    assert np.hypot(wrong.alternative_en[0] + 40.0, wrong.alternative_en[1] - 20.0) <= 15.0  # the true place
    turned = m.check(15.0, (-40.0, 20.0), yaw + np.pi / 2, pose)  # a wrong heading bends the track away
    assert turned.z < right.z


def test_unreadable_frames_match_no_place(world, table):
    rng = np.random.default_rng(4)
    m = _matcher(table)
    noise = rng.integers(0, 256, (16, world.bits // 8), dtype=np.uint8)
    pose = _drive(world, m, rng, flip=0.0, codes_of=lambda i: noise[i])
    v = m.check(15.0, (-40.0, 20.0), 0.0, pose)
    assert v.z < 3.0 and v.best_z < 4.5  # nothing stands out: never a reason to restart


def test_frames_closer_than_the_spacing_replace_the_newest(world, table):
    m = _matcher(table)
    code = np.zeros(world.bits // 8, np.uint8)
    for i in range(10):
        m.add(TrackFrame(float(i), 0.5 * i, (0.5 * i, 0.0, 0.0), code, 0))  # a slow vehicle: 0.5 m per frame
    kept = [f.odometer_m for f in m.frames]
    assert m.frames[-1].stamp == 9.0 and kept[0] == 0.0 and len(kept) >= 3  # it was the newest that moved on
    assert all(b - a >= 1.5 for a, b in zip(kept[:-2], kept[1:-1], strict=True))
