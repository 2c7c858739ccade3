"""Field robustness (issue 19) as a user meets it: a recorded rosbag2 with one bad message replayed through the same
Pipeline and Session as the node (``geoloc replay``), and the pipeline fed a restarted odometry source.

Each bag is a fake drive (tests/pipeline/fakes.py: fake world, fake oracle encoder, camera frames that carry their
position) written with rosbags, with one message edited the way a broken driver or receiver sends it. Drive time
starts at 1000 s (``T0``).
"""

import dataclasses
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bagtools import TS, drive_items, navsat, write_bag
from fakes import Drive, FakeOracleEncoder, gps_fix
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader

import geoloc_node.encoders as encoders
from geoloc_node import cli
from geoloc_node.config import GeolocConfig
from geoloc_node.health import HEALTHY, LOST, HealthChange
from geoloc_node.pipeline import Estimate, InputRejected, Pipeline
from geoloc_node.replay import replay
from geoloc_node.report import compute_metrics, write_report

CFG = GeolocConfig.from_flat({"tracking.n_particles": 400})
T0 = 1000.0  # fakes.Drive stamps its events from here
ODOMETRY_FAULTS = ("odometry_position_out_of_range", "odometry_position_jump", "odometry_implausible_twist")


# -- helpers ---------------------------------------------------------------------------------------------------------
def edited_drive_bag(path, table, drive, events, edits=None):
    """Write ``events`` as a bag (camera, GPS, odometry, ground truth); ``edits`` maps the index of an event to the
    record that replaces it. The bag's record time stays the event's time: a broken header stamp is recorded when it
    arrives, as a real recorder does."""
    edits = edits or {}
    events = [(t, k, edits.get(i, r)) for i, (t, k, r) in enumerate(events)]
    return write_bag(path, drive_items(events, table.frame, drive.truth))


def index_of(events, kind, t):
    """Index of the first event of ``kind`` at or after drive time ``t``."""
    return next(i for i, (s, k, _) in enumerate(events) if k == kind and s >= T0 + t)


def fake_replay(world, table, bag, out, **kwargs):
    # a fresh encoder per replay: its bit flips come from its own generator, so two replays see the same codes
    return replay(bag, out, CFG, FakeOracleEncoder(world, flip_prob=0.1), table, progress=False, **kwargs)


def lost_after_first_healthy(health_rows):
    """The LOST transitions after GPS first became HEALTHY (it starts LOST until fixes have been good a while)."""
    first = next((i for i, h in enumerate(health_rows) if h.state == HEALTHY), None)
    assert first is not None, f"GPS never became HEALTHY: {health_rows}"
    return [h for h in health_rows[first:] if h.state == LOST]


def after_gps_healthy(res):
    """Estimates from the moment GPS first became HEALTHY (before it, the cold start from the camera is still
    converging)."""
    t = next(h.stamp for h in res.health if h.state == HEALTHY)
    return [r for r in res.estimates if r.stamp > t]


def errors_to_truth(rows, drive):
    """Distance (m) of each estimate from the drive's true position at its stamp."""
    return np.array([math.hypot(r.east - drive.truth(r.stamp - T0)[0], r.north - drive.truth(r.stamp - T0)[1])
                     for r in rows])


@pytest.fixture(scope="module")
def healthy_drive(table):
    """30 s with healthy GPS all along (frames are recorded; the pipeline skips them while GPS is healthy)."""
    drive = Drive(duration_s=30.0, seed=11)
    return drive, drive.events(table.frame)


@pytest.fixture(scope="module")
def outage_drive(table):
    """30 s with GPS silent from 10 s to 25 s: odometry and the camera carry the estimate."""
    drive = Drive(duration_s=30.0, seed=12)
    return drive, drive.events(table.frame, outages=[(10.0, 25.0)])


