"""The integrity monitor's decisions on constructed cases: each cause of distrust, the anchor, the hysteresis, the
frame gate, the restart, and the protection level."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from geoloc_node.camera_check import CameraCheck
from geoloc_node.config import IntegrityConfig
from geoloc_node.integrity import IntegrityMonitor, protection_factor
from geoloc_node.track_match import TrackVerdict

CFG = IntegrityConfig()
GOOD_CAMERA = CameraCheck(True, True, "panorama camera 512x128, 360 degrees")
rng = np.random.default_rng(0)
TIGHT = rng.normal(0.0, 1.0, (500, 2))  # a converged cloud: sigma 1 m
WEIGHTS = np.full(500, 1 / 500)


def verdict(stamp, **kw) -> TrackVerdict:
    good = dict(frames=20, length_m=60.0, margin_bits=15.0, z=7.0, alternative_en=(300.0, 0.0), best_z=7.0,
                recent_margin_bits=12.0, recent_z=5.0, newest_z=5.0, first_stamp=stamp - 8.0,
                fresh_length_m=60.0, fresh_margin_bits=12.0, fresh_z=5.0, fresh_best_z=5.0, fresh_frames=20,
                fresh_first_stamp=stamp - 8.0, fresh_alternative_en=(300.0, 0.0))
    good.update(kw)
    return TrackVerdict(stamp=stamp, **good)


def frame(lbf=2.5, distinct=5.0):
    return SimpleNamespace(log_bayes_factor=lbf, distinctness=distinct)


def monitor(camera=GOOD_CAMERA, config=CFG) -> IntegrityMonitor:
    m = IntegrityMonitor(config)
    if camera is not None:
        m.note_camera(camera)
    return m


def assess(m, stamp, particles=TIGHT, gps=False):
    mean = particles.mean(axis=0)
    cov = np.cov(particles.T)
    return m.assess(stamp, particles, WEIGHTS, mean, cov, gps_trusted=gps)


def confirmed(m, stamp=100.0) -> float:
    """Feed good frames and passing track checks until the camera confirms the position; returns the time."""
    for i in range(2):
        t = stamp + 0.5 * i
        m.admits(t, frame())
        m.note_track(verdict(t))
    return t


def test_a_confirmed_track_is_trustworthy_with_a_protection_level():
    m = monitor()
    t = confirmed(m)
    v = assess(m, t)
    assert v.trustworthy and "camera track confirms" in v.reason
    sigma = math.sqrt(np.linalg.eigvalsh(v.cov).max())
    assert v.hpl_m == pytest.approx(max(protection_factor(CFG.integrity_risk) * sigma, v.hpl_m), rel=1e-9)
    assert protection_factor(1e-3) == pytest.approx(3.717, abs=1e-3)


@pytest.mark.parametrize("camera,text", [
    (CameraCheck(False, True, "the model expects a 360 degree panorama"), "camera does not match the model"),
    (None, "no CameraInfo"),
])
def test_the_camera_must_be_the_models(camera, text):
    m = monitor(camera=camera)
    t = confirmed(m)
    v = assess(m, t)
    assert not v.trustworthy and text in v.reason


def test_without_camera_info_when_not_required():
    m = monitor(camera=None, config=IntegrityConfig(require_camera_info=False))
    assert assess(m, confirmed(m)).trustworthy


def test_a_wide_cloud_is_not_converged():
    m = monitor()
    t = confirmed(m)
    v = assess(m, t, particles=rng.normal(0.0, 20.0, (500, 2)))
    assert not v.trustworthy and "protection level" in v.reason and v.hpl_m > CFG.alert_limit_m


def test_a_second_mode_widens_the_protection_level():
    m = monitor()
    t = confirmed(m)
    two = TIGHT.copy()
    two[:10] += [400.0, 0.0]  # 2 % of the weight 400 m away
    assert assess(m, t, particles=two).hpl_m > 300.0


def test_a_trusted_gps_fix_anchors_dead_reckoning_for_a_while():
    m = monitor()
    m.note_gps(50.0)
    assert assess(m, 50.0 + CFG.gps_anchor_s - 0.1).trustworthy
    v = assess(m, 50.0 + CFG.gps_anchor_s + 0.1)
    assert not v.trustworthy and "no visual confirmation" in v.reason


@pytest.mark.parametrize("change,text", [
    (dict(margin_bits=0.5), "ambiguous"),
    (dict(z=2.0), "does not stand out from chance"),
    (dict(recent_margin_bits=-8.0, recent_z=3.0), "newest frames"),
    (dict(newest_z=1.5), "newest frames"),
    (dict(length_m=12.0), "confirming the camera's track"),
])
def test_each_track_failure_withdraws_trust(change, text):
    m = monitor()
    t = confirmed(m) + 0.5
    m.admits(t, frame())
    m.note_track(verdict(t, **change))
    v = assess(m, t)
    assert not v.trustworthy and text in v.reason


def test_newest_frames_that_still_stand_out_here_are_not_contradicted_by_a_far_better_fit():
    """A far place fitting the newest frames a little better (aliasing) contradicts the track only when those frames
    do not also stand out at the filter's place (``track_recent_max_z``)."""
    m = monitor()
    t = confirmed(m) + 0.5
    m.admits(t, frame())
    m.note_track(verdict(t, recent_margin_bits=-8.0, recent_z=CFG.track_recent_max_z + 0.5))
    assert assess(m, t).trustworthy and m.fresh_after is None
    m.admits(t + 0.5, frame())
    m.note_track(verdict(t + 0.5, recent_margin_bits=-8.0, recent_z=CFG.track_recent_max_z - 0.5))
    assert not assess(m, t + 0.5).trustworthy and m.fresh_after == t + 0.5


