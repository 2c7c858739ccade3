"""The one conversion between ROS messages and the pipeline's plain records, both ways.

Duck-typed: rclpy messages and the objects ``rosbags`` deserialises share field names, so the same functions serve the
node and the replay tool, and neither imports the other's library here.

* in: :func:`gps_from_msg` (NavSatFix), :func:`odometry_from_msg` (Odometry), :func:`frame_from_msg` (Image or
  CompressedImage). A message that cannot be turned into a record raises :class:`BadMessageError` naming the problem
  (the caller counts and skips it); a NaN fix is kept as is, the health monitor judges it.
* out: ``*_fields`` functions return keyword dictionaries for NavSatFix, PoseWithCovarianceStamped, MarkerArray and
  DiagnosticArray given a ``types`` callable that maps a ROS type name such as ``"sensor_msgs/msg/NavSatFix"`` to its
  class (a rosbags typestore's in replay; ``geoloc_node.ros.interfaces.rclpy_type`` in the node). These decide the
  output conventions (status, covariance type, altitude, marker layout, diagnostic levels); the session
  (:mod:`geoloc_node.session`) decides when each is published, for the node and a replay alike.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import numpy as np

from .errors import GeolocError
from .records import CameraFrame, GpsFix, Odometry, major_std_m


class BadMessageError(GeolocError, ValueError):
    """A message cannot be converted (truncated image data, unknown encoding, undecodable JPEG, ...)."""


# -- in ---------------------------------------------------------------------------------------------------------
def stamp_of(msg) -> float:
    """Header stamp in float seconds (``nanosec`` is not assumed normalised: 1e9 ns is one more second)."""
    st = msg.header.stamp
    return float(st.sec) + float(st.nanosec) * 1e-9


def gps_from_msg(msg) -> GpsFix:
    """sensor_msgs/NavSatFix -> :class:`GpsFix` (NaN coordinates are kept; the health monitor rejects them)."""
    cov = tuple(float(c) for c in np.asarray(msg.position_covariance, dtype=np.float64).ravel()[:9])
    if len(cov) != 9:
        cov = (math.nan,) * 9
    return GpsFix(stamp=stamp_of(msg), lat=float(msg.latitude), lon=float(msg.longitude), alt=float(msg.altitude),
                  status=int(msg.status.status), covariance=cov,
                  covariance_type=int(msg.position_covariance_type), frame_id=str(msg.header.frame_id))


def yaw_from_quaternion(q) -> float:
    """ENU yaw (rad) of a geometry_msgs/Quaternion."""
    x, y, z, w = float(q.x), float(q.y), float(q.z), float(q.w)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def odometry_from_msg(msg) -> Odometry:
    """nav_msgs/Odometry -> :class:`Odometry` (planar pose and twist)."""
    p = msg.pose.pose
    t = msg.twist.twist
    rec = Odometry(stamp=stamp_of(msg), x=float(p.position.x), y=float(p.position.y),
                   yaw=yaw_from_quaternion(p.orientation), v=float(t.linear.x), yaw_rate=float(t.angular.z),
                   frame_id=str(msg.header.frame_id), child_frame_id=str(msg.child_frame_id))
    if not all(math.isfinite(v) for v in (rec.x, rec.y, rec.yaw, rec.v, rec.yaw_rate)):
        raise BadMessageError("odometry with NaN or infinite pose/twist")
    return rec


#: Image encodings we decode: channels, and the OpenCV conversion to RGB (None: already RGB or mono).
_ENCODINGS = {"rgb8": (3, None), "bgr8": (3, "BGR2RGB"), "mono8": (1, "GRAY2RGB"), "8uc1": (1, "GRAY2RGB"),
              "8uc3": (3, "BGR2RGB"), "rgba8": (4, "RGBA2RGB"), "bgra8": (4, "BGRA2RGB"), "8uc4": (4, "BGRA2RGB")}


def _as_bytes(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
    return np.frombuffer(bytes(data), dtype=np.uint8)  # array.array / bytes / list from rclpy


def image_from_msg(msg) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 (H, W, 3). Checks that the data really holds ``height * step`` bytes."""
    import cv2

    enc = str(msg.encoding).lower()
    if enc not in _ENCODINGS:
        raise BadMessageError(f"image encoding {msg.encoding!r} is not supported (use one of {sorted(_ENCODINGS)})")
    ch, conv = _ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise BadMessageError(f"image of size {w}x{h}")
    if step < w * ch:
        raise BadMessageError(f"image step {step} is shorter than a row of {w} {enc} pixels ({w * ch} bytes)")
    data = _as_bytes(msg.data)
    if data.size < step * h:
        raise BadMessageError(f"image claims {w}x{h} {enc} (step {step}, {step * h} bytes) but carries {data.size} "
                              "bytes")
    img = data[: step * h].reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if conv is None:
        return np.ascontiguousarray(img)
    return cv2.cvtColor(np.ascontiguousarray(img), getattr(cv2, f"COLOR_{conv}"))


