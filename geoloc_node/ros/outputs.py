"""Pipeline outputs -> rclpy messages: ~/fix (NavSatFix), ~/pose (PoseWithCovarianceStamped), ~/markers (MarkerArray)
and /diagnostics (DiagnosticArray). Pure functions of their inputs; no rclpy node needed.

Only the rclpy glue lives here: every field and convention (FIX/NO_FIX, covariance type, altitude, marker layout,
diagnostic levels) is decided by the duck-typed builders of :mod:`geoloc_node.messages`, which the replay tool uses
with the rosbags typestore, so that a replayed bag carries the estimates exactly as the node publishes them.

An Estimate is duck-typed (``stamp, east, north, cov, lat, lon, yaw, source, confidence, fallback_active,
trustworthy, topk``) so that the pipeline's class and a test fake both fit.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable, Mapping

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import NavSatFix
from visualization_msgs.msg import MarkerArray

from .. import messages
from ..messages import SERVICE_UNKNOWN, topk_en  # noqa: F401 - re-exported

LEVEL_OK, LEVEL_WARN, LEVEL_ERROR, LEVEL_STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
                                                  DiagnosticStatus.STALE)


@functools.cache
def rclpy_type(name: str):
    """``"sensor_msgs/msg/NavSatFix"`` -> the rclpy message class (the ``types`` callable of :mod:`messages`)."""
    pkg, sub, cls = name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), cls)


def to_time_msg(stamp: float) -> Time:
    """Float seconds -> builtin_interfaces/Time (rounded to the nanosecond, never negative)."""
    return messages.time_msg(rclpy_type, stamp)


def navsatfix(est, *, frame_id: str, altitude: float, altitude_variance_m2: float) -> NavSatFix:
    """The estimate as a NavSatFix (conventions: :func:`geoloc_node.messages.navsatfix_fields`)."""
    return NavSatFix(**messages.navsatfix_fields(rclpy_type, est, frame_id=frame_id, altitude=altitude,
                                                 altitude_variance_m2=altitude_variance_m2))


def pose(est, *, frame_id: str, altitude_variance_m2: float, unknown_variance: float) -> PoseWithCovarianceStamped:
    """The estimate in the map frame (conventions: :func:`geoloc_node.messages.pose_fields`)."""
    return PoseWithCovarianceStamped(**messages.pose_fields(rclpy_type, est, frame_id=frame_id,
                                                            altitude_variance_m2=altitude_variance_m2,
                                                            unknown_variance=unknown_variance))


def markers(est, *, frame_id: str, gps_trail: Iterable[tuple[float, float]],
            estimate_trail: Iterable[tuple[float, float]], tile_size_m: float = 10.0) -> MarkerArray:
    """Top-k tiles, covariance ellipse, trails and state label (:func:`geoloc_node.messages.marker_array_fields`)."""
    return MarkerArray(**messages.marker_array_fields(rclpy_type, est, frame_id=frame_id, gps_trail=gps_trail,
                                                      estimate_trail=estimate_trail, tile_size_m=tile_size_m))


def status(name: str, level: bytes, message: str, values: Mapping, hardware_id: str = "geoloc_node"
           ) -> DiagnosticStatus:
    return messages.diagnostic_status_msg(rclpy_type, name, level, message, values, hardware_id=hardware_id)


def diagnostic_array(stamp, statuses: Iterable[DiagnosticStatus]) -> DiagnosticArray:
    return DiagnosticArray(**messages.diagnostic_array_fields(rclpy_type, stamp, statuses))
