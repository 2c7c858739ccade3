import math
from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from geoloc_node.messages import (
    BadMessageError,
    diagnostic_array_fields,
    diagnostic_status_msg,
    frame_from_msg,
    gps_from_msg,
    localization_diagnostic,
    marker_array_fields,
    navsatfix_fields,
    odometry_from_msg,
    pose_fields,
    stamp_of,
)

TS = get_typestore(Stores.ROS2_JAZZY)


def header(sec=10, nanosec=500_000_000, frame_id="cam"):
    return NS(stamp=NS(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image(enc, h=2, w=3, ch=3, step=None, data=None):
    step = step if step is not None else w * ch
    if data is None:
        data = np.arange(h * step, dtype=np.uint8)
    return NS(header=header(), height=h, width=w, encoding=enc, is_bigendian=0, step=step, data=data)


def test_stamp_not_normalised_nanosec():
    assert stamp_of(NS(header=header(sec=5, nanosec=1_000_000_000))) == 6.0


@pytest.mark.parametrize("enc,ch", [("rgb8", 3), ("bgr8", 3), ("mono8", 1), ("bgra8", 4), ("rgba8", 4)])
def test_image_encodings_to_rgb(enc, ch):
    px = np.array([10, 20, 30, 40][:ch], dtype=np.uint8)
    data = np.tile(px, 6)
    f = frame_from_msg(image(enc, ch=ch, data=data))
    assert f.image.shape == (2, 3, 3) and f.image.dtype == np.uint8 and f.stamp == 10.5
    r, g, b = f.image[0, 0]
    expect = {"rgb8": (10, 20, 30), "bgr8": (30, 20, 10), "mono8": (10, 10, 10), "bgra8": (30, 20, 10),
              "rgba8": (10, 20, 30)}[enc]
    assert (r, g, b) == expect


def test_padded_rows_and_bytes_data():
    # step longer than a row (padding), data as bytes as rclpy gives it
    data = bytes(np.arange(2 * 12, dtype=np.uint8))
    f = frame_from_msg(image("rgb8", h=2, w=3, step=12, data=data))
    assert f.image[1, 0].tolist() == [12, 13, 14]


def test_lying_image_is_refused_with_a_message():
    msg = image("rgb8", h=480, w=640, step=1920, data=np.zeros(30, np.uint8))
    with pytest.raises(BadMessageError, match="carries 30 bytes"):
        frame_from_msg(msg)


@pytest.mark.parametrize("enc", ["16UC1", "yuv422", "bayer_rggb8"])
def test_unsupported_encoding(enc):
    with pytest.raises(BadMessageError, match="not supported"):
        frame_from_msg(image(enc))


def test_compressed_image_and_fake_jpeg():
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 2] = 200  # red in BGR order
    ok, buf = cv2.imencode(".png", img)
    f = frame_from_msg(NS(header=header(), format="png", data=buf.ravel()))
    assert f.image[0, 0].tolist() == [200, 0, 0]
    with pytest.raises(BadMessageError, match="could not be decoded"):
        frame_from_msg(NS(header=header(), format="jpeg", data=np.frombuffer(b"\xff\xd8\xff\xe0fake", np.uint8)))
    with pytest.raises(BadMessageError):
        frame_from_msg(NS(header=header(), format="jpeg", data=b""))


def _navsat(lat=47.0, lon=8.0, cov=(4.0, 0, 0, 0, 4.0, 0, 0, 0, 9.0)):
    Nav, St = TS.types["sensor_msgs/msg/NavSatFix"], TS.types["sensor_msgs/msg/NavSatStatus"]
    H, T = TS.types["std_msgs/msg/Header"], TS.types["builtin_interfaces/msg/Time"]
    return Nav(header=H(stamp=T(sec=3, nanosec=0), frame_id="gps"), status=St(status=0, service=1), latitude=lat,
               longitude=lon, altitude=1.0, position_covariance=np.array(cov, dtype=np.float64),
               position_covariance_type=2)


def test_navsatfix_from_rosbags_type_and_nan_kept():
    fix = gps_from_msg(_navsat())
    assert fix.lat == 47.0 and fix.status == 0 and fix.covariance[4] == 4.0 and fix.covariance_type == 2
    bad = gps_from_msg(_navsat(lat=math.nan))
    assert math.isnan(bad.lat)  # the health monitor judges it


def test_odometry_from_rosbags_type():
    msg = TS.deserialize_cdr(TS.serialize_cdr(_odom_msg(), "nav_msgs/msg/Odometry"), "nav_msgs/msg/Odometry")
    o = odometry_from_msg(msg)
    assert o.x == 1.0 and o.y == 2.0 and abs(o.yaw - math.pi / 2) < 1e-9 and o.v == 3.0


def _odom_msg():
    T = TS.types
    q = T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(math.pi / 4), w=math.cos(math.pi / 4))
    pose = T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=1.0, y=2.0, z=0.0), orientation=q)
    v3 = T["geometry_msgs/msg/Vector3"]
    return T["nav_msgs/msg/Odometry"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="odom"),
        child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=v3(x=3.0, y=0.0, z=0.0), angular=v3(x=0.0, y=0.0, z=0.1)),
            covariance=np.zeros(36)))


