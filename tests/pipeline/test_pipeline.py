import math
import threading
import time

import numpy as np
import pytest
from fakes import Drive, FakeOracleEncoder, fake_frame, feed, gps_fix

from geoloc_node.config import GeolocConfig
from geoloc_node.errors import GeolocError
from geoloc_node.health import HEALTHY, LOST
from geoloc_node.pipeline import Estimate, FingerprintMismatchError, HealthChange, InputRejected, Pipeline, StateReset
from geoloc_node.records import CameraFrame, GpsFix, Odometry

CFG = GeolocConfig.from_flat({"tracking.n_particles": 600})


def errors(out, drive, t0, t1, t_base=1000.0):
    res = []
    for o in out:
        if isinstance(o, Estimate) and t_base + t0 <= o.stamp < t_base + t1:
            e, n = drive.truth(o.stamp - t_base)
            res.append((o.stamp, math.hypot(o.east - e, o.north - n)))
    return np.array(res)


def test_outage_tracks_better_than_odometry_alone(world, table):
    drive = Drive(duration_s=100.0)
    events = drive.events(table.frame, outages=[(30.0, 90.0)])
    p = Pipeline(CFG, FakeOracleEncoder(world, flip_prob=0.1, wrong_prob=0.1), table)
    out = feed(p, events)
    odo = Pipeline(CFG, None, table)  # the same filter without frames: odometry alone
    out_odo = feed(odo, events)
    err = errors(out, drive, 30.0, 90.0)
    err_odo = errors(out_odo, drive, 30.0, 90.0)
    assert np.median(err[:, 1]) < 5.0 and np.percentile(err[:, 1], 95) < 10.0
    # an estimate at least every 0.5 s of the outage
    assert np.diff(np.concatenate([[1030.0], err[:, 0], [1090.0]])).max() <= 0.6
    end, end_odo = err[err[:, 0] > 1085.0, 1], err_odo[err_odo[:, 0] > 1085.0, 1]
    assert np.median(end) * 2 < np.median(end_odo)
    changes = [o for o in out if isinstance(o, HealthChange)]
    assert [c.state for c in changes] == [HEALTHY, LOST, HEALTHY]
    st = p.status()
    assert st["counts"]["frames_processed"] > 100 and st["health"]["state"] == HEALTHY
    assert st["latency"]["encode"]["mean_ms"] is not None and st["backend"] == "fake"
    assert all(o.fallback_active for o in out if isinstance(o, Estimate) and 1031 < o.stamp < 1090)


def test_cold_start_without_gps_from_global_topk(world, table):
    drive = Drive(duration_s=40.0, seed=4)
    events = [ev for ev in drive.events(table.frame) if ev[1] != "gps"]
    p = Pipeline(CFG, FakeOracleEncoder(world, flip_prob=0.1), table)
    out = feed(p, events)
    assert p.counts["cold_starts"] == 1
    err = errors(out, drive, 20.0, 40.0)
    assert np.median(err[:, 1]) < 6.0
    assert all(o.source in ("visual", "odometry") for o in out if isinstance(o, Estimate))


@pytest.mark.parametrize("divergence_checks, headings, restart", [
    (0, 16, "relocalizations"),  # the relocalizer: the recent track over the whole table, at every heading
    (0, 0, "reinitialisations"),  # without it, the integrity monitor's track check restarts the filter
    (3, 0, "reinitialisations"),  # the filter's own divergence check
])
def test_kidnapped_filter_detects_divergence_and_reinitialises(world, table, divergence_checks, headings, restart):
    drive = Drive(duration_s=80.0, seed=5)
    events = drive.events(table.frame, outages=[(10.0, 80.0)])
    cfg = GeolocConfig.from_flat({"tracking.divergence_checks": divergence_checks,
                                  "integrity.relocalize_headings": headings}, base=CFG)
    p = Pipeline(cfg, FakeOracleEncoder(world, flip_prob=0.1), table)
    feed(p, [ev for ev in events if ev[0] < 1020.0])
    p.filter.init_gaussian(-250.0, 250.0, np.eye(2) * 25.0, 1020.0, reason="test: kidnapped")  # far from the truth
    out = feed(p, [ev for ev in events if ev[0] >= 1020.0])
    assert p.counts[restart] >= 1
    err = errors(out, drive, 50.0, 80.0)
    assert np.median(err[:, 1]) < 6.0


