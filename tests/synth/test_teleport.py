import json
import math

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader

from geoloc_node.cli import main
from geoloc_node.synth.drive import SIDECAR, DriveConfig, DriveError, parse_teleport, record_drive
from geoloc_node.synth.render import RenderStyle, render_panorama

T_JUMP, DISTANCE = 4.0, 100.0
SIZE = (32, 128)


def _config(**overrides) -> DriveConfig:
    base = dict(duration_s=8.0, seed=1, randomize=False, image_size=SIZE, odom_scale_error=0.05,
                odom_yaw_rate_bias=0.0, teleports=[(T_JUMP, DISTANCE)])
    return DriveConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def bags(small_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("teleport")
    summary = record_drive(small_world, root / "jump", _config())
    record_drive(small_world, root / "plain", _config(teleports=[]))
    return root / "jump", root / "plain", summary


def _messages(bag):
    out = {}
    with AnyReader([bag]) as reader:
        for connection, timestamp, raw in reader.messages():
            out.setdefault(connection.topic, []).append(
                (timestamp * 1e-9 - 1_700_000_000.0, reader.deserialize(raw, connection.msgtype)))
    return out


def test_truth_jumps_by_the_distance_and_odometry_goes_on_smoothly(bags, small_world):
    bag, _, summary = bags
    sidecar = json.loads((bag / SIDECAR).read_text())
    ((t_s, jumped),) = sidecar["teleports"]
    assert t_s == T_JUMP and abs(jumped - DISTANCE) <= 25.0 and summary["teleports"] == [[t_s, jumped]]
    messages = _messages(bag)
    truth = np.array([(t, m.pose.position.x, m.pose.position.y) for t, m in messages["/ground_truth/pose"]])
    steps = np.hypot(*np.diff(truth[:, 1:], axis=0).T)
    k = int(np.argmax(steps))
    # One step of the ground truth is the jump (the vehicle also moves a little in that 0.1 s), all others are driving.
    assert abs(truth[k + 1, 0] - T_JUMP) < 1e-3 and abs(steps[k] - jumped) < 15.0 * 0.1 + 0.01
    assert np.delete(steps, k).max() < 15.0 * 0.1
    odom = np.array([(t, m.pose.pose.position.x, m.pose.pose.position.y, m.twist.twist.linear.x,
                      m.twist.twist.angular.z) for t, m in messages["/odom"]])
    odom_steps = np.hypot(*np.diff(odom[:, 1:3], axis=0).T)
    assert odom_steps.max() <= 15.0 * 1.05 * 0.02 + 1e-6  # no jump in the odometry pose, anywhere
    at = int(np.searchsorted(odom[:, 0], T_JUMP - 1e-6))
    assert abs(odom[at, 3] - odom[at - 1, 3]) < 0.2  # nor in its twist where the vehicle was moved
    assert abs(odom[at, 4] - odom[at - 1, 4]) < 0.05
    # GPS follows the vehicle to its new place.
    fixes = [(t, m) for t, m in messages["/gps/fix"] if t > T_JUMP]
    t_fix, fix = fixes[0]
    e, n = small_world.frame.to_en(fix.latitude, fix.longitude)
    row = truth[int(np.argmin(np.abs(truth[:, 0] - t_fix)))]
    assert math.hypot(e - row[1], n - row[2]) < 12.0


def test_frames_after_the_jump_are_seen_from_the_new_place(bags, small_world):
    bag, _, _ = bags
    messages = _messages(bag)
    (index,) = [i for i, (t, _) in enumerate(messages["/camera/image_raw"]) if abs(t - T_JUMP) < 1e-3]
    image = np.frombuffer(messages["/camera/image_raw"][index][1].data, np.uint8).reshape(*SIZE, 3).astype(int)
    renders = []
    for i in (index, index - 1):  # the pose at the jump, and the one just before it
        pose = messages["/ground_truth/pose"][i][1].pose
        heading = (90.0 - math.degrees(2 * math.atan2(pose.orientation.z, pose.orientation.w))) % 360.0
        renders.append(render_panorama(small_world, pose.position.x, pose.position.y, heading, size=SIZE,
                                       style=RenderStyle()))
    assert np.abs(image - renders[0]).mean() < 1.0
    assert np.abs(image - renders[1]).mean() > 5.0


def test_the_drive_before_the_jump_is_the_drive_without_it(bags):
    bag, plain, _ = bags

    def before(path):
        with Reader(path) as reader:
            return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages() if t < (1_700_000_000 + T_JUMP) * 1e9]
    first, second = before(bag), before(plain)
    assert len(first) > 100 and first == second


def test_odometry_scale_error_lengthens_odometry_distances(bags):
    bag, _, summary = bags
    odom = np.array([(m.pose.pose.position.x, m.pose.pose.position.y) for _, m in _messages(bag)["/odom"]])
    odom_length = float(np.sum(np.hypot(*np.diff(odom, axis=0).T)))
    # summary distance_m: the path driven, without the jump
    assert odom_length / summary["distance_m"] == pytest.approx(1.05, abs=0.01)


def test_bad_teleports_are_refused(small_world, tmp_path):
    for teleports in ([(0.0, 50.0)], [(9.0, 50.0)], [(2.0, 0.0)], [(2.0, 50.0), (2.0, 80.0)]):
        with pytest.raises(DriveError, match="teleport"):
            record_drive(small_world, tmp_path / "a", _config(teleports=teleports))
    with pytest.raises(DriveError, match="too small"):
        record_drive(small_world, tmp_path / "b", _config(teleports=[(2.0, 5000.0)]))
    with pytest.raises(DriveError, match="T_S:DISTANCE_M"):
        parse_teleport("4s-100m")
    with pytest.raises(DriveError, match="odom_scale_error"):
        record_drive(small_world, tmp_path / "c", _config(odom_scale_error=-2.0))
    assert list(tmp_path.iterdir()) == []


def test_drive_command_takes_teleports_and_odometry_scale_error(small_world, tmp_path, capsys):
    world = small_world.save(tmp_path / "world")
    bag = tmp_path / "bag"
    assert main(["synth", "drive", str(bag), "--world", str(world), "--duration", "5", "--size", "32x128",
                 "--no-randomize", "--teleport", "2.5:100", "--odom-scale-error", "0.05"]) == 0
    assert "teleport at 2.5 s" in capsys.readouterr().out
    sidecar = json.loads((bag / SIDECAR).read_text())
    assert [t for t, _ in sidecar["teleports"]] == [2.5] and sidecar["config"]["odom_scale_error"] == 0.05
    assert main(["synth", "drive", str(tmp_path / "b2"), "--world", str(world), "--teleport", "soon"]) == 2
    assert "T_S:DISTANCE_M" in capsys.readouterr().err
