"""The track check on the fake world: frames taken along a drive line up at the true place only."""

from __future__ import annotations

import numpy as np

from geoloc_node.config import IntegrityConfig
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
    for v in (right, wrong):  # wherever the filter is, the newest frames alone stand out best at the true place
        assert np.hypot(v.recent_best_en[0] + 40.0, v.recent_best_en[1] - 20.0) <= 15.0 and v.recent_best_z > 4.0
    turned = m.check(15.0, (-40.0, 20.0), yaw + np.pi / 2, pose)  # a wrong heading bends the track away
    assert turned.z < right.z


def test_unreadable_frames_match_no_place(world, table):
    rng = np.random.default_rng(4)
    m = _matcher(table)
    noise = rng.integers(0, 256, (16, world.bits // 8), dtype=np.uint8)
    pose = _drive(world, m, rng, flip=0.0, codes_of=lambda i: noise[i])
    v = m.check(15.0, (-40.0, 20.0), 0.0, pose)
    assert v.z < 3.0 and v.best_z < 4.5  # nothing stands out: never a reason to restart
    assert v.recent_best_z < IntegrityConfig().track_min_z  # nor do the newest frames open the frame gate


def test_frames_closer_than_the_spacing_replace_the_newest(world, table):
    m = _matcher(table)
    code = np.zeros(world.bits // 8, np.uint8)
    for i in range(10):
        m.add(TrackFrame(float(i), 0.5 * i, (0.5 * i, 0.0, 0.0), code, 0))  # a slow vehicle: 0.5 m per frame
    kept = [f.odometer_m for f in m.frames]
    assert m.frames[-1].stamp == 9.0 and kept[0] == 0.0 and len(kept) >= 3  # it was the newest that moved on
    assert all(b - a >= 1.5 for a, b in zip(kept[:-2], kept[1:-1], strict=True))


def test_fresh_frames_are_scored_on_their_own(world, table):
    """A track whose old frames were taken at the filter's place but whose frames after ``fresh_after`` were taken
    elsewhere (a kidnapped vehicle): the whole track still fits, the fresh frames alone do not."""
    rng = np.random.default_rng(5)
    m = _matcher(table)
    elsewhere = world.codes(np.array([[150.0 + 4.0 * i, -200.0] for i in range(16)]))
    pose = _drive(world, m, rng, codes_of=lambda i: world.codes(np.array([[-100.0 + 4.0 * i, 20.0]]))[0]
                  if i < 10 else elsewhere[i])
    v = m.check(15.0, (-40.0, 20.0), 0.0, pose, fresh_after=9.0)  # frames 10..15 are fresh: 20 m of driving
    assert v.margin_bits > 0.0 and v.fresh_length_m == 20.0
    assert v.fresh_margin_bits < 0.0 and v.fresh_z < 3.0
    here = _matcher(table)  # the same drive, every frame taken at the filter's place
    pose = _drive(world, here, rng)
    good = here.check(15.0, (-40.0, 20.0), 0.0, pose, fresh_after=9.0)
    assert good.fresh_length_m == 20.0 and good.fresh_margin_bits > 2.0 and good.fresh_z > 3.0
    every = here.check(15.0, (-40.0, 20.0), 0.0, pose)  # nothing failed yet: every frame is fresh
    assert every.fresh_length_m == every.length_m and every.fresh_margin_bits == every.margin_bits
    none = here.check(15.0, (-40.0, 20.0), 0.0, pose, fresh_after=15.0)  # none taken since
    assert none.fresh_length_m == 0.0 and none.fresh_margin_bits == -np.inf


def test_the_recent_window_is_a_stretch_of_road(world, table):
    """The newest frames within ``recent_m`` of driving (at least ``recent_frames``): at 4 m per frame, 12 m holds
    the newest 4 frames; the recent score is then about them, not about the last 3 only."""
    m = TrackMatcher(TableSearch(table), length_m=60.0, spacing_m=2.0, max_frames=30, radius_m=1000.0,
                     separation_m=25.0, recent_frames=3, recent_m=12.0)
    _drive(world, m, np.random.default_rng(6))
    assert m._recent_count() == 4
    m.recent_m = 0.0
    assert m._recent_count() == 3


def test_a_frame_alone_before_it_joins_the_track_scores_as_the_checks_newest(world, table):
    """``frame_z`` (run before a frame's estimate is published) is the check's ``newest_z`` of that frame once it is
    the newest: high at the frame's true place, low elsewhere."""
    rng = np.random.default_rng(5)
    m = _matcher(table)
    pose = _drive(world, m, rng)
    newest = m.frames[-1]
    m.frames.pop()  # as before it joins: the same frame scored alone ...
    z_here, z_there = m.frame_z(newest, (-40.0, 20.0)), m.frame_z(newest, (150.0, -200.0))
    m.add(newest)  # ... and as the check's newest, at the same places
    assert z_here == m.check(15.0, (-40.0, 20.0), 0.0, pose).newest_z > 2.5
    assert z_there == m.check(15.0, (150.0, -200.0), 0.0, pose).newest_z < 2.5