def compressed_image_from_msg(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG) -> RGB uint8 (H, W, 3)."""
    import cv2

    data = _as_bytes(msg.data)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise BadMessageError(f"compressed image ({msg.format!r}, {data.size} bytes) could not be decoded")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def frame_from_msg(msg) -> CameraFrame:
    """Image or CompressedImage -> :class:`CameraFrame` (decoded RGB)."""
    if hasattr(msg, "encoding"):
        img = image_from_msg(msg)
    elif hasattr(msg, "format"):
        img = compressed_image_from_msg(msg)
    else:
        raise BadMessageError(f"not an image message: {type(msg).__name__}")
    return CameraFrame(stamp=stamp_of(msg), image=img, frame_id=str(msg.header.frame_id))


# -- out --------------------------------------------------------------------------------------------------------
# The session builds every output message here, with rclpy classes in the node and rosbags typestore classes in a
# replay, so that a replayed bag carries the estimates exactly as the node publishes them. Every constructor
# gets every field (rosbags dataclasses have no defaults); fields a distribution's type lacks are dropped (Humble's
# Marker has no texture/mesh_file).

#: sensor_msgs/NavSatStatus and NavSatFix constants (the same on Humble and Jazzy; Humble lacks SERVICE_UNKNOWN).
STATUS_NO_FIX, STATUS_FIX = -1, 0
SERVICE_UNKNOWN = 0
COVARIANCE_TYPE_UNKNOWN, COVARIANCE_TYPE_DIAGONAL_KNOWN, COVARIANCE_TYPE_KNOWN = 0, 2, 3
#: visualization_msgs/Marker constants.
MARKER_LINE_STRIP, MARKER_CUBE_LIST, MARKER_TEXT_VIEW_FACING = 4, 6, 9
MARKER_ADD, MARKER_DELETE = 0, 2
#: diagnostic_msgs/DiagnosticStatus levels.
LEVEL_OK, LEVEL_WARN, LEVEL_ERROR, LEVEL_STALE = 0, 1, 2, 3
#: Defaults of the node's ``altitude_variance_m2`` and ``unknown_variance`` parameters (tests/ros checks they agree).
ALTITUDE_VARIANCE_M2 = 1.0e4
UNKNOWN_VARIANCE = 1.0e6


def _field_names(cls):
    if hasattr(cls, "__dataclass_fields__"):
        return set(cls.__dataclass_fields__)
    if hasattr(cls, "get_fields_and_field_types"):
        return set(cls.get_fields_and_field_types())
    return None


def _new(types, name: str, **fields):
    """``types(name)(**fields)`` keeping only the fields that this distribution's type has."""
    cls = types(name)
    names = _field_names(cls)
    return cls(**{k: v for k, v in fields.items() if names is None or k in names})