def test_the_newest_frame_withdraws_trust_before_its_track_check():
    """The whole track check runs after a frame's estimate is out; the newest frame's own test runs before: an
    estimate made with a frame that does not stand out at the filter's place is not trusted on the older track."""
    m = monitor()
    t = confirmed(m) + 0.5
    m.admits(t, frame())
    m.note_newest_frame(t, CFG.track_newest_trust_z + 0.5)  # a frame that fits: nothing changes
    assert assess(m, t).trustworthy
    m.admits(t + 0.5, frame())
    m.note_newest_frame(t + 0.5, CFG.track_newest_min_z - 1.0)
    v = assess(m, t + 0.5)
    assert not v.trustworthy and "newest frame does not fit" in v.reason
    assert m.fresh_after == t + 0.5 and m.contradicted_at == t + 0.5
    m.note_track(verdict(t + 0.5, newest_z=CFG.track_newest_min_z - 1.0))  # the deferred check agrees
    assert m.fresh_after == t + 0.5 and not assess(m, t + 0.6).trustworthy


def test_an_estimate_whose_frame_barely_stands_out_is_not_trusted_but_the_track_stays_confirmed():
    """A frame between ``track_newest_min_z`` and ``track_newest_trust_z`` (the first frames after a teleport while
    driving): its estimate and those until the next frame are not trusted; the track is not contradicted, so the
    next frame that stands out restores trust at once."""
    m = monitor()
    t = confirmed(m) + 0.5
    m.admits(t, frame())
    m.note_newest_frame(t, (CFG.track_newest_min_z + CFG.track_newest_trust_z) / 2)
    v = assess(m, t)
    assert not v.trustworthy and "barely stands out" in v.reason
    assert not assess(m, t + 0.1).trustworthy  # odometry estimates until the next frame
    assert m.track_ok and m.fresh_after is None and m.contradicted_at is None
    m.admits(t + 0.2, frame())
    m.note_newest_frame(t + 0.2, CFG.track_newest_trust_z + 0.5)
    assert assess(m, t + 0.2).trustworthy


def test_the_newest_frame_of_a_short_track_is_no_contradiction():
    m = monitor()
    m.note_track(verdict(1.0, length_m=CFG.track_min_length_m - 5.0))
    m.note_newest_frame(1.2, 0.0)
    assert m.fresh_after is None