# -- 1. a fix with a negative covariance -----------------------------------------------------------------------------
def test_fix_with_negative_covariance_is_counted_and_the_report_is_written(world, table, healthy_drive, tmp_path):
    drive, events = healthy_drive
    i = index_of(events, "gps", 15.0)
    bad = dataclasses.replace(events[i][2], covariance=(-4.0, 0.0, 0.0, 0.0, -4.0, 0.0, 0.0, 0.0, 16.0))
    assert bad.covariance_type == 2  # DIAGONAL_KNOWN: the receiver claims these variances mean something
    bag = edited_drive_bag(tmp_path / "bag", table, drive, events, {i: bad})

    res = fake_replay(world, table, bag, tmp_path / "out")

    assert not res.interrupted
    assert res.status["counts"]["gps_invalid_covariance"] == 1
    assert res.counts["problems"]["gps_invalid_covariance"] == 1
    assert res.status["health"]["invalid_fixes"] == 1
    assert not any(r.stamp == bad.stamp and r.source == "gps" for r in res.estimates)  # never fused
    assert np.isfinite([(r.east, r.north, r.std_m) for r in res.estimates]).all()
    assert errors_to_truth(after_gps_healthy(res), drive).max() < 15.0
    paths = write_report(res, compute_metrics(res), tmp_path / "out", table=table)
    report = json.loads(paths["json"].read_text())
    assert report["counts"]["gps_invalid_covariance"] == 1
    assert report["counts"]["problems"]["gps_invalid_covariance"] == 1
    assert any("invalid fix covariance" in w for w in report["warnings"])


# -- 2. one NaN odometry message ---------------------------------------------------------------------------------------
def test_nan_odometry_is_counted_and_the_next_odometry_is_used(world, table, outage_drive, tmp_path):
    drive, events = outage_drive
    i = index_of(events, "odom", 15.0)  # inside the outage: odometry moves the estimate
    bag = edited_drive_bag(tmp_path / "bag", table, drive, events, {i: dataclasses.replace(events[i][2], x=math.nan)})
    n_odom = sum(k == "odom" for _, k, _ in events)

    res = fake_replay(world, table, bag, tmp_path / "out")

    assert res.counts["problems"]["odometry_bad"] == 1
    assert res.counts["received"]["odometry"] == n_odom
    assert res.status["counts"]["odometry"] == n_odom - 1  # every other message, the next one included, was used
    assert not any(res.counts["problems"].get(k) for k in ODOMETRY_FAULTS)
    after = [r for r in res.estimates if r.stamp > events[i][0]]
    assert len(after) > 50 and np.isfinite([(r.east, r.north, r.std_m) for r in after]).all()
    assert any(r.source == "odometry" for r in after)
    assert np.median(errors_to_truth(after, drive)) < 8.0
    compute_metrics(res)


# -- 3. odometry at 1e15 m (or one absurd step) with healthy GPS -------------------------------------------------------
@pytest.mark.parametrize("offset_m,key", [(1e15, "odometry_position_out_of_range"),
                                          (1e5, "odometry_position_jump")])
def test_absurd_odometry_is_blamed_on_odometry_not_gps(world, table, healthy_drive, tmp_path, offset_m, key):
    drive, events = healthy_drive
    i = index_of(events, "odom", 15.0)
    odom = events[i][2]
    bag = edited_drive_bag(tmp_path / "bag", table, drive, events,
                           {i: dataclasses.replace(odom, x=odom.x + offset_m)})

    res = fake_replay(world, table, bag, tmp_path / "out")

    assert res.counts["problems"] == {key: 1}
    assert res.status["counts"][key] == 1
    assert lost_after_first_healthy(res.health) == []
    assert not any("jump" in h.reason for h in res.health)
    assert res.status["health"]["jumps"] == 0 and res.status["health"]["state"] == HEALTHY
    # the filter never moved by the absurd step
    assert errors_to_truth(after_gps_healthy(res), drive).max() < 15.0


# -- 4. one stale fix (stamped 0, or 30 s old) in a healthy drive; a sustained loop ----------------------------------
@pytest.mark.parametrize("stamp", [0.0, "30 s old"])
def test_single_stale_fix_is_dropped_without_reset_or_lost(world, table, healthy_drive, tmp_path, stamp):
    drive, events = healthy_drive
    i = index_of(events, "gps", 20.0)
    fix = events[i][2]
    stale = dataclasses.replace(fix, stamp=fix.stamp - 30.0 if stamp == "30 s old" else stamp)
    bag = edited_drive_bag(tmp_path / "bag", table, drive, events, {i: stale})

    res = fake_replay(world, table, bag, tmp_path / "out")

    c = res.status["counts"]
    assert c["time_resets"] == 0 and c["stale_stamps"] == 1
    assert res.counts["problems"] == {"stale_stamps": 1}
    assert lost_after_first_healthy(res.health) == []
    assert not any("reset" in w for w in res.warnings)
    assert res.status["health"]["state"] == HEALTHY
    assert errors_to_truth(after_gps_healthy(res), drive).max() < 15.0