def time_msg(types, stamp):
    """Float seconds (or anything with ``sec``/``nanosec``) -> builtin_interfaces/Time, rounded to the nanosecond,
    never negative nor past what its int32 seconds hold."""
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    else:
        s = float(stamp)
        ns = int(round(s * 1e9)) if math.isfinite(s) else 0
    ns = min(max(ns, 0), MAX_TIME_NS)  # builtin_interfaces/Time.sec is an int32
    return types("builtin_interfaces/msg/Time")(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


#: The latest time builtin_interfaces/Time can hold (its ``sec`` is an int32).
MAX_TIME_NS = (2**31 - 1) * 1_000_000_000 + 999_999_999


def header_msg(types, stamp, frame_id: str):
    return types("std_msgs/msg/Header")(stamp=time_msg(types, stamp), frame_id=str(frame_id))


def quaternion_fields(yaw: float) -> dict:
    return {"x": 0.0, "y": 0.0, "z": math.sin(yaw / 2.0), "w": math.cos(yaw / 2.0)}


def cov2(est) -> np.ndarray | None:
    """The estimate's east/north covariance (symmetrised, m^2), or None when it is missing, not finite or not
    positive."""
    c = getattr(est, "cov", None)
    if c is None:
        return None
    cov = np.asarray(c, dtype=np.float64)
    if cov.size != 4:
        return None
    cov = cov.reshape(2, 2)
    if not np.isfinite(cov).all() or cov[0, 0] <= 0.0 or cov[1, 1] <= 0.0:
        return None
    return 0.5 * (cov + cov.T)


def navsatfix_fields(types, est, *, frame_id: str = "base_link", altitude: float = math.nan,
                     altitude_variance_m2: float = ALTITUDE_VARIANCE_M2) -> dict:
    """NavSatFix of an estimate, with the conventions navsat_transform expects (docs/ros.md, "~/fix conventions"):

    * ``status.status`` FIX only when the estimate is trustworthy and every number is finite, else NO_FIX;
      ``status.service`` SERVICE_UNKNOWN (no constellation produced this fix). Never NaN together with FIX.
    * ``position_covariance`` ENU row-major in m^2: east/north from the estimate, up = ``altitude_variance_m2``; type
      DIAGONAL_KNOWN when the east/north covariance is diagonal, KNOWN otherwise (UNKNOWN, all zeros, with NO_FIX when
      there is no usable covariance).
    * ``altitude``: the last finite GPS altitude (the fallback estimates east/north only), 0.0 before any.
    """
    lat, lon = float(est.lat), float(est.lon)
    cov = cov2(est)
    alt = float(altitude) if altitude is not None and math.isfinite(float(altitude)) else 0.0
    finite = math.isfinite(lat) and math.isfinite(lon)
    fix = finite and cov is not None and bool(est.trustworthy)
    if cov is None:
        pc = np.zeros(9)
        ctype = COVARIANCE_TYPE_UNKNOWN
    else:
        pc = np.array([cov[0, 0], cov[0, 1], 0.0, cov[1, 0], cov[1, 1], 0.0, 0.0, 0.0, float(altitude_variance_m2)],
                      dtype=np.float64)
        ctype = COVARIANCE_TYPE_DIAGONAL_KNOWN if cov[0, 1] == 0.0 else COVARIANCE_TYPE_KNOWN
    status = types("sensor_msgs/msg/NavSatStatus")(status=STATUS_FIX if fix else STATUS_NO_FIX,
                                                   service=SERVICE_UNKNOWN)
    return {"header": header_msg(types, est.stamp, frame_id), "status": status,
            "latitude": lat if finite else 0.0, "longitude": lon if finite else 0.0, "altitude": alt,
            "position_covariance": pc, "position_covariance_type": ctype}


def pose_fields(types, est, *, frame_id: str = "map", altitude_variance_m2: float = ALTITUDE_VARIANCE_M2,
                unknown_variance: float = UNKNOWN_VARIANCE) -> dict:
    """PoseWithCovarianceStamped in the map frame (ENU tangent plane at the table origin): x east, y north, z 0.
    Orientation: the ENU yaw when estimated, else identity with ``unknown_variance``; roll/pitch ``unknown_variance``
    (never -1, which robot_localization rejects); z ``altitude_variance_m2``."""
    yaw = getattr(est, "yaw", None)
    has_yaw = yaw is not None and math.isfinite(float(yaw))
    q = quaternion_fields(float(yaw)) if has_yaw else {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}
    cov = cov2(est)
    if cov is None:
        cov = np.eye(2) * float(unknown_variance)
    c = np.zeros(36)
    c[0], c[1], c[6], c[7] = cov[0, 0], cov[0, 1], cov[1, 0], cov[1, 1]
    c[14] = float(altitude_variance_m2)
    c[21] = c[28] = float(unknown_variance)
    yaw_var = getattr(est, "yaw_var", None)
    c[35] = (float(yaw_var) if (has_yaw and yaw_var is not None and math.isfinite(float(yaw_var)))
             else float(unknown_variance))
    east, north = float(est.east), float(est.north)
    pose = types("geometry_msgs/msg/Pose")(
        position=types("geometry_msgs/msg/Point")(x=east, y=north, z=0.0),
        orientation=types("geometry_msgs/msg/Quaternion")(**q))
    return {"header": header_msg(types, est.stamp, frame_id),
            "pose": types("geometry_msgs/msg/PoseWithCovariance")(pose=pose, covariance=c)}


# -- markers
def ellipse_points_en(east: float, north: float, cov: np.ndarray, sigma: float = 2.0, n: int = 48) -> np.ndarray:
    """(n + 1, 2) east/north points of the ``sigma`` covariance ellipse around (east, north), closed."""
    w, v = np.linalg.eigh(cov)
    axes = v * (sigma * np.sqrt(np.maximum(w, 0.0)))
    t = np.linspace(0.0, 2.0 * math.pi, n + 1)
    xy = axes @ np.stack([np.cos(t), np.sin(t)], axis=0)
    return np.stack([east + xy[0], north + xy[1]], axis=1)


def topk_en(topk) -> np.ndarray:
    """East/north (m) of the top-k tiles: from ``(east, north, distance)`` tuples or an object with ``.en``."""
    if topk is None:
        return np.zeros((0, 2))
    if hasattr(topk, "en"):
        return np.asarray(topk.en, dtype=np.float64).reshape(-1, 2)
    rows = [tuple(r)[:2] for r in topk]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def _point(types, e, n, z=0.0):
    return types("geometry_msgs/msg/Point")(x=float(e), y=float(n), z=float(z))


class PointTrail:
    """The last ``maxlen`` (east, north) positions, each with its Point message made once, when it is added: every
    MarkerArray carries the whole trail (``output.trail_length``, 300 by default), and making the same points again for
    each one was most of the markers' cost. Iterates as (east, north) pairs. The Points are shared by the MarkerArrays
    that carry them; nothing changes a message after it is built (publishing serialises it)."""

    def __init__(self, types, maxlen: int, pairs=()):
        self._point = types("geometry_msgs/msg/Point")
        self._pairs: deque = deque(maxlen=maxlen)
        self._points: deque = deque(maxlen=maxlen)
        for e, n in pairs:
            self.append(e, n)

    @property
    def maxlen(self) -> int:
        return self._pairs.maxlen

    def resized(self, maxlen: int) -> PointTrail:
        """The same trail holding at most ``maxlen`` (its newest) positions."""
        return PointTrail(lambda _name: self._point, maxlen, self._pairs)

    def append(self, east: float, north: float) -> None:
        east, north = float(east), float(north)
        self._pairs.append((east, north))
        self._points.append(self._point(x=east, y=north, z=0.0))

    def clear(self) -> None:
        self._pairs.clear()
        self._points.clear()

    def points(self) -> list:
        return list(self._points)

    def __iter__(self):
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)