def test_bad_stamps_are_counted_and_a_backwards_jump_resets(world, table):
    p = Pipeline(CFG, FakeOracleEncoder(world), table)
    f = table.frame
    assert p.on_gps(gps_fix(f, 10.0, 0.0, 0.0)) is not None

    def rejected(out):
        return [o.key for o in out if isinstance(o, InputRejected)]

    assert rejected(p.on_gps(gps_fix(f, 10.0, 0.0, 0.0))) == ["duplicate_stamps"]
    assert rejected(p.on_gps(gps_fix(f, 9.5, 0.0, 0.0))) == ["out_of_order_stamps"]
    assert rejected(p.on_odometry(Odometry(stamp=math.nan, x=0, y=0, yaw=0, v=0, yaw_rate=0))) == ["bad_stamps"]
    c = p.counts
    assert (c["duplicate_stamps"], c["out_of_order_stamps"], c["bad_stamps"]) == (1, 1, 1)
    # one fix 8 s back (a stamp of 0, a stale fix): dropped, no reset; the next normal fix is used
    assert rejected(p.on_gps(gps_fix(f, 2.0, 0.0, 0.0))) == ["stale_stamps"]
    assert p.counts["time_resets"] == 0
    assert rejected(p.on_gps(gps_fix(f, 10.2, 0.0, 0.0))) == []
    # several messages agreeing on the earlier time: a looping bag, one reset
    outs = [p.on_gps(gps_fix(f, 2.0 + 0.2 * i, 0.0, 0.0)) for i in range(CFG.pipeline.time_jump_confirm_messages)]
    assert p.counts["time_resets"] == 1 and p.counts["stale_stamps"] == CFG.pipeline.time_jump_confirm_messages
    assert any(isinstance(o, StateReset) for o in outs[-1])
    assert any(isinstance(o, HealthChange) and "reset" in o.reason for o in outs[-1])
    assert not p.filter.initialized or p.filter.stamp >= 2.0


def test_a_single_future_stamp_is_dropped_and_time_goes_on(world, table):
    p = Pipeline(CFG, FakeOracleEncoder(world), table)
    f = table.frame
    for i in range(30):
        p.on_gps(gps_fix(f, 10.0 + 0.2 * i, 0.0, 0.0))
    out = p.on_gps(gps_fix(f, 1e6, 0.0, 0.0))  # one fix from the far future (a driver glitch)
    assert [o.key for o in out if isinstance(o, InputRejected)] == ["future_stamps"]
    out = p.on_gps(gps_fix(f, 16.2, 0.0, 0.0))
    assert not any(isinstance(o, InputRejected) for o in out) and p.health.state == HEALTHY


@pytest.mark.parametrize("delay_s", [1.0, 3.0])
def test_late_frames_never_reset_the_state(world, table, delay_s):
    """Live at 2x-4x on a loaded machine, frames reach the pipeline seconds after GPS/odometry stamped later. That is
    lateness, not a looping bag: no reset, no false LOST. A frame within pipeline.time_jump_reset_s is processed; an
    older one is dropped as stale (it would pull the current state back to where the vehicle was)."""
    drive = Drive(duration_s=40.0, seed=4)
    events = drive.events(table.frame, outages=[(25.0, 40.0)])
    late = sorted(((t + (delay_s if k == "frame" else 0.0), i, k, r) for i, (t, k, r) in enumerate(events)),
                  key=lambda x: (x[0], x[1]))
    p = Pipeline(CFG, FakeOracleEncoder(world), table)
    out = feed(p, [(t, k, r) for t, _, k, r in late])
    changes = [o for o in out if isinstance(o, HealthChange)]
    assert p.counts["time_resets"] == 0 and not any("reset" in c.reason for c in changes)
    lost = [c.stamp for c in changes if c.state == LOST]
    assert lost and min(lost) >= 1025.0  # the real outage only: no false LOST before it
    if delay_s < CFG.pipeline.time_jump_reset_s:
        assert p.counts["stale_stamps"] == 0 and p.counts["frames_processed"] > 10
        assert any(isinstance(o, Estimate) and o.source == "visual" for o in out)
    else:
        # all dropped, but the last few: delivered after GPS/odometry ended, they are within 2 s of the newest stamp
        last_few = CFG.pipeline.time_jump_reset_s * CFG.pipeline.max_frame_rate_hz + 1
        assert p.counts["stale_stamps"] > 100 and p.counts["frames_processed"] <= last_few