def test_looping_drive_bag_still_resets_once(world, table, tmp_path):
    """A bag recorded with a looping player: every stream's header stamps jump back by the loop length at once while
    the record time goes on. Many messages agree: one reset, and GPS is healthy again afterwards."""
    drive = Drive(duration_s=15.0, seed=13)
    items = drive_items(drive.events(table.frame), table.frame, drive.truth)
    loop = [(t + 15.0, topic, typ, msg) for t, topic, typ, msg in items]  # same messages, recorded 15 s later
    bag = write_bag(tmp_path / "bag", items + loop)

    res = fake_replay(world, table, bag, tmp_path / "out")

    assert res.status["counts"]["time_resets"] == 1
    assert sum("state reset" in w for w in res.warnings) == 1
    assert res.health[-1].state == HEALTHY


# -- 5. a restarted odometry source ------------------------------------------------------------------------------------
def restarted(events, t_restart):
    """Odometry after ``t_restart`` as a restarted source publishes it: pose back at 0 (x, y and yaw), then the same
    motion in the new frame."""
    i = index_of(events, "odom", t_restart)
    o0 = events[i][2]
    c, s = math.cos(o0.yaw), math.sin(o0.yaw)
    out = list(events)
    for j in range(i, len(events)):
        t, k, o = events[j]
        if k == "odom":
            dx, dy = o.x - o0.x, o.y - o0.y
            out[j] = (t, k, dataclasses.replace(o, x=c * dx + s * dy, y=-s * dx + c * dy, yaw=o.yaw - o0.yaw))
    return out, i


def test_restarted_odometry_is_followed_without_moving_the_filter(table):
    """GPS drops out at 10 s, odometry restarts at 20 s (its pose ~160 m back at 0), GPS returns at 30 s. Without
    frames the estimate is dead reckoning: a jump of the odometry pose would be a jump of the estimate."""
    drive = Drive(duration_s=45.0, seed=14)
    events = [e for e in drive.events(table.frame, outages=[(10.0, 30.0)]) if e[1] != "frame"]
    events, i = restarted(events, 20.0)
    first_new = events[i][2]
    assert math.hypot(events[i - 2][2].x, events[i - 2][2].y) > 100.0  # the odometry pose jumps by this much
    reanchor = CFG.pipeline.odometry_reanchor_messages
    p = Pipeline(CFG, None, table)

    outs = []
    for stamp, kind, rec in events:
        out = p.on_gps(rec) if kind == "gps" else p.on_odometry(rec)
        outs += [(stamp, o) for o in out]

    rejected = [(s, o.key) for s, o in outs if isinstance(o, InputRejected)]
    new_track = sorted({e[0] for e in events[i:] if e[1] == "odom"})
    # the first reanchor-1 messages of the new track are refused as one absurd step each, then it is followed
    assert rejected == [(t, "odometry_position_jump") for t in new_track[:reanchor - 1]]
    assert p.counts["odometry"] == sum(k == "odom" for _, k, _ in events) - (reanchor - 1)
    assert first_new.stamp == new_track[0]

    est = [o for _, o in outs if isinstance(o, Estimate)]
    inside = [o for o in est if T0 + 10.5 < o.stamp < T0 + 30.0]
    assert inside and all(o.source == "odometry" for o in inside)
    assert len([o for o in inside if o.stamp > new_track[reanchor - 1]]) > 50  # estimates go on on the new track
    steps = np.hypot(np.diff([o.east for o in inside]), np.diff([o.north for o in inside]))
    assert steps.max() < 3.0  # 8 m/s at 10 Hz is 0.8 m per estimate; the odometry pose jumped by > 100 m
    err = errors_to_truth(inside, drive)
    assert err[-1] < 15.0  # still on the road at the end of the outage: the new track was followed

    changes = [o for _, o in outs if isinstance(o, HealthChange)]
    assert [c.state for c in changes] == [HEALTHY, LOST, HEALTHY]  # start, the outage, its end: nothing else
    assert not any("jump" in c.reason for c in changes) and p.health.counts["jumps"] == 0