def _points(types, en) -> list:
    """Points at height 0 of (east, north) pairs (a :class:`PointTrail`'s own). The class is looked up once: the
    markers carry about 570 points (two trails, ellipse, ring), and a lookup and a call per point were a third of a
    demo replay's output cost."""
    if isinstance(en, PointTrail):
        return en.points()
    point = types("geometry_msgs/msg/Point")
    if isinstance(en, np.ndarray):
        en = en.tolist()  # Python floats at once, the same values as float() of each element
    return [point(x=float(e), y=float(n), z=0.0) for e, n in en]


def _color(types, r, g, b, a=1.0):
    return types("std_msgs/msg/ColorRGBA")(r=float(r), g=float(g), b=float(b), a=float(a))


def _marker(types, stamp, frame_id, ns, mtype, *, action=MARKER_ADD, position=(0.0, 0.0, 0.0), scale=(1.0, 1.0, 1.0),
            color=(0.0, 0.0, 0.0, 0.0), points=(), colors=(), text=""):
    return _new(
        types, "visualization_msgs/msg/Marker",
        header=header_msg(types, stamp, frame_id), ns=ns, id=0, type=int(mtype), action=int(action),
        pose=types("geometry_msgs/msg/Pose")(position=_point(types, *position),
                                             orientation=types("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=0.0,
                                                                                               w=1.0)),
        scale=types("geometry_msgs/msg/Vector3")(x=float(scale[0]), y=float(scale[1]), z=float(scale[2])),
        color=_color(types, *color), lifetime=types("builtin_interfaces/msg/Duration")(sec=0, nanosec=0),
        frame_locked=False, points=list(points), colors=list(colors), texture_resource="",
        texture=types("sensor_msgs/msg/CompressedImage")(header=header_msg(types, 0.0, ""), format="",
                                                         data=np.zeros(0, np.uint8)),
        uv_coordinates=[], text=str(text), mesh_resource="",
        mesh_file=types("visualization_msgs/msg/MeshFile")(filename="", data=np.zeros(0, np.uint8)),
        mesh_use_embedded_materials=False)


