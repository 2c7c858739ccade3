import dataclasses
import json
import math
import os
from pathlib import Path

import pytest
from bagtools import drive_items, navsat, write_bag
from fakes import Drive, FakeOracleEncoder, gps_fix
from rosbags.highlevel import AnyReader

from geoloc_node import cli
from geoloc_node.config import GeolocConfig
from geoloc_node.messages import STATUS_FIX, STATUS_NO_FIX
from geoloc_node.records import GpsFix
from geoloc_node.replay import BagInputError, replay
from geoloc_node.report import compute_metrics, write_report

CFG = GeolocConfig.from_flat({"tracking.n_particles": 600})
REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real_bags"
if not REAL.exists():
    REAL = Path(os.environ.get("GEOLOC_REAL_BAGS", "/work/shared/fixtures/real_bags"))
needs_real = pytest.mark.skipif(not REAL.exists(), reason="real bag fixtures not available")


@pytest.fixture(scope="module")
def drive_bag(table, tmp_path_factory):
    drive = Drive(duration_s=50.0, seed=7)
    events = drive.events(table.frame, outages=[(15.0, 45.0)])
    path = tmp_path_factory.mktemp("bags") / "drive"
    write_bag(path, drive_items(events, table.frame, drive.truth))
    return path, drive


def read_counts(bag):
    with AnyReader([bag]) as r:
        return {c.topic: c.msgcount for c in r.connections}, sum(1 for _ in r.messages())


def test_replay_full_chain_with_report(world, table, drive_bag, tmp_path):
    bag, drive = drive_bag
    res = replay(bag, tmp_path / "out", CFG, FakeOracleEncoder(world, flip_prob=0.1), table, progress=False)
    assert res.mode == "full" and res.topics.camera == "/camera/image_raw" and res.topics.truth == "/ground_truth/fix"
    m = compute_metrics(res)
    io = m["inside_outage"]
    assert io["filter"]["median_m"] < 5.0 and io["availability"] > 0.95
    assert io["single_frame"]["n"] > 50 and io["odometry_only"]["n"] > 50
    assert m["health"]["false_lost"] == 0 and m["health"]["detection_delay_s"][0]["delay_s"] <= 1.0
    paths = write_report(res, m, tmp_path / "out", table=table)
    assert json.loads(paths["json"].read_text())["inside_outage"]["filter"]["n"] > 0 and paths["png"].stat().st_size
    counts, total = read_counts(tmp_path / "out" / "bag")
    mcap_ros2 = pytest.importorskip("mcap_ros2.reader")  # what Foxglove-style tools decode with
    decoded = sum(1 for _ in mcap_ros2.read_ros2_messages(next((tmp_path / "out" / "bag").glob("*.mcap"))))
    assert decoded == total
    assert counts["/geoloc_node/fix"] > 100 and counts["/geoloc_node/active"] >= 2 and counts["/diagnostics"] > 10
    assert counts["/geoloc_node/markers"] > 10 and total == res.counts["output_messages"]


def test_replay_bag_carries_the_estimates_as_the_node_publishes_them(world, table, tmp_path):
    """~/fix in the replay bag follows the node's conventions (docs/ros.md): frame base_link, service set, altitude
    from the last GPS fix, covariance DIAGONAL_KNOWN/KNOWN with the up variance, FIX never with NaN; /diagnostics
    carries the node's "geoloc_node: localization" status."""
    drive = Drive(duration_s=20.0, seed=7)
    events = [(t, k, dataclasses.replace(r, alt=410.0) if k == "gps" else r)
              for t, k, r in drive.events(table.frame, outages=[(8.0, 20.0)])]
    write_bag(tmp_path / "b", drive_items(events, table.frame, drive.truth))
    replay(tmp_path / "b", tmp_path / "o", CFG, FakeOracleEncoder(world, flip_prob=0.1), table, progress=False)
    with AnyReader([tmp_path / "o" / "bag"]) as r:
        got: dict = {}
        for c, _, raw in r.messages(connections=[c for c in r.connections
                                                 if c.topic in ("/geoloc_node/fix", "/diagnostics")]):
            got.setdefault(c.topic, []).append(r.deserialize(raw, c.msgtype))
    fixes = got["/geoloc_node/fix"]
    assert len(fixes) > 50 and STATUS_FIX in {f.status.status for f in fixes}
    assert {f.status.status for f in fixes} <= {STATUS_FIX, STATUS_NO_FIX}
    for f in fixes:
        assert f.header.frame_id == "base_link" and f.status.service == 0 and f.altitude == 410.0
        assert f.position_covariance_type in (2, 3) and f.position_covariance[8] == 1e4
        if f.status.status == 0:
            assert all(math.isfinite(v) for v in (f.latitude, f.longitude, *f.position_covariance))
    assert {s.name for d in got["/diagnostics"] for s in d.status} == {
        "geoloc_node: localization", "geoloc_node: inputs", "geoloc_node: camera"}  # the node's statuses


