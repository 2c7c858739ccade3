"""Estimate -> message conventions with rclpy's classes, and the session building the same messages for the node
(rclpy) and a replay (rosbags typestore)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from sensor_msgs.msg import NavSatFix, NavSatStatus
from visualization_msgs.msg import Marker

from geoloc_node import messages
from geoloc_node.config import GeolocConfig
from geoloc_node.health import HealthChange
from geoloc_node.records import Estimate
from geoloc_node.ros.interfaces import rclpy_type
from geoloc_node.session import Session

from .fakes import FakePipeline

EST = Estimate(stamp=12.25, east=3.0, north=4.0, cov=np.array([[4.0, 1.0], [1.0, 9.0]]), lat=47.0, lon=8.0,
               yaw=None, source="visual", confidence=0.7, fallback_active=True, trustworthy=True,
               topk=((3.0, 4.0, 12), (13.0, 4.0, 20)))


def _fix(est, alt=math.nan):
    return NavSatFix(**messages.navsatfix_fields(rclpy_type, est, frame_id="base_link", altitude=alt,
                                                 altitude_variance_m2=100.0))


def test_navsatfix_status_and_covariance():
    f = _fix(EST, alt=410.0)
    assert (f.header.stamp.sec, f.header.stamp.nanosec) == (12, 250_000_000)
    assert f.status.status == NavSatStatus.STATUS_FIX and f.status.service == messages.SERVICE_UNKNOWN
    assert f.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN  # off-diagonal terms
    assert list(f.position_covariance) == [4.0, 1.0, 0.0, 1.0, 9.0, 0.0, 0.0, 0.0, 100.0]
    assert f.altitude == 410.0
    diag = _fix(dataclasses.replace(EST, cov=np.diag([4.0, 9.0])))
    assert diag.position_covariance_type == NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN and diag.altitude == 0.0
    assert _fix(dataclasses.replace(EST, trustworthy=False)).status.status == NavSatStatus.STATUS_NO_FIX


def test_never_nan_with_fix():
    for bad in (dataclasses.replace(EST, lat=math.nan), dataclasses.replace(EST, cov=np.full((2, 2), np.nan)),
                dataclasses.replace(EST, cov=np.zeros((2, 2)))):
        f = _fix(bad)
        assert f.status.status == NavSatStatus.STATUS_NO_FIX
        assert all(math.isfinite(v) for v in (f.latitude, f.longitude, f.altitude, *f.position_covariance))


def test_pose_and_markers():
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from visualization_msgs.msg import MarkerArray

    p = PoseWithCovarianceStamped(**messages.pose_fields(rclpy_type, dataclasses.replace(EST, yaw=math.pi / 2,
                                                                                         yaw_var=0.01),
                                                         frame_id="map", altitude_variance_m2=100.0,
                                                         unknown_variance=1e6))
    assert math.isclose(p.pose.pose.orientation.z, math.sqrt(0.5)) and p.pose.covariance[35] == 0.01
    assert p.pose.covariance[0] == 4.0 and p.pose.covariance[7] == 9.0 and p.pose.covariance[21] == 1e6
    m = MarkerArray(**messages.marker_array_fields(rclpy_type, EST, frame_id="map", gps_trail=[(0, 0), (1, 1)],
                                                   estimate_trail=[(0, 0)]))
    by_ns = {mk.ns: mk for mk in m.markers}
    assert len(by_ns["topk_tiles"].points) == 2 and by_ns["covariance"].action == Marker.ADD
    assert by_ns["estimate_trail"].action == Marker.DELETE  # one point is not a line
    assert all(mk.header.stamp.sec == 12 for mk in m.markers)
    assert f"+-{EST.std_m:.1f} m" in by_ns["state"].text  # the label's sigma is the estimate's one sigma


# ------------------------------------------------------------------ the node and a replayed bag build the same messages
def _as_plain(msg):
    """An rclpy or rosbags message as nested plain Python (dicts, lists, floats, ints, str)."""
    if hasattr(msg, "get_fields_and_field_types"):  # rclpy
        return {k: _as_plain(getattr(msg, k)) for k in msg.get_fields_and_field_types()}
    if hasattr(msg, "__dataclass_fields__"):  # rosbags
        # constants (upper case) and __msgtype__ are dataclass fields too: keep the message fields only
        return {f.name: _as_plain(getattr(msg, f.name)) for f in dataclasses.fields(msg)
                if not f.name.startswith("__") and not f.name.isupper()}
    if isinstance(msg, bytes | bytearray):
        return list(msg) if len(msg) != 1 else msg[0]  # rclpy's byte level is bytes([n]); rosbags' an int
    if isinstance(msg, np.ndarray) or (not isinstance(msg, str) and hasattr(msg, "__len__")):
        return [_as_plain(v) for v in msg]
    if isinstance(msg, np.generic):
        msg = msg.item()
    if isinstance(msg, float) and math.isnan(msg):
        return "nan"  # NaN != NaN: compare it as a token
    return msg


ESTIMATES = {
    "trusted, correlated": EST,
    "diagonal with yaw": dataclasses.replace(EST, cov=np.diag([4.0, 9.0]), yaw=0.7, yaw_var=0.02),
    "untrusted": dataclasses.replace(EST, trustworthy=False, topk=None),
    "nan lat": dataclasses.replace(EST, lat=math.nan),
    "nan cov": dataclasses.replace(EST, cov=np.full((2, 2), np.nan), east=math.nan),
}


def _session_run(types):
    """Feed one sequence of pipeline outputs through a session; its publications as plain data."""
    session = Session(GeolocConfig(), types)
    session.attach(FakePipeline())
    pubs = session.start(10.0)
    pubs += session.on_outputs([HealthChange(11.0, "LOST", "HEALTHY", "no fix for 0.6 s")])
    for est in ESTIMATES.values():
        pubs += session.on_outputs([dataclasses.replace(est, stamp=est.stamp + len(pubs))])
    pubs += session.on_outputs([dataclasses.replace(EST, stamp=40.0, fallback_active=False)])
    pubs.append(session.diagnostics(41.0))
    return [(p.topic, p.stamp, _as_plain(p.message)) for p in pubs]


def test_node_and_replay_sessions_build_identical_messages():
    """The session with rclpy classes (the node) and with the rosbags typestore (geoloc replay) publishes the same
    topics, in the same order, with equal fields: one set of conventions and rules for both."""
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    node, bag = _session_run(rclpy_type), _session_run(ts.types.__getitem__)
    assert [p[:2] for p in node] == [p[:2] for p in bag]
    topics = [p[0] for p in node]
    assert {"active", "fix", "pose", "markers", "/diagnostics"} <= set(topics)
    # fallback_only: the estimate with GPS healthy again publishes ~/active false but no ~/fix
    # ~/active: the fake pipeline starts HEALTHY (false), LOST (true), healthy again (false)
    assert topics.count("fix") == len(ESTIMATES) and [p[2]["data"] for p in node if p[0] == "active"] == [
        False, True, False]
    for a, b in zip(node, bag, strict=True):
        if a[0] == "/diagnostics":  # the latency values differ run to run; the structure must not
            assert [s["name"] for s in a[2]["status"]] == [s["name"] for s in b[2]["status"]]
            continue
        assert a == b, a[0]


def test_shared_defaults_match_the_node_parameters():
    from diagnostic_msgs.msg import DiagnosticStatus


    # messages.py spells the ROS constants as numbers (it imports neither rclpy nor rosbags): check them.
    assert (messages.STATUS_FIX, messages.STATUS_NO_FIX) == (NavSatStatus.STATUS_FIX, NavSatStatus.STATUS_NO_FIX)
    assert (messages.COVARIANCE_TYPE_UNKNOWN, messages.COVARIANCE_TYPE_DIAGONAL_KNOWN,
            messages.COVARIANCE_TYPE_KNOWN) == (NavSatFix.COVARIANCE_TYPE_UNKNOWN,
                                                NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN,
                                                NavSatFix.COVARIANCE_TYPE_KNOWN)
    assert (messages.MARKER_LINE_STRIP, messages.MARKER_CUBE_LIST, messages.MARKER_TEXT_VIEW_FACING,
            messages.MARKER_ADD, messages.MARKER_DELETE) == (Marker.LINE_STRIP, Marker.CUBE_LIST,
                                                             Marker.TEXT_VIEW_FACING, Marker.ADD, Marker.DELETE)
    assert [bytes([v]) for v in (messages.LEVEL_OK, messages.LEVEL_WARN, messages.LEVEL_ERROR, messages.LEVEL_STALE)
            ] == [DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE]

    out = GeolocConfig().output
    assert out.altitude_variance_m2 == messages.ALTITUDE_VARIANCE_M2
    assert out.unknown_variance == messages.UNKNOWN_VARIANCE