def test_looping_multi_stream_bag_resets_once(world, table):
    """A looping bag: every stream's own stamps jump back; the first message after the loop resets, once."""
    drive = Drive(duration_s=10.0, seed=4)
    events = drive.events(table.frame)
    p = Pipeline(CFG, FakeOracleEncoder(world), table)
    feed(p, events)
    out = feed(p, events)
    # the first messages after the loop are held as single stale stamps until enough agree
    confirm = CFG.pipeline.time_jump_confirm_messages
    assert p.counts["time_resets"] == 1 and p.counts["stale_stamps"] == confirm - 1
    assert sum(isinstance(o, HealthChange) and "reset" in o.reason for o in out) == 1
    assert p.health.state == HEALTHY


def test_nan_fix_and_no_fix_never_reach_the_filter(world, table):
    p = Pipeline(CFG, FakeOracleEncoder(world), table)
    f = table.frame
    for i in range(50):
        p.on_gps(gps_fix(f, i * 0.1, 0.0, 0.0))
    assert p.health.state == HEALTHY
    nan = GpsFix(stamp=5.0, lat=math.nan, lon=8.0, alt=0.0, status=0, covariance=(1.0,) * 9, covariance_type=2)
    out = p.on_gps(nan)
    assert [type(o) for o in out] == [InputRejected, HealthChange] and out[1].state == LOST
    assert out[0].key == "gps_invalid_position"
    assert p.status()["health"]["nan_fixes"] == 1


def test_empty_inputs_and_status(world, table):
    p = Pipeline(CFG, FakeOracleEncoder(world), table)
    assert p.process_pending() == []
    st = p.status()
    assert st["health"]["state"] == LOST and st["counts"]["frames_processed"] == 0 and st["table"]["tiles"] > 0
    assert p.on_odometry(Odometry(stamp=1.0, x=0, y=0, yaw=0, v=0, yaw_rate=0)) == []


def test_latest_frame_wins_and_bad_frames_are_rejected(world, table):
    p = Pipeline(CFG, FakeOracleEncoder(world), table)
    for i in range(3):
        p.submit_frame(fake_frame(1.0 + i, 0.0, 0.0))
    out = p.process_pending()
    assert p.counts["frames_dropped"] == 2 and p.counts["frames_processed"] == 1 and len(out) == 1
    p.on_frame(CameraFrame(stamp=4.0, image=np.zeros((4, 4), np.uint8)))
    assert p.counts["frames_rejected"] == 1


def test_fingerprint_mismatch_is_a_clear_error(world, table):
    with pytest.raises(FingerprintMismatchError, match="rebuild the table") as exc:
        Pipeline(CFG, FakeOracleEncoder(world, aerial_fingerprint="other"), table)
    assert isinstance(exc.value, GeolocError)


def test_callbacks_never_wait_for_the_encoder(world, table):
    p = Pipeline(CFG, FakeOracleEncoder(world, delay_s=0.2), table)
    worst = []

    def gps_thread():
        for i in range(40):
            t0 = time.perf_counter()
            p.on_odometry(Odometry(stamp=100.0 + i * 0.05, x=i * 0.4, y=0, yaw=0, v=8, yaw_rate=0))
            worst.append(time.perf_counter() - t0)
            time.sleep(0.01)

    th = threading.Thread(target=gps_thread)
    th.start()
    for i in range(3):
        p.on_frame(fake_frame(100.0 + i, 0.0, 0.0))
    th.join()
    assert max(worst) < 0.15  # the encoder takes 0.2 s per frame; callbacks are not blocked by it


def test_forward_camera_heading_bins_track_position_and_yaw(tmp_path):
    from fakes import FakeWorld

    world = FakeWorld(seed=2, heading_bins=8)
    table = world.write_table(tmp_path / "pinhole.gltab", half_size_m=260.0)
    drive = Drive(duration_s=60.0, seed=6)
    p = Pipeline(CFG, FakeOracleEncoder(world, flip_prob=0.1, wrong_prob=0.1), table)
    out = feed(p, drive.events(table.frame, outages=[(20.0, 60.0)]))
    err = errors(out, drive, 20.0, 60.0)
    assert np.median(err[:, 1]) < 6.0
    last = [o for o in out if isinstance(o, Estimate)][-1]
    true_yaw = math.radians(90.0 - drive.heading_deg(last.stamp - 1000.0))
    assert last.yaw is not None and abs(math.remainder(last.yaw - true_yaw, 2 * math.pi)) < math.radians(20)


