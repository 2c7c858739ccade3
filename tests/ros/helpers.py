"""Message builders and node construction for the ROS tests."""

from __future__ import annotations

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image, NavSatFix

from geoloc_node.ros.interfaces import to_time_msg

from .fakes import ORIGIN


def image(stamp: float, h: int = 8, w: int = 16, encoding: str = "rgb8", data: bytes | None = None) -> Image:
    msg = Image()
    msg.header.stamp = to_time_msg(stamp)
    msg.header.frame_id = "camera"
    msg.height, msg.width, msg.encoding, msg.step = h, w, encoding, w * 3
    msg.data = data if data is not None else np.full(h * w * 3, 128, np.uint8).tobytes()
    return msg


def compressed(stamp: float, data: bytes) -> CompressedImage:
    msg = CompressedImage()
    msg.header.stamp = to_time_msg(stamp)
    msg.format = "jpeg"
    msg.data = data
    return msg


def fix(stamp: float, lat: float = ORIGIN[0], lon: float = ORIGIN[1], status: int = 0, alt: float = 400.0,
        std: float = 2.0) -> NavSatFix:
    msg = NavSatFix()
    msg.header.stamp = to_time_msg(stamp)
    msg.header.frame_id = "gps"
    msg.status.status = status
    msg.status.service = 1
    msg.latitude, msg.longitude, msg.altitude = lat, lon, alt
    msg.position_covariance = [std**2, 0.0, 0.0, 0.0, std**2, 0.0, 0.0, 0.0, 4 * std**2]
    msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    return msg


def odom(stamp: float, x: float = 0.0, frame_id: str = "odom") -> Odometry:
    msg = Odometry()
    msg.header.stamp = to_time_msg(stamp)
    msg.header.frame_id = frame_id
    msg.child_frame_id = "base_link"
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation.w = 1.0
    msg.twist.twist.linear.x = 1.0
    return msg


def make_node(ros, factory, **overrides):
    """A GeolocNode with the given parameter overrides, added to the harness's executor."""
    from geoloc_node.ros.node import GeolocNode

    params = [Parameter(k, value=v) for k, v in overrides.items()]
    node = GeolocNode(pipeline_factory=factory, context=ros.context, parameter_overrides=params)
    return ros.add(node)