def test_injected_outage_uses_dropped_fixes_as_truth(world, table, drive_bag, tmp_path):
    bag, _ = drive_bag
    res = replay(bag, tmp_path / "o", CFG, FakeOracleEncoder(world, flip_prob=0.1), table, outages=[(3.0, 12.0)],
                 progress=False)
    m = compute_metrics(res)
    assert m["evaluation_spans_s"][0] == [3.0, 12.0]
    assert res.counts["gps_dropped_by_outage"] == 90 and m["inside_outage"]["filter"]["median_m"] < 8.0


def test_an_outage_past_the_end_of_the_bag_ends_with_it(world, table, drive_bag, tmp_path):
    """``--gps-outage 30:1000`` on a 50 s bag: the evaluation span stops at the last message, so availability is not
    diluted by the 950 s that the bag does not have."""
    bag, _ = drive_bag
    res = replay(bag, tmp_path / "o", CFG, FakeOracleEncoder(world, flip_prob=0.1), table, outages=[(30.0, 1000.0)],
                 progress=False)
    m = compute_metrics(res)
    (a, b), = m["evaluation_spans_s"]
    assert a == 30.0 and 49.0 < b <= 50.5
    assert m["inside_outage"]["availability"] > 0.9


class _Crash(BaseException):
    """Something the pipeline does not catch (a bug, an out-of-memory kill by the runtime)."""


class _Interrupting(FakeOracleEncoder):
    def __init__(self, *a, exc=KeyboardInterrupt, after=20, **k):
        super().__init__(*a, **k)
        self.exc, self.after = exc, after

    def encode(self, images):
        if self.calls >= self.after:
            raise self.exc()
        return super().encode(images)


def test_ctrl_c_leaves_a_valid_closed_bag(world, table, drive_bag, tmp_path):
    bag, _ = drive_bag
    res = replay(bag, tmp_path / "o", CFG, _Interrupting(world), table, progress=False)
    assert res.interrupted
    counts, total = read_counts(tmp_path / "o" / "bag")
    assert total == res.counts["output_messages"] > 0


def test_crash_still_closes_the_bag(world, table, drive_bag, tmp_path):
    bag, _ = drive_bag
    with pytest.raises(_Crash):
        replay(bag, tmp_path / "o", CFG, _Interrupting(world, exc=_Crash), table, progress=False)
    counts, total = read_counts(tmp_path / "o" / "bag")
    assert total > 0 and "/geoloc_node/fix" in counts


def _gps_items(fixes):
    return [(f.stamp, "/gps/fix", "sensor_msgs/msg/NavSatFix", navsat(f)) for f in fixes]


def test_bad_stamps_nan_fixes_and_empty_topics_in_a_bag(table, tmp_path):
    f = table.frame
    fixes = [gps_fix(f, 100.0 + 0.1 * i, 0.0, 0.0) for i in range(60)]
    items = _gps_items(fixes)
    items.append((103.05, *_gps_items([fixes[29]])[0][1:]))  # the same header stamp twice: a duplicate
    items.append((104.05, *_gps_items([gps_fix(f, 102.55, 0.0, 0.0)])[0][1:]))  # recorded 1.5 s late: out of order
    nan = GpsFix(stamp=106.55, lat=math.nan, lon=math.nan, alt=0.0, status=0, covariance=(1.0,) * 9,
                 covariance_type=2)
    items += _gps_items([nan])
    items.sort(key=lambda x: x[0])  # record order
    bag = write_bag(tmp_path / "b", items, extra_topics=[("/odom", "nav_msgs/msg/Odometry"),
                                                         ("/camera/image_raw", "sensor_msgs/msg/Image")])
    res = replay(bag, tmp_path / "o", CFG, progress=False)  # empty odometry and camera topics
    c = res.status["counts"]
    assert (c["duplicate_stamps"], c["out_of_order_stamps"], c["time_resets"]) == (1, 1, 0)
    assert res.status["health"]["nan_fixes"] == 1
    assert res.mode == "health-only" and res.topics.camera == "/camera/image_raw"
    m = compute_metrics(res)
    assert m["counts"]["gps_fixes"] == 61