def marker_array_fields(types, est, *, frame_id: str = "map", gps_trail=(), estimate_trail=(),
                        tile_size_m: float = 10.0) -> dict:
    """MarkerArray: top-k tiles (cubes, red = best), the 2-sigma covariance ellipse, GPS (green) and estimate (blue)
    trails, the protection level circle (green: trustworthy, orange: not) and a text label with the state and the
    integrity verdict, in the map frame, stamped with the estimate's time. A marker with nothing to show is sent as
    DELETE (fixed namespaces and ids: RViz replaces, never accumulates)."""
    stamp = est.stamp
    east, north = float(est.east), float(est.north)
    out = []

    en = topk_en(getattr(est, "topk", None))
    k = len(en)
    tile = max(float(tile_size_m), 0.1)
    out.append(_marker(types, stamp, frame_id, "topk_tiles", MARKER_CUBE_LIST,
                       action=MARKER_ADD if k else MARKER_DELETE, scale=(tile, tile, 0.2),
                       points=_points(types, en),
                       colors=[_color(types, 1.0, 0.8 * (i / max(k - 1, 1)), 0.0, 0.6) for i in range(k)]))

    cov = cov2(est)
    ok = cov is not None and math.isfinite(east) and math.isfinite(north)
    ell = _points(types, ellipse_points_en(east, north, cov)) if ok else []
    out.append(_marker(types, stamp, frame_id, "covariance", MARKER_LINE_STRIP,
                       action=MARKER_ADD if ok else MARKER_DELETE, scale=(0.5, 0.0, 0.0),
                       color=(1.0, 0.0, 1.0, 1.0), points=ell))

    for ns, trail, color in (("gps_trail", gps_trail, (0.0, 0.9, 0.0, 1.0)),
                             ("estimate_trail", estimate_trail, (0.1, 0.4, 1.0, 1.0))):
        pts = _points(types, trail)
        out.append(_marker(types, stamp, frame_id, ns, MARKER_LINE_STRIP,
                           action=MARKER_ADD if len(pts) >= 2 else MARKER_DELETE, scale=(0.8, 0.0, 0.0),
                           color=color, points=pts))

    hpl = float(getattr(est, "hpl_m", float("inf")))
    trusted = bool(getattr(est, "trustworthy", False))
    ring = ok and math.isfinite(hpl) and hpl > 0.0
    circle = _points(types, ((east + hpl * math.cos(a), north + hpl * math.sin(a))
                             for a in np.linspace(0.0, 2.0 * math.pi, 65))) if ring else []
    out.append(_marker(types, stamp, frame_id, "protection_level", MARKER_LINE_STRIP,
                       action=MARKER_ADD if ring else MARKER_DELETE, scale=(0.4, 0.0, 0.0),
                       color=(0.0, 0.8, 0.3, 0.9) if trusted else (1.0, 0.3, 0.0, 0.9), points=circle))

    sigma = major_std_m(cov) if cov is not None else float("nan")  # the one sigma (Estimate.std_m)
    text = (f"{'FALLBACK' if est.fallback_active else 'gps ok'} {getattr(est, 'source', '')} "
            f"conf {float(getattr(est, 'confidence', float('nan'))):.2f} +-{sigma:.1f} m "
            + (f"TRUSTED hpl {hpl:.0f} m" if trusted else
               f"NOT TRUSTED: {getattr(est, 'integrity', '') or 'no evidence'}"[:90]))
    out.append(_marker(types, stamp, frame_id, "state", MARKER_TEXT_VIEW_FACING,
                       position=(east if math.isfinite(east) else 0.0, north if math.isfinite(north) else 0.0, 8.0),
                       scale=(0.0, 0.0, 4.0), color=(1.0, 1.0, 1.0, 1.0), text=text))
    return {"markers": out}