def test_restarted_odometry_in_a_bag(world, table, tmp_path):
    """The same restart recorded in a bag with a camera: replay counts the refused steps and keeps tracking."""
    drive = Drive(duration_s=30.0, seed=15)
    events, i = restarted(drive.events(table.frame, outages=[(8.0, 30.0)]), 18.0)
    bag = write_bag(tmp_path / "bag", drive_items(events, table.frame, drive.truth))

    res = fake_replay(world, table, bag, tmp_path / "out")

    reanchor = CFG.pipeline.odometry_reanchor_messages
    assert res.counts["problems"] == {"odometry_position_jump": reanchor - 1}
    after = [r for r in res.estimates if r.stamp > events[i][0] + 1.0]
    assert len(after) > 50 and np.median(errors_to_truth(after, drive)) < 8.0


def test_fix_stamped_past_int32_seconds_does_not_stop_the_replay(table, tmp_path):
    f = table.frame
    items = [(f_.stamp, "/gps/fix", "sensor_msgs/msg/NavSatFix", navsat(f_))
             for f_ in (gps_fix(f, 100.0 + 0.1 * i, 0.0, 0.0) for i in range(100))]
    broken = navsat(gps_fix(f, 105.05, 0.0, 0.0))
    broken.header.stamp = TS.types["builtin_interfaces/msg/Time"](sec=2**31 - 1, nanosec=10**9)  # 2**31 s
    items.append((105.05, "/gps/fix", "sensor_msgs/msg/NavSatFix", broken))
    bag = write_bag(tmp_path / "bag", sorted(items, key=lambda x: x[0]))

    res = replay(bag, tmp_path / "out", CFG, progress=False)

    assert res.status["counts"]["future_stamps"] == 1 and res.status["health"]["state"] == HEALTHY


# -- 7. replay's output folders ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gps_bag(table, tmp_path_factory):
    """20 s of healthy GPS only (a health-only replay: quick)."""
    fixes = [gps_fix(table.frame, 100.0 + 0.1 * i, 2.0 * i * 0.1, 0.0) for i in range(200)]
    path = tmp_path_factory.mktemp("gps") / "my_drive"
    return write_bag(path, [(f.stamp, "/gps/fix", "sensor_msgs/msg/NavSatFix", navsat(f)) for f in fixes])


def test_default_output_folder_never_overwrites_an_earlier_replay(gps_bag, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["replay", str(gps_bag), "--no-progress"]) == 0
    first = tmp_path / "replay_my_drive"
    report = (first / "report.json").read_bytes()
    bag_files = {p.name: p.read_bytes() for p in (first / "bag").iterdir()}

    assert cli.main(["replay", str(gps_bag), "--no-progress"]) == 0

    second = tmp_path / "replay_my_drive.2"
    assert (second / "report.json").exists()
    assert (first / "report.json").read_bytes() == report
    assert {p.name: p.read_bytes() for p in (first / "bag").iterdir()} == bag_files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replay_my_drive", "replay_my_drive.2"]
    for out in (first, second):
        with AnyReader([out / "bag"]) as r:
            assert sum(1 for _ in r.messages()) > 0
    assert "replay_my_drive.2" in capsys.readouterr().out


def test_the_repo_ignores_replay_output_folders():
    """Replay run from the repo root writes replay_<bag>[.N] there: git must not offer it for commit."""
    root = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    names = ["replay_my_drive/report.json", "replay_my_drive.2/bag/bag_0.mcap"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=root, capture_output=True, text=True)
    assert ignored.stdout.split() == names


