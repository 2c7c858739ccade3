"""Topics with real rclpy: camera publishers of both reliabilities, outputs stamped with the image time and gated by
the publish policy, bad input counted and survived."""

from __future__ import annotations

import math

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, NavSatFix, NavSatStatus
from std_msgs.msg import Bool
from visualization_msgs.msg import MarkerArray

from .fakes import FakeFactory
from .helpers import compressed, fix, image, make_node, odom

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


def _active_node(ros, **overrides):
    factory = FakeFactory()
    node = make_node(ros, factory, **overrides)
    node.trigger_configure()
    node.trigger_activate()
    return node, factory.built[-1]


def _publish_until(ros, pub, make, done, timeout=5.0):
    """Publish (re-stamped) messages until ``done()``: discovery takes a moment, best effort may lose the first."""
    t = [100.0]

    def step():
        t[0] += 0.1
        pub.publish(make(t[0]))
        return done()

    return ros.wait_for(step, timeout=timeout, period=0.05)


def test_camera_publishers_of_both_reliabilities_are_received(ros):
    node, pipeline = _active_node(ros)
    for name, qos in (("reliable", RELIABLE), ("best_effort", BEST_EFFORT)):
        pub = ros.tester.create_publisher(Image, "/camera/image_raw", qos)
        before = len(pipeline.frames)
        assert _publish_until(ros, pub, image, lambda b=before: len(pipeline.frames) >= b + 3), name
        ros.tester.destroy_publisher(pub)
    assert pipeline.process_threads == {"geoloc_inference"}


def test_outputs_follow_the_policy_and_carry_the_image_stamp(ros):
    node, pipeline = _active_node(ros, **{"output.markers_rate_hz": 20.0})
    fixes = ros.collect(NavSatFix, "/geoloc_node/fix")
    poses = ros.collect(PoseWithCovarianceStamped, "/geoloc_node/pose")
    markers = ros.collect(MarkerArray, "/geoloc_node/markers")
    active = ros.collect(Bool, "/geoloc_node/active",
                         QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.TRANSIENT_LOCAL))
    cam = ros.tester.create_publisher(Image, "/camera/image_raw", RELIABLE)
    gps = ros.tester.create_publisher(NavSatFix, "/gps/fix", RELIABLE)

    # GPS healthy: frames are processed, markers flow, but no ~/fix (policy fallback_only)
    assert _publish_until(ros, cam, image, lambda: len(markers) >= 2)
    assert fixes == [] and poses == []
    assert ros.wait_for(lambda: active and active[-1].data is False)

    # GPS lost -> ~/active true, ~/fix and ~/pose stamped with the image time
    assert _publish_until(ros, gps, lambda t: fix(t, status=NavSatStatus.STATUS_NO_FIX, lat=math.nan, lon=math.nan),
                          lambda: pipeline.state == "LOST")
    assert ros.wait_for(lambda: active[-1].data is True)
    assert _publish_until(ros, cam, image, lambda: len(fixes) >= 3 and len(poses) >= 3)
    f = fixes[-1]
    assert round(f.header.stamp.sec + f.header.stamp.nanosec * 1e-9, 6) in {round(fr.stamp, 6)
                                                                            for fr in pipeline.frames}
    assert f.status.status == NavSatStatus.STATUS_FIX and f.status.service == 0
    assert f.position_covariance_type == NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    assert list(f.position_covariance[:5]) == [4.0, 0.0, 0.0, 0.0, 9.0]
    assert math.isclose(f.latitude, pipeline.lat) and math.isclose(f.longitude, pipeline.lon)
    assert f.header.frame_id == "base_link"
    p = poses[-1]
    assert p.header.frame_id == "map" and p.pose.pose.position.x == 12.0 and p.pose.pose.position.y == -5.0
    assert p.header.stamp == f.header.stamp

    # GPS back: ~/active false and, with fallback_only, no more fixes
    assert _publish_until(ros, gps, fix, lambda: pipeline.state == "HEALTHY")
    assert ros.wait_for(lambda: active[-1].data is False)
    n = len(fixes)
    assert _publish_until(ros, cam, image, lambda: len(markers) >= 20)
    assert len(fixes) == n

    # policy "always" (a live parameter): fixes while GPS is healthy too
    assert node.set_parameters([Parameter("output.publish_policy", value="always")])[0].successful
    assert _publish_until(ros, cam, image, lambda: len(fixes) > n)


def test_bad_input_is_counted_and_survived(ros):
    node, pipeline = _active_node(ros, **{"output.diagnostics_period_s": 0.1})
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    cam = ros.tester.create_publisher(Image, "/camera/image_raw", RELIABLE)
    gps = ros.tester.create_publisher(NavSatFix, "/gps/fix", RELIABLE)
    odo = ros.tester.create_publisher(Odometry, "/odom", RELIABLE)
    assert ros.wait_for(lambda: cam.get_subscription_count() and gps.get_subscription_count()
                        and odo.get_subscription_count())

    # what cannot be converted is counted by the session; what the pipeline refuses (here the fake's NaN rule; the
    # real rules are tested in tests/pipeline) is counted by the reason the pipeline gives
    bad = [
        ("image_bad", cam, image(1.0, encoding="yuv422_weird")),            # unknown encoding
        ("image_bad", cam, image(1.1, h=480, w=640, data=b"\x00" * 30)),    # lying size: 30 bytes for 640x480
        ("gps_invalid_position", gps, fix(1.0, lat=math.nan, lon=math.nan, status=0)),  # NaN with FIX
        ("odometry_bad", odo, odom(1.1, x=math.nan)),                        # NaN pose
    ]
    for kind, pub, msg in bad:
        pub.publish(msg)
        assert ros.wait_for(lambda k=kind: node.session.problems[k] >= 1), kind

    # a corrupt compressed frame, on a node listening to the compressed transport
    node2 = make_node(ros, FakeFactory(), image_transport="compressed")
    node2.trigger_configure()
    node2.trigger_activate()
    ccam = ros.tester.create_publisher(CompressedImage, "/camera/image_raw/compressed", RELIABLE)
    assert ros.wait_for(lambda: ccam.get_subscription_count() >= 1)
    ccam.publish(compressed(1.0, b"\xff\xd8\xff\xe0 not really a jpeg"))
    assert ros.wait_for(lambda: node2.session.problems["image_bad"] >= 1)

    # still alive: good frames still go through, and /diagnostics reports the counts
    before = len(pipeline.frames)
    assert _publish_until(ros, cam, image, lambda: len(pipeline.frames) > before)

    def counted():
        for arr in diags:
            for st in arr.status:
                if st.name == "geoloc_node: inputs":
                    kv = {v.key: v.value for v in st.values}
                    if kv.get("problems.image_bad") == "2" and "problems.gps_invalid_position" in kv:
                        return st
        return None

    assert ros.wait_for(lambda: counted() is not None)
    assert counted().level == b"\x01"