@pytest.mark.parametrize("relocalizer", [False, True])
def test_panorama_heading_hypotheses_on_cold_start(world, table, relocalizer):
    """Unknown heading: the panorama is encoded at 8 headings; the right one wins and seeds the yaw. Once the
    heading is known, one encoding per frame; while lost (never trusted here: no CameraInfo) the relocalizer adds
    the other 7 headings for one frame per ``relocalize_spacing_m`` of driving."""
    drive = Drive(duration_s=30.0, seed=8)
    enc = FakeOracleEncoder(world, flip_prob=0.08, heading_aware=True)
    cfg = CFG if relocalizer else GeolocConfig.from_flat({"integrity.relocalize_headings": 0}, base=CFG)
    p = Pipeline(cfg, enc, table)
    out = feed(p, [ev for ev in drive.events(table.frame) if ev[1] != "gps"])
    err = errors(out, drive, 15.0, 30.0)
    assert np.median(err[:, 1]) < 6.0
    last = [o for o in out if isinstance(o, Estimate)][-1]
    true_yaw = math.radians(90.0 - drive.heading_deg(last.stamp - 1000.0))
    assert last.yaw is not None and abs(math.remainder(last.yaw - true_yaw, 2 * math.pi)) < math.radians(20)
    frames = p.counts["frames_processed"]
    kept = p._odometer_m / CFG.integrity.relocalize_spacing_m + 1 if relocalizer else 0
    assert frames < enc.calls <= frames + 7 * (8 + kept)  # (8: frames while the heading is still unknown)


def test_odometry_scale_is_learned_while_gps_is_good(world, table):
    drive = Drive(duration_s=90.0, seed=3)  # odometry reads 2 % long and its yaw drifts +0.002 rad/s
    p = Pipeline(GeolocConfig(), FakeOracleEncoder(world), table)
    feed(p, drive.events(table.frame))
    f = p.status()["filter"]
    assert abs(f["odometry_scale"] - 1 / 1.02) < 0.015 and f["yaw_rate_bias"] > 0.0


def test_replays_are_deterministic(world, table):
    drive = Drive(duration_s=30.0, seed=9)
    events = drive.events(table.frame, outages=[(10.0, 30.0)])
    runs = []
    for _ in range(2):
        out = feed(Pipeline(CFG, FakeOracleEncoder(world, flip_prob=0.1, seed=4), table), events)
        runs.append([(o.stamp, o.east, o.north) for o in out if isinstance(o, Estimate)])
    assert runs[0] == runs[1] and len(runs[0]) > 100


@pytest.mark.parametrize("with_odometry", [True, False])
def test_frames_advance_the_gps_timeout_only_without_odometry(world, table, with_odometry):
    """Live, a depth-1 camera subscription hands over its newest frame while fixes wait in a queue: a frame stamped
    2 s after the last fix must not time GPS out when odometry (queued like GPS) keeps the clock; without odometry,
    frames are the only clock and do."""
    p = Pipeline(GeolocConfig(), FakeOracleEncoder(world), table)
    for i in range(60):  # 6 s of healthy 10 Hz GPS
        t = 100.0 + i * 0.1
        p.on_gps(gps_fix(table.frame, t, 0.0, 0.0))
        if with_odometry:
            p.on_odometry(Odometry(stamp=t, x=0, y=0, yaw=0, v=0, yaw_rate=0))
    assert p.health.state == HEALTHY
    p.submit_frame(fake_frame(107.9, 0.0, 0.0))
    changes = [r for r in p.process_pending() if isinstance(r, HealthChange)]
    assert (p.health.state == HEALTHY) == with_odometry and bool(changes) != with_odometry


