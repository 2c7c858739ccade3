"""The relocalizer on the fake world: the recent track, encoded at every heading, is found on the whole table at the
right place and heading; unreadable frames and short tracks decide nothing."""

from __future__ import annotations

import math

import numpy as np
from fakes import Drive, FakeOracleEncoder, fake_frame, feed

from geoloc_node.relocalize import Relocalizer
from geoloc_node.search import TableSearch

HEADINGS = [i * 45.0 for i in range(8)]


def _relocalizer(table, **kw):
    return Relocalizer(TableSearch(table), length_m=60.0, spacing_m=4.0, headings=16, separation_m=50.0,
                       min_length_m=40.0, min_margin_bits=8.0, min_z=6.5, **kw)


def _feed(r, world, drive, t_end, encode=None, odom_rotation=0.7, t_start=60.0):
    """Frames of ``drive`` up to ``t_end`` (s), every 4 m, encoded at 8 headings; odometry rotated from ENU by
    ``odom_rotation`` (the relocalizer must find that rotation among its heading hypotheses)."""
    enc = FakeOracleEncoder(world, flip_prob=0.08, heading_aware=True, seed=2)
    c, s = math.cos(-odom_rotation), math.sin(-odom_rotation)
    odometer, prev = 0.0, None
    for t in np.arange(t_start, t_start + t_end, 0.1):  # (from 60 s the vehicle heads south-east, not north)
        e, n = drive.truth(t)
        if prev is not None:
            odometer += math.hypot(e - prev[0], n - prev[1])
        prev = (e, n)
        if not r.wants_frame(odometer):
            continue
        hdg = drive.heading_deg(t)
        yaw_enu = math.radians(90.0 - hdg)
        pose = (c * e - s * n, s * e + c * n, yaw_enu - odom_rotation)  # the odometry frame is rotated
        images = [fake_frame(t, e, n, hdg).image] * len(HEADINGS)
        codes = enc.encode(images, HEADINGS) if encode is None else encode(len(HEADINGS))
        r.add(t, odometer, pose, codes, HEADINGS)
    return prev, math.radians(90.0 - drive.heading_deg(t))


def test_the_track_is_found_at_its_place_and_heading(world, table):
    drive = Drive(duration_s=90.0, seed=8)
    r = _relocalizer(table)
    (e, n), yaw = _feed(r, world, drive, 12.0)
    found = r.locate(12.0)
    assert found is not None and found.decisive, found
    assert math.hypot(found.east - e, found.north - n) <= 15.0
    assert abs(math.remainder(found.yaw - yaw, 2 * math.pi)) <= math.radians(360 / 16)
    assert found.margin_bits >= 8.0 and found.z >= 6.5 and found.length_m >= 40.0