def test_out_folder_holding_files_is_refused_unless_forced(gps_bag, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("someone's notes")

    assert cli.main(["replay", str(gps_bag), "--no-progress", "--out", str(out)]) == 2

    err = capsys.readouterr().err
    assert "holds files" in err and "--force" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "someone's notes"
    assert cli.main(["replay", str(gps_bag), "--no-progress", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "report.json").read_text())["interrupted"] is False


# -- 8. warnings a user needs ------------------------------------------------------------------------------------------
@pytest.fixture()
def fake_model(world, monkeypatch):
    """`geoloc replay --table fake.gltab` loads the fake encoder that pairs with the fake table (in this process)."""
    monkeypatch.setattr(encoders, "load_encoder", lambda *a, **k: FakeOracleEncoder(world))


def far_gps_bag(path, table, lat, lon):
    """5 s of GPS fixes at (lat, lon), and an empty camera topic so that the full pipeline (with the table) runs."""
    fixes = [dataclasses.replace(gps_fix(table.frame, 100.0 + 0.1 * i, 0.0, 0.0), lat=lat, lon=lon) for i in range(50)]
    return write_bag(path, [(f.stamp, "/gps/fix", "sensor_msgs/msg/NavSatFix", navsat(f)) for f in fixes],
                     extra_topics=[("/camera/image_raw", "sensor_msgs/msg/Image")])


def replay_warnings(bag, table, out, capsys) -> list[str]:
    rc = cli.main(["replay", str(bag), "--table", str(table.path), "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("warning: ")]


def test_bag_far_from_the_table_warns(table, fake_model, tmp_path, capsys):
    # ~8,000 km south of the table (72 degrees of latitude)
    bag = far_gps_bag(tmp_path / "far", table, -24.6, table.frame.lon0)
    warning = next(w for w in replay_warnings(bag, table, tmp_path / "o", capsys) if "outside the region table" in w)
    # the distance shown is measured in the table's tangent plane: 6,035 km for these 8,000 km of ground
    assert float(re.search(r"([\d.]+) km outside", warning).group(1)) > 1000.0


def test_table_given_for_a_bag_without_camera_warns_it_is_unused(table, fake_model, gps_bag, tmp_path, capsys):
    rc = cli.main(["replay", str(gps_bag), "--table", str(table.path), "--no-progress", "--out", str(tmp_path / "o")])

    err = capsys.readouterr().err
    assert rc == 0
    assert "warning: no camera topic in this bag" in err and "region table and model given are unused" in err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["mode"] == "health-only"


# -- 9. a demo-like drive cut at 60 % of its bytes ---------------------------------------------------------------------
def last_record_stamp(bag_folder) -> float:
    """The latest record time in a bag (s). Our bags are written in time order, so a bag cut short keeps every message
    recorded before it (and maybe not all of those recorded at that very time)."""
    with Reader(bag_folder) as r:
        return max(t for _, t, _ in r.messages()) * 1e-9


def test_cut_drive_bag_replays_like_the_full_one_up_to_the_cut(world, table, tmp_path):
    drive = Drive(duration_s=60.0, seed=16)
    events = drive.events(table.frame, outages=[(15.0, 50.0)])
    full = write_bag(tmp_path / "full", drive_items(events, table.frame, drive.truth))
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "metadata.yaml").write_bytes((full / "metadata.yaml").read_bytes())
    mcap = next(full.glob("*.mcap"))
    data = mcap.read_bytes()
    (cut / mcap.name).write_bytes(data[: int(len(data) * 0.6)])

    res_full = fake_replay(world, table, full, tmp_path / "out_full")
    res_cut = fake_replay(world, table, cut, tmp_path / "out_cut")

    assert res_full.recovery is None and not res_cut.interrupted
    rec = res_cut.recovery
    assert rec is not None and rec["messages_lost"] and rec["recovered"] > 0
    assert any("unfinished bag recovered" in w for w in res_cut.warnings)
    t_end = last_record_stamp(rec["output"])
    assert T0 + 20.0 < t_end < T0 + 50.0  # the cut lies inside the outage: visual estimates before it
    upto = t_end - 1.0
    a = [r for r in res_full.estimates if r.stamp <= upto]
    b = [r for r in res_cut.estimates if r.stamp <= upto]
    assert len(a) > 200 and any(r.source == "visual" for r in a)
    assert [r.stamp for r in b] == [r.stamp for r in a]
    np.testing.assert_allclose([(r.east, r.north) for r in b], [(r.east, r.north) for r in a], rtol=0, atol=1e-9)
    assert res_cut.last_stamp < res_full.last_stamp
    m = compute_metrics(res_cut)
    assert m["recovery"]["messages_lost"] == rec["messages_lost"]