def test_warm_up_loads_the_kernels_and_leaves_no_state(world, table):
    """The node warms the pipeline up on configure, so that the first camera frame does not stall every callback
    while numba loads its kernels (0.7 s measured): warm_up must leave the pipeline as it found it."""
    from geoloc_node import hamming_kernels

    p = Pipeline(GeolocConfig(), FakeOracleEncoder(world), table)
    before = dict(p.counts)
    p.warm_up()
    assert hamming_kernels.window_all.signatures and hamming_kernels.window_topk.signatures
    assert p.counts == before and not p.filter.initialized and p.health.state == LOST


def test_the_view_change_between_frames_is_measured_at_matching_headings(world, table):
    """``Pipeline._note_view_change`` hands the monitor the odometry moved and turned between two frames and the
    share of code bits that changed (median over the headings both were encoded at); frames encoded at other
    headings are not compared, and a change of the encoded heading counts as turning."""
    from geoloc_node.track_match import TrackFrame

    p = Pipeline(GeolocConfig(), FakeOracleEncoder(world), table)
    seen = []
    p.integrity.note_view_change = lambda *args: seen.append(args)
    rng = np.random.default_rng(3)
    nbytes = table.bits // 8
    codes = rng.integers(0, 256, (2, nbytes), dtype=np.uint8)

    def view(stamp, odometer, yaw, c, headings):
        p._note_view_change(TrackFrame(stamp, odometer, (0.0, 0.0, yaw), c[0], 0), c, headings)

    view(1.0, 10.0, 0.0, codes, [0.0, 180.0])
    changed = codes.copy()
    changed[:, : nbytes // 4] ^= 0xFF  # a quarter of the bits of each row
    view(1.2, 10.0, 0.0, changed, [0.0, 180.0])
    assert seen[-1] == (1.2, 0.0, 0.0, pytest.approx(0.25))
    view(1.4, 10.5, 0.1, changed, [0.0, 180.0])
    assert seen[-1][1:3] == (pytest.approx(0.5), pytest.approx(math.degrees(0.1))) and seen[-1][3] == 0.0
    n = len(seen)
    view(1.6, 10.5, 0.1, np.vstack([changed] * 4), [0.0, 90.0, 180.0, 270.0])  # the relocalizer's frame: skipped
    assert len(seen) == n
    view(1.8, 10.5, 0.1, changed[:1], [30.0])
    view(2.0, 10.5, 0.1, changed[:1], [40.0])  # the filter's heading moved by 10 degrees: turning
    assert seen[-1][2] == pytest.approx(10.0)


def test_a_view_that_jumps_while_driving_withdraws_trust_at_that_frame(world, table):
    """The camera suddenly sees a place 290 m away while odometry goes on as before (a vehicle carried elsewhere, as
    the pipeline sees it): the estimate made with the first frame processed after the jump is not trusted, and the
    monitor knows the vehicle moved unseen (only new driving may restore trust)."""
    drive = Drive(duration_s=60.0, seed=5)
    jump = 1050.0
    events = []
    for stamp, kind, rec in drive.events(table.frame, outages=[(20.0, 60.0)]):
        if kind == "frame" and stamp >= jump:  # frames from 40 s further round the loop
            t = stamp - 1000.0
            e, n = drive.truth(t + 40.0)
            rec = fake_frame(stamp, e, n, drive.heading_deg(t + 40.0))
        events.append((stamp, kind, rec))
    # the fake frames carry no camera to check against the model (CameraInfo): not this test's subject
    cfg = GeolocConfig.from_flat({"tracking.n_particles": 600, "integrity.require_camera_info": False})
    p = Pipeline(cfg, FakeOracleEncoder(world, flip_prob=0.05), table)
    out = feed(p, [ev for ev in events if ev[0] < jump])
    before = [o for o in out if isinstance(o, Estimate) and o.stamp > jump - 2.0]
    assert before and all(o.trustworthy for o in before) and not p.integrity.moved_unseen
    processed = p.counts["frames_processed"]
    out = []
    for ev in (ev for ev in events if ev[0] >= jump):  # up to the first frame processed after the jump
        out += feed(p, [ev])
        if p.counts["frames_processed"] > processed:
            break
    assert not out[-1].trustworthy and p.integrity.moved_unseen  # moved_unseen: set by the view-jump check alone
    after = feed(p, [ev for ev in events if out[-1].stamp < ev[0] < jump + 5.0])
    assert not any(o.trustworthy for o in after if isinstance(o, Estimate))