def test_output_messages_serialise_with_rosbags():
    from geoloc_node.pipeline import Estimate

    est = Estimate(stamp=12.25, east=3.0, north=4.0, cov=np.diag([4.0, 9.0]), lat=47.0, lon=8.0, yaw=0.5,
                   source="visual", confidence=0.8, fallback_active=True, trustworthy=True,
                   topk=((1.0, 2.0, 40), (5.0, 6.0, 50)), yaw_var=0.01)
    types = TS.types.__getitem__
    status = diagnostic_status_msg(types, "geoloc_node: localization",
                                   *localization_diagnostic({"health": {"state": "LOST", "reason": "x"},
                                                             "counts": {"a": 1}, "fallback_active": True}))
    for name, fields in [("sensor_msgs/msg/NavSatFix", navsatfix_fields(types, est)),
                         ("geometry_msgs/msg/PoseWithCovarianceStamped", pose_fields(types, est)),
                         ("visualization_msgs/msg/MarkerArray", marker_array_fields(types, est)),
                         ("diagnostic_msgs/msg/DiagnosticArray", diagnostic_array_fields(types, 12.25, [status]))]:
        msg = TS.types[name](**fields)
        back = TS.deserialize_cdr(TS.serialize_cdr(msg, name), name)
        assert back is not None
    assert [m.ns for m in marker_array_fields(types, est)["markers"]] == [
        "topk_tiles", "covariance", "gps_trail", "estimate_trail", "protection_level", "state"]
    assert status.level == 2 and status.message == "GPS LOST: x; visual fallback NOT trusted: no estimate yet"


def _est(**kw):
    from geoloc_node.pipeline import Estimate

    base = dict(stamp=12.25, east=3.0, north=4.0, cov=np.array([[4.0, 1.0], [1.0, 9.0]]), lat=47.0, lon=8.0,
                yaw=None, source="visual", confidence=0.8, fallback_active=True, trustworthy=True, topk=None)
    base.update(kw)
    return Estimate(**base)


def test_navsatfix_conventions_rosbags():
    """The replay bag's ~/fix follows the node's rules (docs/ros.md "~/fix conventions")."""
    types = TS.types.__getitem__
    f = navsatfix_fields(types, _est(), altitude=410.0, altitude_variance_m2=100.0)
    assert f["status"].status == 0 and f["status"].service == 0 and f["altitude"] == 410.0
    assert f["position_covariance_type"] == 3  # KNOWN: off-diagonal terms
    assert list(f["position_covariance"]) == [4.0, 1.0, 0.0, 1.0, 9.0, 0.0, 0.0, 0.0, 100.0]
    d = navsatfix_fields(types, _est(cov=np.diag([4.0, 9.0])))
    assert d["position_covariance_type"] == 2 and d["altitude"] == 0.0 and d["position_covariance"][8] == 1e4
    assert navsatfix_fields(types, _est(trustworthy=False))["status"].status == -1
    for bad in (_est(lat=math.nan), _est(cov=np.full((2, 2), np.nan)), _est(cov=np.zeros((2, 2)))):
        f = navsatfix_fields(types, bad, altitude=math.nan)
        assert f["status"].status == -1
        assert all(math.isfinite(v) for v in (f["latitude"], f["longitude"], f["altitude"],
                                              *f["position_covariance"]))


def test_header_stamp_rounding():
    types = TS.types.__getitem__
    st = navsatfix_fields(types, _est(stamp=1.9999999999))["header"].stamp
    assert (st.sec, st.nanosec) == (2, 0)
    st = navsatfix_fields(types, _est(stamp=-1.0))["header"].stamp
    assert (st.sec, st.nanosec) == (0, 0)


def test_point_trail_keeps_the_newest_positions_and_gives_the_markers_the_same_bytes_as_pairs():
    from geoloc_node.messages import PointTrail

    types = TS.types.__getitem__
    trail = PointTrail(types, 4)
    for i in range(6):
        trail.append(np.float64(i) * 1.5, 10.0 - i)  # numpy scalars become floats, as the pairs' float() made them
    assert list(trail) == [(3.0, 8.0), (4.5, 7.0), (6.0, 6.0), (7.5, 5.0)] and len(trail) == 4
    assert [(p.x, p.y, p.z) for p in trail.points()] == [(e, n, 0.0) for e, n in trail]
    shorter = trail.resized(2)
    assert list(shorter) == [(6.0, 6.0), (7.5, 5.0)] and shorter.maxlen == 2 and list(trail)[0] == (3.0, 8.0)
    est = _est(topk=((1.0, 2.0, 40),))
    name = "visualization_msgs/msg/MarkerArray"
    with_trails = TS.types[name](**marker_array_fields(types, est, gps_trail=trail, estimate_trail=shorter))
    with_pairs = TS.types[name](**marker_array_fields(types, est, gps_trail=list(trail), estimate_trail=list(shorter)))
    assert bytes(TS.serialize_cdr(with_trails, name)) == bytes(TS.serialize_cdr(with_pairs, name))
    assert len(with_trails.markers[2].points) == 4 and len(with_trails.markers[3].points) == 2
    trail.clear()
    assert list(trail) == [] and trail.points() == []