def test_a_view_that_changes_more_than_odometry_explains_withdraws_trust_until_the_vehicle_drives():
    """A vehicle moved without odometry (standing, or driving on: the view jumped): trust goes at once and only new
    driving (``track_regain_m``) restores it; standing at the new place (``track_regain_s``) does not, though its
    frames fit the old place (a 1 km teleport: z 3.8 there). Changes that the odometry's motion explains, or changes
    while turning, are no sign of it."""
    base, per_m = CFG.view_change_max_frac, CFG.view_change_per_m
    for moved in (0.0, 2.0):  # standing; driving on at 10 m/s, 5 frames/s
        explained = base + per_m * moved
        m = monitor()
        t = confirmed(m) + 0.5
        m.admits(t, frame())
        m.note_view_change(t, moved, 0.0, explained * 2)  # before the usual change is known: no decision
        assert assess(m, t).trustworthy
        for _ in range(10):  # this camera's usual change between frames
            m.note_view_change(t, moved, 0.0, 0.03)
        for moved_ok, turned, changed in [(moved, 0.0, explained * 0.9), (moved + 1.0, 0.0, explained + per_m * 0.9),
                                          (moved, CFG.view_change_max_turn_deg * 2, explained * 2)]:
            m.admits(t, frame())
            m.note_view_change(t, moved_ok, turned, changed)
            assert assess(m, t).trustworthy, (moved_ok, turned, changed)
        m.admits(t + 0.2, frame())
        m.note_view_change(t + 0.2, moved, 0.0, explained * 1.1)
        v = assess(m, t + 0.2)
        assert not v.trustworthy and "view changed more than odometry explains" in v.reason, moved
        assert m.fresh_after == t + 0.2 and m.contradicted_at == t + 0.2
        standing = t + 0.2 + CFG.track_regain_s + 1.0  # long enough standing; new frames fit the old place
        m.admits(standing, frame())
        m.note_track(verdict(standing, fresh_length_m=0.0))
        assert not assess(m, standing).trustworthy
        driven = standing + 2.0  # after track_regain_m of new driving that confirms the place
        m.admits(driven, frame())
        m.note_track(verdict(driven, fresh_length_m=CFG.track_regain_m + 1.0))
        assert assess(m, driven).trustworthy and not m.moved_unseen


def test_codes_that_flicker_from_frame_to_frame_are_no_view_jump():
    """An encoder or camera whose codes change much at every frame (here 30 %: more than a still view may): a change
    is a jump only against what this camera's frames usually do (``view_change_noise_factor``)."""
    m = monitor()
    t = confirmed(m) + 0.5
    flicker = 0.3
    assert flicker > CFG.view_change_max_frac
    for i in range(12):
        m.admits(t + 0.2 * i, frame())
        m.note_view_change(t + 0.2 * i, 0.0, 0.0, flicker + 0.01 * (i % 3))
        assert assess(m, t + 0.2 * i).trustworthy
    jump = min(0.95, flicker * CFG.view_change_noise_factor * 1.1)
    m.admits(t + 3.0, frame())
    m.note_view_change(t + 3.0, 0.0, 0.0, jump)
    assert not assess(m, t + 3.0).trustworthy and m.moved_unseen


def test_after_a_contradiction_a_standing_vehicle_regains_trust_on_standing_frames():
    """The other way back (``track_regain_s``) stays for contradictions that are not a view jump: a vehicle that
    stops while its newest frames were at odds."""
    m = monitor()
    t = confirmed(m) + 0.5
    m.admits(t, frame())
    m.note_newest_frame(t, CFG.track_newest_min_z - 1.0)
    assert not assess(m, t).trustworthy
    standing = t + CFG.track_regain_s + 1.0
    m.admits(standing, frame())
    m.note_track(verdict(standing, fresh_length_m=0.0))
    assert assess(m, standing).trustworthy


def test_frames_that_do_not_confirm_withdraw_trust():
    m = monitor()
    t = confirmed(m)
    for i in range(4):
        m.admits(t + 0.5 * (i + 1), frame(lbf=-1.0))
    v = assess(m, t + 2.0)
    assert not v.trustworthy and "camera frames do not confirm" in v.reason


def test_an_old_confirmation_expires():
    m = monitor()
    t = confirmed(m)
    v = assess(m, t + CFG.evidence_max_age_s + 1.0)
    assert not v.trustworthy and "no camera frame confirmed" in v.reason


