import json
import math

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from geoloc_node.synth.drive import SIDECAR, DriveConfig, DriveError, parse_fault, record_drive
from geoloc_node.synth.render import RenderStyle, render_panorama, render_pinhole

FAULTS = [("outage", 2.0, 3.0), ("no_fix", 3.5, 4.0), ("frozen", 4.5, 5.5), ("jump", 6.0, 7.0),
          ("cov_blowup", 7.5, 8.0)]


@pytest.fixture(scope="module")
def drive_bag(small_world, tmp_path_factory):
    bag = tmp_path_factory.mktemp("drive") / "bag"
    config = DriveConfig(duration_s=10.0, seed=3, gps_faults=FAULTS, randomize=False, compressed_images=True)
    summary = record_drive(small_world, bag, config)
    return bag, config, summary


def _read_all(bag):
    messages = {}
    with AnyReader([bag]) as reader:
        for connection, timestamp, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            messages.setdefault(connection.topic, []).append((timestamp, msg))
    return messages


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def test_bag_holds_the_topics_at_their_rates(drive_bag):
    bag, config, summary = drive_bag
    messages = _read_all(bag)
    assert set(messages) == {"/camera/image_raw", "/camera/image_raw/compressed", "/camera/camera_info", "/gps/fix",
                             "/odom", "/ground_truth/fix", "/ground_truth/pose"}
    for topic, rate in [("/camera/image_raw", 10), ("/odom", 50), ("/ground_truth/pose", 10)]:
        stamps = np.array([_stamp(m) for _, m in messages[topic]])
        assert len(stamps) == int(config.duration_s * rate) + 1, topic
        assert np.allclose(np.diff(stamps), 1.0 / rate, atol=1e-6), topic
        # Header stamps are the log times.
        assert np.allclose(stamps, np.array([t for t, _ in messages[topic]]) * 1e-9, atol=1e-6)
    gps_stamps = np.array([_stamp(m) for _, m in messages["/gps/fix"]]) - config.start_time_s
    assert np.allclose(np.diff(gps_stamps)[gps_stamps[1:] < 2.0], 0.2, atol=1e-6)
    assert summary["topics"]["/gps/fix"] == len(gps_stamps)
    image = messages["/camera/image_raw"][0][1]
    assert (image.encoding, image.height, image.width, image.step) == ("rgb8", 128, 512, 1536)
    odom = messages["/odom"][0][1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    assert messages["/ground_truth/pose"][0][1].header.frame_id == "map"


def test_gps_faults_are_where_they_were_asked(drive_bag, small_world):
    bag, config, _ = drive_bag
    messages = _read_all(bag)
    truth = {round(_stamp(m) - config.start_time_s, 3): m for _, m in messages["/ground_truth/fix"]}
    frame = small_world.frame
    frozen_positions = set()
    for _, fix in messages["/gps/fix"]:
        t = _stamp(fix) - config.start_time_s
        assert fix.status.service == 1 and fix.header.frame_id == "gps"
        assert not (2.0 <= t < 3.0), "a fix during the outage"
        gt = truth[round(t, 3)]
        if 3.5 <= t < 4.0:
            assert fix.status.status == -1 and math.isnan(fix.latitude) and fix.position_covariance_type == 0
            continue
        assert fix.status.status == 0 and fix.position_covariance_type == 2
        e, n = frame.to_en(fix.latitude, fix.longitude)
        e_gt, n_gt = frame.to_en(gt.latitude, gt.longitude)
        error = math.hypot(e - e_gt, n - n_gt)
        if 4.5 <= t < 5.5:
            frozen_positions.add((fix.latitude, fix.longitude))
        elif 6.0 <= t < 7.0:
            assert abs(error - config.jump_m) < 15.0
        elif 7.5 <= t < 8.0:
            assert fix.position_covariance[0] >= 50.0 ** 2
        else:
            assert error < 12.0 and fix.position_covariance[0] < 10.0
    assert len(frozen_positions) == 1


def test_ground_truth_agrees_with_the_rendered_images(drive_bag, small_world):
    bag, config, _ = drive_bag
    messages = _read_all(bag)
    images = messages["/camera/image_raw"]
    poses = messages["/ground_truth/pose"]
    fixes = messages["/ground_truth/fix"]
    for index in (0, len(images) // 2, len(images) - 1):
        image, pose, fix = images[index][1], poses[index][1], fixes[index][1]
        assert _stamp(image) == _stamp(pose) == _stamp(fix)
        p, q = pose.pose.position, pose.pose.orientation
        yaw = 2 * math.atan2(q.z, q.w)
        heading = (90.0 - math.degrees(yaw)) % 360.0
        expected = render_panorama(small_world, p.x, p.y, heading, size=(128, 512), style=RenderStyle())
        got = np.frombuffer(image.data, np.uint8).reshape(128, 512, 3)
        assert np.abs(got.astype(int) - expected).mean() < 1.0
        lat, lon = small_world.frame.to_latlon(p.x, p.y)
        assert abs(lat - fix.latitude) < 1e-9 and abs(lon - fix.longitude) < 1e-9
        assert abs(np.hypot(p.x, p.y)) < small_world.config.size_m / 2


def test_bag_opens_with_mcap_ros2_and_carries_the_origin(drive_bag, small_world):
    pytest.importorskip("mcap_ros2", reason="mcap-ros2-support is a dev extra (pip install mcap-ros2-support)")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    bag, config, _ = drive_bag
    (mcap_file,) = bag.glob("*.mcap")
    counts = {}
    with open(mcap_file, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _schema, channel, _message, ros_msg in reader.iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == "/gps/fix":
                assert ros_msg.status.service == 1
    assert counts["/camera/image_raw"] == 101 and counts["/odom"] == 501
    sidecar = json.loads((bag / SIDECAR).read_text())
    assert sidecar["origin"] == {"lat": small_world.config.origin_lat, "lon": small_world.config.origin_lon}
    assert len(sidecar["route_en"]) >= 2
    assert "geoloc_node.synth" in (bag / "metadata.yaml").read_text()


def test_sqlite3_humble_pinhole_variant(small_world, tmp_path):
    config = DriveConfig(duration_s=1.0, camera="pinhole", image_size=(60, 80), hfov_deg=70.0, storage="sqlite3",
                         distro="humble", seed=4)
    record_drive(small_world, tmp_path / "bag", config)
    assert list((tmp_path / "bag").glob("*.db3"))
    messages = _read_all(tmp_path / "bag")
    info = messages["/camera/camera_info"][0][1]
    assert info.distortion_model == "plumb_bob" and info.width == 80
    assert abs(info.k[0] - 40 / math.tan(math.radians(35))) < 1e-9
    image = messages["/camera/image_raw"][0][1]
    pose = messages["/ground_truth/pose"][0][1]
    heading = (90.0 - math.degrees(2 * math.atan2(pose.pose.orientation.z, pose.pose.orientation.w))) % 360
    assert image.height == 60
    assert render_pinhole(small_world, pose.pose.position.x, pose.pose.position.y, heading, 70.0, (60, 80)).shape \
        == (60, 80, 3)


def test_bad_drive_input_is_refused_and_leaves_nothing(small_world, tmp_path):
    with pytest.raises(DriveError, match="duration_s"):
        record_drive(small_world, tmp_path / "a", DriveConfig(duration_s=0.0))
    with pytest.raises(DriveError, match="fault"):
        record_drive(small_world, tmp_path / "b", DriveConfig(gps_faults=[("meteor", 1.0, 2.0)]))
    with pytest.raises(DriveError, match="KIND:START_S:END_S"):
        parse_fault("outage-3")
    (tmp_path / "c").mkdir()
    with pytest.raises(DriveError, match="already exists"):
        record_drive(small_world, tmp_path / "c", DriveConfig(duration_s=1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_a_world_without_roads_has_no_route(small_world, tmp_path):
    import dataclasses

    from geoloc_node.synth.grid import RoadGraph

    roadless = dataclasses.replace(small_world, road_graph=RoadGraph(np.zeros((0, 2)), np.zeros((0, 2), np.int64),
                                                                     np.zeros(0)))
    with pytest.raises(DriveError, match="no roads"):
        record_drive(roadless, tmp_path / "bag", DriveConfig(duration_s=2.0))
    assert list(tmp_path.iterdir()) == []
