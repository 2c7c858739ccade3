"""The one conversion between ROS messages and the pipeline's plain records, both ways.

Duck-typed: rclpy messages and the objects ``rosbags`` deserialises share field names, so the same functions serve the
node and the replay tool, and neither imports the other's library here.

* in: :func:`gps_from_msg` (NavSatFix), :func:`odometry_from_msg` (Odometry), :func:`frame_from_msg` (Image or
  CompressedImage). A message that cannot be turned into a record raises :class:`BadMessageError` naming the problem
  (the caller counts and skips it); a NaN fix is kept as is, the health monitor judges it.
* out: ``*_fields`` functions return keyword dictionaries for NavSatFix, PoseWithCovarianceStamped, String,
  MarkerArray and DiagnosticArray given a ``types`` callable that maps a ROS type name such as
  ``"sensor_msgs/msg/NavSatFix"`` to its class (``typestore.types.__getitem__`` in replay; an import in the node).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import GeolocError
from .records import CameraFrame, GpsFix, Odometry


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
def _header(types, stamp: float, frame_id: str):
    sec = math.floor(stamp)
    nsec = min(int(round((stamp - sec) * 1e9)), 999_999_999)
    return types("std_msgs/msg/Header")(stamp=types("builtin_interfaces/msg/Time")(sec=int(sec), nanosec=nsec),
                                        frame_id=frame_id)


def quaternion_fields(yaw: float) -> dict:
    return {"x": 0.0, "y": 0.0, "z": math.sin(yaw / 2.0), "w": math.cos(yaw / 2.0)}


def navsatfix_fields(types, est, frame_id: str = "map") -> dict:
    """NavSatFix of an estimate (status FIX when trustworthy, else NO_FIX; covariance DIAGONAL/KNOWN in ENU)."""
    cov = np.zeros(9)
    cov[0], cov[1], cov[3], cov[4] = est.cov[0, 0], est.cov[0, 1], est.cov[1, 0], est.cov[1, 1]
    cov[8] = 1e6  # no altitude information
    status = types("sensor_msgs/msg/NavSatStatus")(status=0 if est.trustworthy else -1, service=0)
    return {"header": _header(types, est.stamp, frame_id), "status": status, "latitude": float(est.lat),
            "longitude": float(est.lon), "altitude": 0.0, "position_covariance": cov,
            "position_covariance_type": 3}


def pose_fields(types, est, frame_id: str = "map") -> dict:
    """PoseWithCovarianceStamped (ENU metres in ``frame_id``; 6x6 covariance, unknown axes at 1e6)."""
    cov = np.zeros(36)
    cov[0], cov[1], cov[6], cov[7] = est.cov[0, 0], est.cov[0, 1], est.cov[1, 0], est.cov[1, 1]
    cov[14] = cov[21] = cov[28] = 1e6
    cov[35] = 1e6 if est.yaw is None else float(getattr(est, "yaw_var", 0.1))
    pose = types("geometry_msgs/msg/Pose")(
        position=types("geometry_msgs/msg/Point")(x=float(est.east), y=float(est.north), z=0.0),
        orientation=types("geometry_msgs/msg/Quaternion")(**quaternion_fields(est.yaw or 0.0)))
    pwc = types("geometry_msgs/msg/PoseWithCovariance")(pose=pose, covariance=cov)
    return {"header": _header(types, est.stamp, frame_id), "pose": pwc}


def string_fields(types, text: str) -> dict:
    return {"data": text}


def marker_array_fields(types, est, frame_id: str = "map", ns: str = "geoloc_topk") -> dict:
    """MarkerArray: a sphere per top-k tile (green = best), a DELETEALL first so stale markers disappear."""
    Marker = types("visualization_msgs/msg/Marker")
    markers = [_marker(types, Marker, est.stamp, frame_id, ns, 0, 3, 0.0, 0.0, (0, 0, 0, 0), 0.0)]  # DELETEALL
    topk = est.topk or ()
    dists = [d for (_, _, d) in topk]
    dmin, dmax = (min(dists), max(dists)) if dists else (0, 1)
    for i, (e, n, d) in enumerate(topk):
        t = 0.0 if dmax == dmin else (d - dmin) / (dmax - dmin)
        markers.append(_marker(types, Marker, est.stamp, frame_id, ns, i + 1, 0, e, n, (t, 1.0 - t, 0.0, 0.8), 6.0))
    return {"markers": markers}


def _marker(types, Marker, stamp, frame_id, ns, mid, action, e, n, rgba, size):
    fields = {
        "header": _header(types, stamp, frame_id), "ns": ns, "id": int(mid), "type": 2, "action": int(action),
        "pose": types("geometry_msgs/msg/Pose")(
            position=types("geometry_msgs/msg/Point")(x=float(e), y=float(n), z=0.0),
            orientation=types("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=0.0, w=1.0)),
        "scale": types("geometry_msgs/msg/Vector3")(x=size, y=size, z=size),
        "color": types("std_msgs/msg/ColorRGBA")(r=float(rgba[0]), g=float(rgba[1]), b=float(rgba[2]),
                                                   a=float(rgba[3])),
        "lifetime": types("builtin_interfaces/msg/Duration")(sec=0, nanosec=0), "frame_locked": False,
        "points": [], "colors": [], "texture_resource": "",
        "texture": types("sensor_msgs/msg/CompressedImage")(header=_header(types, 0.0, ""), format="",
                                                            data=np.zeros(0, np.uint8)),
        "uv_coordinates": [], "text": "", "mesh_resource": "",
        "mesh_file": types("visualization_msgs/msg/MeshFile")(filename="", data=np.zeros(0, np.uint8)),
        "mesh_use_embedded_materials": False,
    }
    # Humble's Marker lacks the texture/mesh_file fields of Jazzy: keep only the fields this type has.
    names = _field_names(Marker)
    return Marker(**{k: v for k, v in fields.items() if names is None or k in names})


def _field_names(cls):
    if hasattr(cls, "__dataclass_fields__"):
        return set(cls.__dataclass_fields__)
    if hasattr(cls, "get_fields_and_field_types"):
        return set(cls.get_fields_and_field_types())
    return None


#: Health state -> DiagnosticStatus level (OK, WARN, ERROR).
DIAG_LEVEL = {"HEALTHY": 0, "DEGRADED": 1, "LOST": 2}


def diagnostic_array_fields(types, stamp: float, status: dict, name: str = "geoloc_node") -> dict:
    """DiagnosticArray from :meth:`Pipeline.status`: level from the GPS health, every entry as a key/value."""
    KeyValue = types("diagnostic_msgs/msg/KeyValue")
    health = status.get("health", {})
    level = DIAG_LEVEL.get(health.get("state", "LOST"), 2)
    message = f"GPS {health.get('state', '?')}: {health.get('reason', '')}"
    if status.get("fallback_active"):
        message += "; visual fallback active"
    values = [KeyValue(key=k, value=str(v)) for k, v in _flatten_status(status).items()]
    st = types("diagnostic_msgs/msg/DiagnosticStatus")(level=bytes([level]) if _level_is_bytes(types) else level,
                                                       name=name, message=message, hardware_id="", values=values)
    return {"header": _header(types, stamp, ""), "status": [st]}


def _level_is_bytes(types) -> bool:
    # rclpy's DiagnosticStatus.level is a byte (bytes of length 1); rosbags uses an int.
    return not hasattr(types("diagnostic_msgs/msg/DiagnosticStatus"), "__dataclass_fields__")


def _flatten_status(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten_status(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