def test_after_a_failed_check_only_new_frames_restore_trust():
    """After a check that found the frames at odds with the place, checks that pass on the old frames (a kidnapped
    vehicle's track still vouches for the old place), or on too little new driving, or on new frames that do not
    prefer the place outright, do not restore trust; ``track_regain_m`` of new frames that do, do."""
    m = monitor()
    t = confirmed(m)
    assert assess(m, t).trustworthy
    m.note_track(verdict(t + 0.5, recent_margin_bits=-8.0, recent_z=3.0))
    assert m.fresh_after == t + 0.5
    not_yet = [dict(fresh_length_m=0.0, fresh_margin_bits=-math.inf, fresh_z=0.0),  # the old frames only
               dict(fresh_length_m=CFG.track_regain_m - 1.0),  # too little new driving
               # another place fits them as well; they do not stand out from chance (a stretch shorter than a track)
               dict(fresh_length_m=CFG.track_regain_m + 5.0, fresh_margin_bits=CFG.track_recent_regain_bits - 0.5),
               dict(fresh_length_m=CFG.track_regain_m + 5.0, fresh_z=CFG.track_regain_min_z - 0.5)]
    for i, kw in enumerate(not_yet):
        s = t + 1 + i
        m.admits(s, frame())
        m.note_track(verdict(s, **kw))
        assert not assess(m, s).trustworthy, kw
        assert "confirming the camera's track on new frames" in m.last.reason
    m.admits(t + 6, frame())
    m.note_track(verdict(t + 6))
    assert assess(m, t + 6).trustworthy


def test_after_a_contradiction_a_track_of_new_frames_is_judged_alone():
    """Once the frames taken since a contradiction cover a track of their own, the older frames neither confirm the
    place (a kidnapped vehicle's track still vouches for the old place) nor block it (unreadable frames still in
    the track make it look ambiguous)."""
    m = monitor()
    t = confirmed(m)
    assess(m, t)
    m.note_track(verdict(t + 0.5, recent_margin_bits=-8.0, recent_z=3.0))  # contradicted
    blurred = dict(margin_bits=-4.0, z=3.0, alternative_en=(110.0, 0.0))  # the whole track, old frames included
    short = CFG.track_min_length_m - 5.0
    m.admits(t + 1.0, frame())  # new frames that would regain a track that passes, but do not pass one alone
    m.note_track(verdict(t + 1.0, fresh_length_m=short, fresh_z=CFG.track_min_z - 0.5, **blurred))
    assert not assess(m, t + 1.0).trustworthy and "ambiguous: a place 110 m away" in m.last.reason
    m.admits(t + 2.0, frame())
    m.note_track(verdict(t + 2.0, fresh_length_m=CFG.track_min_length_m, **blurred))
    assert assess(m, t + 2.0).trustworthy
    # the old frames confirm, the new ones (a full track of them) are ambiguous: not trusted
    m.note_track(verdict(t + 2.5, recent_margin_bits=-8.0, recent_z=3.0))  # contradicted again
    m.admits(t + 3.0, frame())
    m.note_track(verdict(t + 3.0, fresh_length_m=CFG.track_min_length_m, fresh_margin_bits=-2.0,
                         fresh_alternative_en=(500.0, 0.0)))
    assert not assess(m, t + 3.0).trustworthy and "ambiguous: a place 500 m away" in m.last.reason


def test_new_frames_that_pass_the_track_tests_alone_vouch_for_the_place_the_whole_track_blurs():
    """After a contradiction, frames taken since that on their own pass the whole track's tests (margin, z) restore
    trust once they are enough (``track_regain_m`` of driving, or ``track_regain_s`` for a vehicle standing still),
    though the whole track, unreadable frames included, is ambiguous; not with a weaker margin or z, not while
    standing after the view jumped, not with the newest frames at odds."""
    blurred = dict(margin_bits=0.0, z=3.2, alternative_en=(110.0, 0.0))  # the whole track: black frames in it
    strong = dict(fresh_margin_bits=CFG.track_margin_bits + 1.0, fresh_z=CFG.track_min_z + 0.5, fresh_frames=5)

    def contradicted(jumped=False):
        m = monitor()
        t = confirmed(m)
        assess(m, t)
        if jumped:
            for i in range(12):  # learn the usual change, then a jump while standing
                m.note_view_change(t + 0.01 * i, 0.0, 0.0, 0.03)
            m.note_view_change(t + 0.5, 0.0, 0.0, 0.5)
        else:
            m.note_track(verdict(t + 0.5, recent_margin_bits=-8.0, recent_z=3.0))
        assert m.fresh_after == t + 0.5
        return m, t + 0.5

    def trusted_after(m, stamp, **kw):
        m.admits(stamp, frame())
        m.note_track(verdict(stamp, **{**blurred, **strong, **kw}))
        return assess(m, stamp).trustworthy

    m, bad = contradicted()
    assert trusted_after(m, bad + 1.0, fresh_length_m=CFG.track_regain_m)  # driven
    assert "new frames confirm the position" in m.last.reason
    m, bad = contradicted()
    assert not trusted_after(m, bad + 1.0, fresh_length_m=CFG.track_regain_m - 1.0)  # not enough yet
    assert trusted_after(m, bad + CFG.track_regain_s, fresh_length_m=1.0)  # standing, long enough
    for weaker in (dict(fresh_margin_bits=CFG.track_margin_bits - 0.5), dict(fresh_z=CFG.track_min_z - 0.5),
                   dict(newest_z=CFG.track_newest_min_z - 0.5)):
        m, bad = contradicted()
        assert not trusted_after(m, bad + 1.0, fresh_length_m=CFG.track_regain_m + 5.0, **weaker), weaker
    m, bad = contradicted(jumped=True)  # moved without odometry: standing frames do not count, driven ones do
    assert not trusted_after(m, bad + 2 * CFG.track_regain_s, fresh_length_m=1.0)
    assert trusted_after(m, bad + 2 * CFG.track_regain_s + 1.0, fresh_length_m=CFG.track_regain_m)