def test_unreadable_frames_decide_nothing(world, table):
    rng = np.random.default_rng(1)
    r = _relocalizer(table)
    _feed(r, world, Drive(duration_s=90.0, seed=8), 12.0,
          encode=lambda k: rng.integers(0, 256, (k, world.bits // 8), dtype=np.uint8))
    found = r.locate(12.0)
    assert found is not None and not found.decisive and found.margin_bits < 8.0


def test_a_short_track_is_not_located_and_frames_are_spaced(world, table):
    r = _relocalizer(table)
    _feed(r, world, Drive(duration_s=90.0, seed=8), 3.0)  # 24 m of driving
    assert r.locate(3.0) is None
    kept = [f.odometer_m for f in r.frames]
    assert all(b - a >= 4.0 for a, b in zip(kept, kept[1:]))
    r.reset()
    assert not r.frames and r.wants_frame(0.0)


def test_the_pipeline_relocalizes_a_lost_filter_and_forgets_the_frames_that_chose(world, table):
    """In the pipeline: a filter moved far from the truth during an outage is restarted by the relocalizer near
    the truth; the restart empties the relocalizer (the frames that chose the place must not confirm it), and the
    monitor then wants the whole table's word before trusting it."""
    from geoloc_node.config import GeolocConfig
    from geoloc_node.pipeline import Pipeline

    drive = Drive(duration_s=80.0, seed=5)
    events = drive.events(table.frame, outages=[(10.0, 80.0)])
    p = Pipeline(GeolocConfig.from_flat({"tracking.n_particles": 600}), FakeOracleEncoder(world, flip_prob=0.1),
                 table)
    restarts = []
    original = p._started_from_table

    def spy(stamp):
        original(stamp)
        restarts.append((len(p.relocalizer.frames), p.integrity.from_table))

    p._started_from_table = spy
    feed(p, [ev for ev in events if ev[0] < 1020.0])
    p.filter.init_gaussian(-250.0, 250.0, np.eye(2) * 25.0, 1020.0, reason="test: kidnapped")  # far from the truth
    out = feed(p, [ev for ev in events if ev[0] >= 1020.0])
    assert p.counts["relocalizations"] >= 1 and restarts
    assert all(n == 0 and from_table for n, from_table in restarts)
    last = [o for o in out if hasattr(o, "east")][-1]
    te, tn = drive.truth(last.stamp - 1000.0)
    assert math.hypot(last.east - te, last.north - tn) < 15.0


def test_the_relocalizer_is_off_on_tables_too_large_to_grid(world, table):
    """It keeps a grid of the whole table per frame and heading: above ``relocalize_max_tiles`` it is not built."""
    from geoloc_node.config import GeolocConfig
    from geoloc_node.pipeline import Pipeline

    enc = FakeOracleEncoder(world)
    assert Pipeline(GeolocConfig(), enc, table).relocalizer is not None
    small = GeolocConfig.from_flat({"integrity.relocalize_max_tiles": table.n_tiles - 1})
    p = Pipeline(small, enc, table)
    assert p.relocalizer is None
    assert not p.integrity.global_check  # nothing would answer it: a start from the table would never be trusted


def test_a_converged_filter_is_restarted_at_once_only_when_its_own_track_check_agrees(world, table):
    """A converged filter that lost trust waits ``relocalize_converged_after_s`` before the relocalizer may restart
    it (a right filter on weak frames must not be thrown away), unless its own track check, at the filter's heading,
    prefers the relocalizer's place to the filter's by ``relocalize_corroboration_bits`` per frame."""
    from geoloc_node.config import GeolocConfig
    from geoloc_node.pipeline import Pipeline
    from geoloc_node.relocalize import Relocalization
    from geoloc_node.track_match import TrackFrame, TrackVerdict

    def verdict(stamp, margin_bits, alternative_en):
        return TrackVerdict(stamp=stamp, frames=20, length_m=60.0, margin_bits=margin_bits, z=2.0,
                            alternative_en=alternative_en, best_z=8.0, recent_margin_bits=-10.0, recent_z=1.0,
                            newest_z=1.0, first_stamp=stamp - 8.0)

    p = Pipeline(GeolocConfig(), FakeOracleEncoder(world), table)
    p.filter.init_gaussian(0.0, 0.0, np.eye(2), 100.0, reason="test")
    found = Relocalization(100.0, 300.0, 0.0, 0.0, margin_bits=12.0, z=8.0, length_m=60.0, frames=15, decisive=True)
    p.relocalizer.locate = lambda stamp: found
    frame = TrackFrame(100.0, 500.0, (0.0, 0.0, 0.0), np.zeros(table.bits // 8, np.uint8), 0)
    bits = p.config.integrity.relocalize_corroboration_bits
    cases = [(verdict(100.0, margin_bits=-bits - 1.0, alternative_en=(305.0, 5.0)), True),  # agrees: at once
             (verdict(100.0, margin_bits=-bits + 1.0, alternative_en=(305.0, 5.0)), False),  # prefers it too little
             (verdict(100.0, margin_bits=-bits - 1.0, alternative_en=(-300.0, 0.0)), False),  # prefers another place
             (None, False)]
    for track, restarted in cases:
        p.integrity.track = track
        p._last_relocalize_check = None
        before = p.counts["relocalizations"]
        assert p._relocalize(frame, np.zeros(2), lost=(None, False)) is restarted, track
        assert p.counts["relocalizations"] - before == int(restarted)
        p.filter.init_gaussian(0.0, 0.0, np.eye(2), 100.0, reason="test")
    p.integrity.track, p._last_relocalize_check = None, None  # without corroboration the wait decides
    assert p._relocalize(frame, np.zeros(2), lost=(None, True))
