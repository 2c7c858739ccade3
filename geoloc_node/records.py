"""Plain records that flow into the pipeline: what the node and the replay tool make of their messages.

They carry only what the core needs, in SI units, with time as float seconds of the message stamp (never the wall
clock). ``geoloc_node.messages`` turns ROS messages (rclpy or rosbags objects, which share field names) into these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GpsFix:
    """A sensor_msgs/NavSatFix as the health monitor sees it."""

    stamp: float
    lat: float
    lon: float
    alt: float
    status: int  # NavSatStatus.status: -1 NO_FIX, 0 FIX, 1 SBAS_FIX, 2 GBAS_FIX (other values: unknown)
    covariance: tuple[float, ...]  # 9 values, row-major ENU m^2 as in the message
    covariance_type: int  # 0 UNKNOWN, 1 APPROXIMATED, 2 DIAGONAL_KNOWN, 3 KNOWN
    frame_id: str = ""


@dataclass(frozen=True)
class Odometry:
    """A nav_msgs/Odometry reduced to the planar motion the filter predicts with."""

    stamp: float
    x: float  # metres in the odometry frame
    y: float
    yaw: float  # radians, ENU convention (counter-clockwise from the frame's x axis)
    v: float  # forward speed, m/s (twist.linear.x in the child frame)
    yaw_rate: float  # rad/s
    frame_id: str = ""
    child_frame_id: str = ""


@dataclass(frozen=True)
class CameraFrame:
    """One camera image, decoded to RGB uint8 (H, W, 3)."""

    stamp: float
    image: np.ndarray
    frame_id: str = ""