def test_looping_bag_resets(table, tmp_path):
    f = table.frame
    fixes = [gps_fix(f, 100.0 + 0.1 * i, 0.0, 0.0) for i in range(50)]
    loop = [gps_fix(f, 100.0 + 0.1 * i, 0.0, 0.0) for i in range(50)]
    items = [(100.0 + 0.1 * i, *x[1:]) for i, x in enumerate(_gps_items(fixes) + _gps_items(loop))]
    # record times increase, header stamps jump back by 5 s half way
    bag = tmp_path / "loop"
    with __import__("rosbags.rosbag2", fromlist=["Writer"]).Writer(bag, version=8) as w:
        from bagtools import TS

        c = w.add_connection("/gps/fix", "sensor_msgs/msg/NavSatFix", typestore=TS)
        for i, (_, _, typ, msg) in enumerate(items):
            w.write(c, int((100.0 + 0.1 * i) * 1e9), TS.serialize_cdr(msg, typ))
    res = replay(bag, tmp_path / "o", CFG, progress=False, reorder_s=0.0)
    assert res.status["counts"]["time_resets"] == 1


def test_not_a_bag_and_wrong_format_exit_2(tmp_path, capsys):
    (tmp_path / "x.bag").write_bytes(b"#ROSBAG V2.0\n")
    assert cli.main(["replay", str(tmp_path / "x.bag"), "--no-progress", "--out", str(tmp_path / "o")]) == 2
    assert "not a rosbag2" in capsys.readouterr().err
    with pytest.raises(BagInputError):
        replay(tmp_path / "missing", tmp_path / "o", CFG, progress=False)


@needs_real
def test_real_wrong_format_bag_exit_2(tmp_path, capsys):
    rc = cli.main(["replay", str(REAL / "rosbag2_wrong_rmw_test_sqlite3"), "--no-progress", "--out",
                   str(tmp_path / "o")])
    assert rc == 2 and "wrong_format" in capsys.readouterr().err


@needs_real
@pytest.mark.parametrize("name", ["gps_nav_ws_bag", "gps_nav_ws_bag2"])
def test_real_gps_only_bags_run_the_health_monitor(name, tmp_path):
    res = replay(REAL / name, tmp_path / "o", CFG, progress=False)
    assert res.mode == "health-only" and any("no camera" in w for w in res.warnings)
    assert res.status["counts"]["gps_fixes"] > 100 and res.health[0][1] == "HEALTHY"
    m = compute_metrics(res)
    assert m["health"]["false_lost"] == 0


@needs_real
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("topic,text", [("/test/sensor_msgs/image", "carries 30 bytes"),
                                        ("/test/sensor_msgs/compressed_image", "could not be decoded")])
def test_real_lying_image_and_fake_jpeg_are_counted(storage, topic, text, world, table, tmp_path):
    from geoloc_node.replay import Topics

    res = replay(REAL / f"rosbags_rs_test_bag_{storage}", tmp_path / "o", CFG, FakeOracleEncoder(world), table,
                 topics=Topics(camera=topic), progress=False)
    assert res.counts["camera_rejected"] == 2 and res.status["counts"]["frames_rejected"] == 2
    assert any(text in w for w in res.warnings)


@needs_real
@pytest.mark.parametrize("name", ["rosbag2_topics_and_service_events_mcap", "rosbag2_cdr_test_mcap",
                                  "ros2bag_tools_images.bag"])
def test_real_odd_bags_replay_without_error(name, tmp_path):
    rc = cli.main(["replay", str(REAL / name), "--no-progress", "--out", str(tmp_path / "o")])
    assert rc == 0
    assert (tmp_path / "o" / "report.json").exists()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_replays_what_it_can_or_exits_2(table, tmp_path, storage):
    f = table.frame
    bag = write_bag(tmp_path / "b", _gps_items([gps_fix(f, 100.0 + 0.1 * i, 0.0, 0.0) for i in range(3000)]),
                    storage=storage)
    data = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    rc = cli.main(["replay", str(bag), "--no-progress", "--out", str(tmp_path / "o")])
    assert rc in (0, 2)
    if rc == 0:
        assert (tmp_path / "o" / "report.json").exists()


class _ClosableFakeEncoder(FakeOracleEncoder):
    """FAKE: unusable once closed, as a runtime session is (ONNX Runtime's encode fails after close())."""

    closed = False

    def close(self):
        self.closed = True

    def encode(self, images, headings_deg=None):
        if self.closed:
            raise RuntimeError("encoder closed")
        return super().encode(images, headings_deg)


def test_replay_leaves_the_callers_encoder_open_for_another_replay(world, table, drive_bag, tmp_path):
    """The encoder belongs to whoever loaded it: a replay that closed it made the next replay with the same encoder
    reject every frame (a replay without the camera, only its last_error said so)."""
    bag, _ = drive_bag
    enc = _ClosableFakeEncoder(world, flip_prob=0.1)
    first = replay(bag, tmp_path / "a", CFG, enc, table, progress=False)
    second = replay(bag, tmp_path / "b", CFG, enc, table, progress=False)
    assert not enc.closed
    processed = [r.status["counts"]["frames_processed"] for r in (first, second)]
    assert processed[0] > 50 and processed[1] == processed[0]