# -- diagnostics
def _flatten(prefix: str, value, out: list) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, float):
        out.append((prefix, f"{value:.6g}"))
    else:
        out.append((prefix, str(value)))


def flatten_values(d: Mapping) -> list[tuple[str, str]]:
    """A nested dict as (dotted key, text) pairs (``latency.encode.mean_ms`` ...; floats to 6 significant digits)."""
    out: list = []
    _flatten("", d, out)
    return out


def _level(cls, level):
    """An int or a one-byte ``bytes`` level as the type's ``level`` field wants it (rclpy: bytes; rosbags: int)."""
    lv = level[0] if isinstance(level, bytes | bytearray) else int(level)
    return lv if hasattr(cls, "__dataclass_fields__") else bytes([lv])


def diagnostic_status_msg(types, name: str, level, message: str, values: Mapping, hardware_id: str = "geoloc_node"):
    cls = types("diagnostic_msgs/msg/DiagnosticStatus")
    KeyValue = types("diagnostic_msgs/msg/KeyValue")
    return cls(level=_level(cls, level), name=name, message=message, hardware_id=hardware_id,
               values=[KeyValue(key=k, value=v) for k, v in flatten_values(values)])


def diagnostic_array_fields(types, stamp, statuses) -> dict:
    return {"header": header_msg(types, stamp, ""), "status": list(statuses)}


#: Names of the node's statuses in /diagnostics.
LOCALIZATION_STATUS, INPUTS_STATUS = "geoloc_node: localization", "geoloc_node: inputs"
CAMERA_STATUS = "geoloc_node: camera"


def localization_diagnostic(status: Mapping, *, lifecycle_state: str = "active", last_error: str | None = None,
                            publish_policy: str = "fallback_only", fallback_default: bool = False
                            ) -> tuple[int, str, dict]:
    """(level, message, values) of the "geoloc_node: localization" status from :meth:`Pipeline.status`: OK while GPS
    is healthy; WARN with the visual fallback active and its estimate trustworthy (with its protection level);
    ERROR when GPS is lost and the fallback's estimate is not trustworthy (with the integrity monitor's reason), or
    configure failed."""
    status = dict(status)
    health = status.get("health", {}) if isinstance(status.get("health"), Mapping) else {}
    hstate = str(health.get("state", status.get("health_state", "?")))
    reason = str(health.get("reason", status.get("health_reason", "")))
    fallback = bool(status.get("fallback_active", fallback_default))
    integrity = status.get("integrity", {}) if isinstance(status.get("integrity"), Mapping) else {}
    if lifecycle_state != "active":
        level = LEVEL_ERROR if last_error else LEVEL_WARN
        message = last_error or f"{lifecycle_state}: not processing (lifecycle: configure, then activate)"
    elif hstate == "HEALTHY":
        level, message = LEVEL_OK, "GPS healthy; fallback idle"
    elif not fallback:
        level, message = LEVEL_ERROR, f"GPS {hstate}: {reason}; no fallback estimate"
    elif integrity.get("trustworthy"):
        level = LEVEL_WARN
        message = f"GPS {hstate}: {reason}; visual fallback trusted (protection level {integrity.get('hpl_m')} m)"
    else:
        level = LEVEL_ERROR
        message = (f"GPS {hstate}: {reason}; visual fallback NOT trusted: "
                   f"{integrity.get('reason', 'no estimate yet')}")
    values = {"lifecycle_state": lifecycle_state, "last_error": last_error or "none",
              "publish_policy": publish_policy, **status}
    return level, message, values