@pytest.mark.parametrize("change", [dict(margin_bits=0.5), dict(z=2.0)])
def test_a_weak_or_ambiguous_long_track_does_not_make_its_frames_stale(change):
    """Only the newest frames at odds with the place (a vehicle no longer where the track says) make the older
    frames suspect; a long track that is momentarily ambiguous or weak withdraws trust only while it is."""
    m = monitor()
    t = confirmed(m)
    m.admits(t + 0.5, frame())
    m.note_track(verdict(t + 0.5, **change))
    assert not assess(m, t + 0.5).trustworthy and m.fresh_after is None
    m.admits(t + 1.0, frame())
    m.note_track(verdict(t + 1.0))
    assert assess(m, t + 1.0).trustworthy


def test_a_vehicle_standing_still_regains_trust_after_some_time():
    """New frames of a vehicle that does not move cover no road: ``track_regain_s`` of them count instead."""
    m = monitor()
    t = confirmed(m)
    m.note_track(verdict(t + 0.5, newest_z=0.5))
    m.admits(t + 1.0, frame())
    m.note_track(verdict(t + 1.0, fresh_length_m=0.5))
    assert not assess(m, t + 1.0).trustworthy
    s = t + 0.5 + CFG.track_regain_s
    m.admits(s, frame())
    m.note_track(verdict(s, fresh_length_m=0.5))
    assert assess(m, s).trustworthy


def test_a_short_track_is_not_a_contradiction():
    """Checks that fail only because too little has been driven do not make the frames so far stale."""
    m = monitor()
    m.note_track(verdict(1.0, length_m=CFG.track_min_length_m - 5.0))
    assert m.fresh_after is None


def test_the_gate_keeps_contradicting_frames_off_a_trusted_estimate():
    m = monitor()
    t = confirmed(m)
    assess(m, t)  # trusted: locked for gate_hold_s
    assert not m.admits(t + 0.5, frame(lbf=-2.0)) and m.frames_gated == 1
    assert m.admits(t + 1.0, frame(lbf=1.0))
    assert m.admits(t + CFG.gate_hold_s + 1.0, frame(lbf=-2.0))  # the lock has expired
    m.note_start_from_table(t + 40.0)
    assess(m, t + 40.0)
    assert m.admits(t + 40.5, frame(lbf=-2.0))  # a restarted filter takes every frame



