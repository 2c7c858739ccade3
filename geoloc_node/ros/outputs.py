"""Pipeline outputs -> ROS messages: ~/fix (NavSatFix), ~/pose (PoseWithCovarianceStamped), ~/markers (MarkerArray)
and /diagnostics (DiagnosticArray). Pure functions of their inputs; no rclpy node needed.

An Estimate is duck-typed (``stamp, east, north, cov, lat, lon, yaw, source, confidence, fallback_active,
trustworthy, topk``) so that the pipeline's class and a test fake both fit.

NavSatFix conventions (what robot_localization's navsat_transform expects):

* ``status.status`` is ``STATUS_FIX`` only when the estimate is trustworthy and every number is finite; otherwise
  ``STATUS_NO_FIX``. ``status.service`` is ``SERVICE_UNKNOWN`` (0): no satellite constellation produced this fix.
* ``position_covariance`` is ENU, row-major, m^2: east/north from the estimate, up = ``altitude_variance_m2``;
  type ``DIAGONAL_KNOWN`` when the east/north covariance is diagonal, ``KNOWN`` otherwise (``UNKNOWN`` with NO_FIX
  when there is no usable covariance). Never NaN together with FIX.
* ``altitude`` is the last finite GPS altitude (the fallback estimates east/north only), 0.0 before any.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PoseWithCovarianceStamped
from sensor_msgs.msg import NavSatFix, NavSatStatus
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

# Humble's NavSatStatus has no SERVICE_UNKNOWN constant (Jazzy does); the value is 0 in both.
SERVICE_UNKNOWN = getattr(NavSatStatus, "SERVICE_UNKNOWN", 0)


def to_time_msg(stamp: float) -> Time:
    """Float seconds -> builtin_interfaces/Time (rounded to the nanosecond, never negative)."""
    ns = max(int(round(stamp * 1e9)), 0)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _cov2(est) -> np.ndarray | None:
    cov = np.asarray(getattr(est, "cov", None) if getattr(est, "cov", None) is not None else np.full((2, 2), np.nan),
                     dtype=np.float64).reshape(2, 2)
    if not np.isfinite(cov).all() or cov[0, 0] <= 0.0 or cov[1, 1] <= 0.0:
        return None
    return 0.5 * (cov + cov.T)


def navsatfix(est, *, frame_id: str, altitude: float, altitude_variance_m2: float) -> NavSatFix:
    """The estimate as a NavSatFix (see the module docstring for the conventions)."""
    msg = NavSatFix()
    msg.header.stamp = to_time_msg(est.stamp)
    msg.header.frame_id = frame_id
    lat, lon = float(est.lat), float(est.lon)
    cov = _cov2(est)
    alt = float(altitude) if math.isfinite(altitude) else 0.0
    usable = math.isfinite(lat) and math.isfinite(lon) and cov is not None
    msg.status.service = SERVICE_UNKNOWN
    msg.status.status = NavSatStatus.STATUS_FIX if (usable and bool(est.trustworthy)) else NavSatStatus.STATUS_NO_FIX
    msg.latitude = lat if math.isfinite(lat) else 0.0
    msg.longitude = lon if math.isfinite(lon) else 0.0
    msg.altitude = alt
    if cov is None:
        msg.position_covariance = [0.0] * 9
        msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
    else:
        msg.position_covariance = [cov[0, 0], cov[0, 1], 0.0, cov[1, 0], cov[1, 1], 0.0, 0.0, 0.0,
                                   float(altitude_variance_m2)]
        msg.position_covariance_type = (NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN if cov[0, 1] == 0.0
                                        else NavSatFix.COVARIANCE_TYPE_KNOWN)
    if not math.isfinite(lat) or not math.isfinite(lon):
        msg.status.status = NavSatStatus.STATUS_NO_FIX
    return msg


def pose(est, *, frame_id: str, altitude_variance_m2: float, unknown_variance: float) -> PoseWithCovarianceStamped:
    """The estimate in the map frame (ENU tangent plane at the table origin): x east, y north, z 0."""
    msg = PoseWithCovarianceStamped()
    msg.header.stamp = to_time_msg(est.stamp)
    msg.header.frame_id = frame_id
    msg.pose.pose.position.x = float(est.east)
    msg.pose.pose.position.y = float(est.north)
    msg.pose.pose.position.z = 0.0
    yaw = getattr(est, "yaw", None)
    has_yaw = yaw is not None and math.isfinite(float(yaw))
    if has_yaw:
        msg.pose.pose.orientation.z = math.sin(float(yaw) / 2.0)
        msg.pose.pose.orientation.w = math.cos(float(yaw) / 2.0)
    else:
        msg.pose.pose.orientation.w = 1.0
    c = [0.0] * 36
    cov = _cov2(est)
    if cov is None:
        cov = np.eye(2) * unknown_variance
    c[0], c[1], c[6], c[7] = cov[0, 0], cov[0, 1], cov[1, 0], cov[1, 1]
    c[14] = float(altitude_variance_m2)
    c[21] = c[28] = float(unknown_variance)
    yaw_var = getattr(est, "yaw_var", None)
    c[35] = float(yaw_var) if (has_yaw and yaw_var is not None and math.isfinite(yaw_var)) else float(unknown_variance)
    msg.pose.covariance = c
    return msg


# --------------------------------------------------------------------------------------------------------- markers


def _color(r, g, b, a=1.0) -> ColorRGBA:
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a))


def _marker(ns: str, mid: int, mtype: int, frame_id: str, stamp: Time) -> Marker:
    m = Marker()
    m.header.frame_id = frame_id
    m.header.stamp = stamp
    m.ns, m.id, m.type, m.action = ns, mid, mtype, Marker.ADD
    m.pose.orientation.w = 1.0
    return m


def ellipse_points(east: float, north: float, cov: np.ndarray, sigma: float = 2.0, n: int = 48) -> list[Point]:
    """Points of the ``sigma`` covariance ellipse around (east, north)."""
    w, v = np.linalg.eigh(cov)
    axes = v * (sigma * np.sqrt(np.maximum(w, 0.0)))
    t = np.linspace(0.0, 2.0 * math.pi, n + 1)
    pts = np.stack([np.cos(t), np.sin(t)], axis=0)
    xy = axes @ pts
    return [Point(x=float(east + x), y=float(north + y), z=0.0) for x, y in zip(xy[0], xy[1], strict=True)]


def topk_en(topk) -> np.ndarray:
    """East/north (m) of the top-k tiles: from ``(east, north, distance)`` tuples or an object with ``.en``."""
    if topk is None:
        return np.zeros((0, 2))
    if hasattr(topk, "en"):
        return np.asarray(topk.en, dtype=np.float64).reshape(-1, 2)
    rows = [tuple(r)[:2] for r in topk]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def markers(est, *, frame_id: str, gps_trail: Iterable[tuple[float, float]],
            estimate_trail: Iterable[tuple[float, float]], tile_size_m: float = 10.0) -> MarkerArray:
    """Top-k tiles (cubes, red = best), the 2-sigma covariance ellipse, GPS (green) and estimate (blue) trails and a
    text label with the state, all in the map frame and stamped with the estimate's (image) time."""
    stamp = to_time_msg(est.stamp)
    out = MarkerArray()

    topk = getattr(est, "topk", None)
    tiles = _marker("topk_tiles", 0, Marker.CUBE_LIST, frame_id, stamp)
    tiles.scale.x = tiles.scale.y = max(float(tile_size_m), 0.1)
    tiles.scale.z = 0.2
    if topk is not None:
        en = topk_en(topk)
        k = len(en)
        for i, (e, n) in enumerate(en):
            tiles.points.append(Point(x=float(e), y=float(n), z=0.0))
            shade = i / max(k - 1, 1)
            tiles.colors.append(_color(1.0, 0.8 * shade, 0.0, 0.6))
    if not tiles.points:
        tiles.action = Marker.DELETE
    out.markers.append(tiles)

    ell = _marker("covariance", 0, Marker.LINE_STRIP, frame_id, stamp)
    ell.scale.x = 0.5
    ell.color = _color(1.0, 0.0, 1.0)
    cov = _cov2(est)
    if cov is not None and math.isfinite(est.east) and math.isfinite(est.north):
        ell.points = ellipse_points(float(est.east), float(est.north), cov)
    else:
        ell.action = Marker.DELETE
    out.markers.append(ell)

    for ns, trail, color in (("gps_trail", gps_trail, _color(0.0, 0.9, 0.0)),
                             ("estimate_trail", estimate_trail, _color(0.1, 0.4, 1.0))):
        m = _marker(ns, 0, Marker.LINE_STRIP, frame_id, stamp)
        m.scale.x = 0.8
        m.color = color
        m.points = [Point(x=float(e), y=float(n), z=0.0) for e, n in trail]
        if len(m.points) < 2:
            m.action = Marker.DELETE
        out.markers.append(m)

    text = _marker("state", 0, Marker.TEXT_VIEW_FACING, frame_id, stamp)
    text.pose.position.x = float(est.east) if math.isfinite(est.east) else 0.0
    text.pose.position.y = float(est.north) if math.isfinite(est.north) else 0.0
    text.pose.position.z = 8.0
    text.scale.z = 4.0
    text.color = _color(1.0, 1.0, 1.0)
    sigma = math.sqrt(math.sqrt(max(np.linalg.det(cov), 0.0))) if cov is not None else float("nan")
    text.text = (f"{'FALLBACK' if est.fallback_active else 'gps ok'} {getattr(est, 'source', '')} "
                 f"conf {float(getattr(est, 'confidence', float('nan'))):.2f} +-{sigma:.1f} m")
    out.markers.append(text)
    return out


# ----------------------------------------------------------------------------------------------------- diagnostics


def _flatten(prefix: str, value, out: list[KeyValue]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, float):
        out.append(KeyValue(key=prefix, value=f"{value:.6g}"))
    else:
        out.append(KeyValue(key=prefix, value=str(value)))


def key_values(d: Mapping) -> list[KeyValue]:
    """A nested dict as KeyValues with dotted keys (``latency_ms.encode`` ...)."""
    out: list[KeyValue] = []
    _flatten("", d, out)
    return out


def status(name: str, level: bytes, message: str, values: Mapping, hardware_id: str = "geoloc_node"
           ) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=key_values(values))


def diagnostic_array(stamp: Time, statuses: Iterable[DiagnosticStatus]) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = list(statuses)
    return msg


LEVEL_OK, LEVEL_WARN, LEVEL_ERROR, LEVEL_STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
                                                  DiagnosticStatus.STALE)
