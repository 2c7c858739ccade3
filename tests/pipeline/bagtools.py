"""Write small rosbag2 files for the replay tests (rosbags Writer, Jazzy types)."""

from __future__ import annotations

import math

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_JAZZY)
T = TS.types


def _header(stamp, frame_id=""):
    sec = math.floor(stamp)
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=int(sec), nanosec=int(round(
        (stamp - sec) * 1e9)) % 1_000_000_000), frame_id=frame_id)


def navsat(fix):
    return T["sensor_msgs/msg/NavSatFix"](
        header=_header(fix.stamp, "gps"), status=T["sensor_msgs/msg/NavSatStatus"](status=fix.status, service=1),
        latitude=fix.lat, longitude=fix.lon, altitude=fix.alt,
        position_covariance=np.array(fix.covariance, dtype=np.float64), position_covariance_type=fix.covariance_type)


def odometry(o):
    q = T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(o.yaw / 2), w=math.cos(o.yaw / 2))
    pose = T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=o.x, y=o.y, z=0.0), orientation=q)
    v3 = T["geometry_msgs/msg/Vector3"]
    return T["nav_msgs/msg/Odometry"](
        header=_header(o.stamp, "odom"), child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=v3(x=o.v, y=0.0, z=0.0), angular=v3(x=0.0, y=0.0, z=o.yaw_rate)),
            covariance=np.zeros(36)))


def image(frame):
    img = np.ascontiguousarray(frame.image)
    h, w, _ = img.shape
    return T["sensor_msgs/msg/Image"](header=_header(frame.stamp, "camera"), height=h, width=w, encoding="rgb8",
                                      is_bigendian=0, step=w * 3, data=img.reshape(-1).copy())


def camera_info(stamp, w, h, panorama=True, hfov_deg=90.0):
    """CameraInfo as a camera driver publishes it: a 360 degree equirectangular panorama (as our drives write it) or
    a pinhole camera of ``hfov_deg``."""
    fx = w / (2 * math.pi) if panorama else (w / 2) / math.tan(math.radians(hfov_deg) / 2)
    k = np.array([fx, 0.0, w / 2, 0.0, fx, h / 2, 0.0, 0.0, 1.0])
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp, "camera"), height=h, width=w,
        distortion_model="equirectangular" if panorama else "plumb_bob", d=np.zeros(0 if panorama else 5), k=k,
        r=np.eye(3).ravel(), p=np.array([fx, 0.0, w / 2, 0.0, 0.0, fx, h / 2, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0, binning_y=0, roi=roi)


def write_bag(path, items, storage="mcap", extra_topics=()):
    """items: (stamp, topic, msgtype, msg); extra_topics: (topic, msgtype) registered without messages."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as w:
        conns = {}
        for topic, typ in extra_topics:
            conns[topic] = w.add_connection(topic, typ, typestore=TS)
        for stamp, topic, typ, msg in items:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, typ, typestore=TS)
            w.write(conns[topic], int(stamp * 1e9), TS.serialize_cdr(msg, typ))
    return path


def drive_items(events, frame, truth_fn, t_base=1000.0, truth_rate=10.0):
    from fakes import gps_fix

    items = []
    for stamp, kind, rec in events:
        if kind == "gps":
            items.append((stamp, "/gps/fix", "sensor_msgs/msg/NavSatFix", navsat(rec)))
        elif kind == "odom":
            items.append((stamp, "/odom", "nav_msgs/msg/Odometry", odometry(rec)))
        else:
            items.append((stamp, "/camera/image_raw", "sensor_msgs/msg/Image", image(rec)))
            h, w = rec.image.shape[:2]
            items.append((stamp, "/camera/camera_info", "sensor_msgs/msg/CameraInfo", camera_info(stamp, w, h)))
    last = max(e[0] for e in events)
    for i in range(int((last - t_base) * truth_rate)):
        t = i / truth_rate
        e, n = truth_fn(t)
        items.append((t_base + t, "/ground_truth/fix", "sensor_msgs/msg/NavSatFix",
                      navsat(gps_fix(frame, t_base + t, e, n, std=0.01))))
    items.sort(key=lambda x: x[0])
    return items
