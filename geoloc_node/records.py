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


# -- what comes out of the pipeline (besides geoloc_node.health.HealthChange) ---------------------------------------
@dataclass(frozen=True)
class Estimate:
    """A fused position at ``stamp`` (message time)."""

    stamp: float
    east: float  # metres in the table's local ENU frame
    north: float
    cov: np.ndarray  # 2x2 m^2 (east, north)
    lat: float
    lon: float
    yaw: float | None  # ENU yaw (rad) when the filter knows it, else None
    source: str  # 'gps' | 'visual' | 'odometry'
    confidence: float  # [0, 1]
    fallback_active: bool  # GPS is not trusted; the position comes from vision and odometry
    trustworthy: bool  # the integrity monitor's verdict: the evidence bounds the error by hpl_m
    topk: tuple = ()  # ((east, north, hamming distance), ...) best tiles of the last visual update
    yaw_var: float | None = None  # rad^2
    single_frame: tuple | None = None  # (east, north) of the paper's single-frame top-5 mean (when asked for)
    hpl_m: float = float("inf")  # horizontal protection level (m) at the configured integrity risk
    integrity: str = ""  # why it is trustworthy, or why not (geoloc_node.integrity)

    @property
    def std_m(self) -> float:
        """The one sigma of an estimate (m): square root of the largest covariance eigenvalue. The RViz label, the
        reports and the trust decision all use this one."""
        return major_std_m(self.cov)


def major_std_m(cov) -> float:
    """Square root of the largest eigenvalue of a 2x2 covariance (m); NaN when it is not finite."""
    c = np.asarray(cov, dtype=np.float64).reshape(2, 2)
    if not np.isfinite(c).all():
        return float("nan")
    return float(np.sqrt(max(np.linalg.eigvalsh(0.5 * (c + c.T)).max(), 0.0)))


@dataclass(frozen=True)
class InputRejected:
    """An input record the pipeline did not use: ``key`` counts it by reason (e.g. ``gps_stale_stamp``), ``detail``
    says it in one line."""

    stamp: float
    stream: str  # 'gps' | 'odometry' | 'frame'
    key: str
    detail: str


@dataclass(frozen=True)
class StateReset:
    """Time jumped (a looping bag, a restarted clock): the pipeline started over at ``stamp``."""

    stamp: float
    reason: str