def test_a_track_confirmed_again_opens_the_gate_while_trust_is_out():
    """After unreadable frames the cloud has dead-reckoned wide, so good frames agree with it only weakly (their
    evidence stays low) and the gate would keep them out until the hold runs out; a track confirmed again on frames
    taken since the trouble says the camera reads the world at the filter's place: its frames may tighten the cloud.
    Unreadable frames alone never confirm a track, so they stay gated."""
    m = monitor()
    t = confirmed(m)
    assess(m, t)  # trusted: locked for gate_hold_s
    bad = t + 1.0
    m.note_track(verdict(bad, newest_z=0.5, recent_margin_bits=-20.0, recent_z=0.5))  # the trouble starts
    assert not m.track_ok and not assess(m, bad).trustworthy
    assert not any([m.admits(bad + 0.2 * i, frame(lbf=-2.0)) for i in range(10)])  # unreadable: gated
    assert not m.admits(bad + 5.0, frame(lbf=0.2))  # weak agreement, no track: gated
    good = bad + 20.0
    m.note_track(verdict(good, fresh_z=CFG.track_regain_min_z - 1.0, first_stamp=bad + 15.0))
    assert not m.track_ok and not m.admits(good, frame(lbf=0.2))  # the new frames do not stand out yet
    m.note_track(verdict(good + 1.0, fresh_length_m=CFG.track_regain_m + 1.0, first_stamp=bad + 15.0))
    assert m.track_ok and not assess(m, good + 1.0).trustworthy  # the evidence is still low: not trusted
    assert m.admits(good + 1.5, frame(lbf=0.2))  # but the frame may weigh the particles
    for i in range(6):
        m.admits(good + 2.0 + 0.2 * i, frame(lbf=2.5))
    assert assess(m, good + 3.2).trustworthy
    assert not m.admits(good + 3.5, frame(lbf=-2.0))  # trusted again: the gate holds

def test_newest_frames_that_stand_out_inside_the_protection_level_open_the_gate():
    """After unreadable frames the cloud dead-reckoned off the vehicle (here 18 m, inside its protection level):
    good frames agree with its prediction only weakly and their newest frames contradict its place, so no track is
    confirmed; that they stand out best at a place inside the protection level says the camera reads this
    neighbourhood again, and they may pull the cloud there. Not where they stand out outside it (a kidnapped
    vehicle's frames), or barely (unreadable frames stand out at some random place), or on an old check."""
    m = monitor()
    t = confirmed(m)
    assess(m, t)  # trusted: locked for gate_hold_s
    bad = t + 1.0
    m.note_track(verdict(bad, newest_z=0.5, recent_margin_bits=-20.0, recent_z=0.5))  # the trouble starts
    assert not any([m.admits(bad + 0.2 * i, frame(lbf=-2.0)) for i in range(10)])  # unreadable: gated
    wide = rng.normal(0.0, 8.0, (500, 2))  # dead-reckoned for a while
    good = bad + 50.0
    hpl = assess(m, good, particles=wide).hpl_m
    mean = m.last_mean
    assert not m.track_ok and 18.0 < hpl <= CFG.alert_limit_m * 2

    def gated(place_off_m, z, checked_at=good):
        m.note_track(verdict(checked_at, newest_z=1.0, recent_margin_bits=-30.0, recent_z=1.0,
                             recent_best_en=(mean[0] + place_off_m, mean[1]), recent_best_z=z))
        return not m.admits(good + 0.2, frame(lbf=0.2))

    assert gated(18.0, CFG.track_min_z - 0.5)  # barely stands out: chance
    assert gated(300.0, 6.0)  # stands out far outside the bound
    assert gated(18.0, 6.0, checked_at=good - CFG.evidence_max_age_s - 1.0)  # an old check
    assert not gated(18.0, 6.0)  # readable, inside the bound: the frame weighs the particles


def test_restart_only_for_a_wrong_place_on_readable_frames():
    m = monitor()
    t = confirmed(m)
    assess(m, t)
    wrong = dict(z=1.0, margin_bits=-20.0, best_z=6.0, recent_margin_bits=-20.0, recent_z=1.0)
    m.note_track(verdict(t + 1.0, **wrong))  # contradicted at t + 1: older frames may vouch for the old place
    assess(m, t + 1.0)
    s = t + 1.0 + CFG.relocalize_after_s + 0.5
    short = CFG.track_min_length_m - 5.0
    m.note_track(verdict(s, **{**wrong, "first_stamp": t}, fresh_length_m=short, fresh_margin_bits=-20.0,
                         fresh_z=1.0, fresh_best_z=6.0))
    assert not m.should_restart(s)  # the track still holds frames from before the contradiction, and few new ones
    m.note_track(all_fresh(s, **{**wrong, "first_stamp": t + 2.0}))
    assert m.should_restart(s)
    m.note_track(all_fresh(s, **{**wrong, "first_stamp": t + 2.0, "best_z": 3.0}))
    assert not m.should_restart(s)  # unreadable frames: no place stands out, dead-reckon instead
    m.note_track(all_fresh(s, **{**wrong, "first_stamp": t + 2.0, "z": 6.0}))
    assert not m.should_restart(s)  # the filter's place stands out too: ambiguity, not a wrong place
    # old frames still in the track, but a track's length of new ones (judged alone) says the place is wrong
    m.note_track(verdict(s, **{**wrong, "first_stamp": t, "z": 6.0, "margin_bits": 5.0},
                         fresh_length_m=CFG.track_min_length_m, fresh_margin_bits=-20.0, fresh_z=1.0,
                         fresh_best_z=6.0, fresh_first_stamp=t + 2.0))
    assert m.should_restart(s)


def all_fresh(stamp, **kw) -> TrackVerdict:
    """A track all of whose frames were taken after the last contradiction: its fresh part is the whole of it."""
    v = verdict(stamp, **kw)
    return dataclasses.replace(v, fresh_length_m=v.length_m, fresh_margin_bits=v.margin_bits, fresh_z=v.z,
                               fresh_best_z=v.best_z, fresh_alternative_en=v.alternative_en, fresh_frames=v.frames,
                               fresh_first_stamp=v.first_stamp)


def _fit(stamp, margin=10.0, decisive=True):
    return SimpleNamespace(stamp=stamp, margin_bits=margin, z=7.0, decisive=decisive)


def test_a_place_from_the_table_needs_the_whole_table_to_agree_at_every_heading():
    """After a (re)start from the table, a passing track check (which compares places at the filter's heading only)
    is not enough: the relocalizer must have scored the track over the whole table at every heading recently, and
    found its best place where the filter is."""
    m = monitor()
    m.note_start_from_table(99.0)
    t = confirmed(m)
    v = assess(m, t)
    assert not v.trustworthy and "whole table" in v.reason
    m.note_global_fit(_fit(t), distance_m=320.0)  # best elsewhere, at some heading
    v = assess(m, t)
    assert not v.trustworthy and "another place fits the camera's track better" in v.reason
    m.note_global_fit(_fit(t + 1.0), distance_m=4.0)
    assert assess(m, t + 1.0).trustworthy
    assert not m.from_table  # confirmed: from here on the place follows from continuity
    m.note_global_fit(_fit(t + 2.0), distance_m=320.0)  # no longer consulted
    assert assess(m, t + 2.0).trustworthy


def test_a_best_place_that_does_not_win_clearly_does_not_confirm_a_place_from_the_table():
    """A filter started from the table settles where the frames fit best: the relocalizer's best place lying there
    too, without winning by its margin and z, is the same guess twice (a Helsinki layout: 800 m off, trusted)."""
    m = monitor()
    m.note_start_from_table(99.0)
    t = confirmed(m)
    m.note_global_fit(_fit(t, margin=6.3, decisive=False), distance_m=3.0)
    v = assess(m, t)
    assert not v.trustworthy and "does not single out this place" in v.reason
    m.note_global_fit(_fit(t + 0.5), distance_m=3.0)
    assert assess(m, t + 0.5).trustworthy


def test_an_old_global_fit_does_not_count():
    m = monitor()
    m.note_start_from_table(99.0)
    t = confirmed(m)
    m.note_global_fit(_fit(t - CFG.evidence_max_age_s - 1.0), distance_m=2.0)
    assert not assess(m, t).trustworthy


def test_without_the_relocalizer_the_global_check_is_off():
    m = monitor(config=IntegrityConfig(relocalize_headings=0))
    m.note_start_from_table(99.0)
    assert assess(m, confirmed(m)).trustworthy


def test_without_gps_the_protection_level_is_never_finer_than_the_camera_can_tell_places():
    """The track check takes every tile within 1.5 strides as "the filter's place": a camera-confirmed estimate's
    HPL is at least that, however tight the cloud; with GPS it is the cloud's own."""
    m = IntegrityMonitor(CFG, camera_resolution_m=15.0)
    m.note_camera(GOOD_CAMERA)
    t = confirmed(m)
    v = assess(m, t)
    assert v.trustworthy and v.hpl_m == 15.0
    assert assess(m, t + 1.0, gps=True).hpl_m < 15.0
    m.note_gps(t + 2.0)  # dead-reckoning from a trusted fix: bounded by the cloud grown with the odometry noise
    assert assess(m, t + 2.5).hpl_m < 15.0
