"""Does the camera match the model? The model was trained for one camera (a 360 degree panorama, or a forward pinhole
of a given field of view); frames from another camera give codes that match nothing, yet the filter would still
converge somewhere (measured: the pinhole model on panorama frames ran at 100 % availability and 65 m error).

The check compares the model's camera with the camera's CameraInfo (image size, intrinsics K, distortion model) and,
before any CameraInfo arrives, with the image size of the frames alone (a panorama is at least twice as wide as high).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: A 360 degree panorama (equirectangular) is at least this many times as wide as high (2:1 is the full sphere).
PANORAMA_MIN_ASPECT = 1.8
#: A panorama camera covers at least this horizontal field of view (degrees).
PANORAMA_MIN_HFOV_DEG = 300.0
#: A pinhole camera's horizontal field of view may differ from the model's by this much (degrees) ...
PINHOLE_HFOV_TOLERANCE_DEG = 10.0
#: ... or this fraction of it, whichever is larger.
PINHOLE_HFOV_TOLERANCE_FRACTION = 0.15


@dataclass(frozen=True)
class CameraCheck:
    """The verdict: ``ok`` False is a mismatch (estimates are never trusted); ``complete`` says whether the field of
    view was checked (CameraInfo with intrinsics) or only the image shape."""

    ok: bool
    complete: bool
    detail: str


def camera_hfov_deg(width: int, k, distortion_model: str = "") -> float | None:
    """Horizontal field of view (degrees) from CameraInfo's K (row-major 3x3); None when K is not calibrated."""
    fx = float(k[0]) if k is not None and len(k) >= 1 else 0.0
    if not (math.isfinite(fx) and fx > 0.0 and width > 0):
        return None
    if str(distortion_model).lower() == "equirectangular":  # fx in pixels per radian, as our drives write it
        return math.degrees(width / fx)
    return math.degrees(2.0 * math.atan(width / (2.0 * fx)))


def check_camera(mode: str, model_hfov_deg: float | None, width: int, height: int, k=None,
                 distortion_model: str = "") -> CameraCheck:
    """Compare a model's camera (``mode`` 'panorama' or 'pinhole' with ``model_hfov_deg``) with a camera's image size
    and, when given, its intrinsics."""
    if width <= 0 or height <= 0:
        return CameraCheck(False, False, f"camera image size {width}x{height} is empty")
    aspect = width / height
    hfov = camera_hfov_deg(width, k, distortion_model)
    shape = f"{width}x{height} (aspect {aspect:.2f})"
    if mode == "panorama":
        if aspect < PANORAMA_MIN_ASPECT:
            return CameraCheck(False, hfov is not None, f"the model expects a 360 degree panorama but the camera's "
                               f"images are {shape}: a panorama is at least {PANORAMA_MIN_ASPECT:g}x as wide as high")
        if hfov is not None and hfov < PANORAMA_MIN_HFOV_DEG:
            return CameraCheck(False, True, f"the model expects a 360 degree panorama but the camera covers "
                               f"{hfov:.0f} degrees (CameraInfo K, {distortion_model or 'pinhole'})")
        return CameraCheck(True, hfov is not None, f"panorama camera {shape}" +
                           (f", {hfov:.0f} degrees" if hfov is not None else ", field of view unchecked (no K)"))
    want = float(model_hfov_deg or 0.0)
    if aspect >= PANORAMA_MIN_ASPECT and (hfov is None or hfov >= PANORAMA_MIN_HFOV_DEG):
        return CameraCheck(False, hfov is not None, f"the model expects a {want:.0f} degree forward camera but the "
                           f"images are {shape}, a panorama")
    if hfov is None:
        return CameraCheck(True, False, f"forward camera {shape}, field of view unchecked (no K in CameraInfo)")
    tol = max(PINHOLE_HFOV_TOLERANCE_DEG, PINHOLE_HFOV_TOLERANCE_FRACTION * want)
    if abs(hfov - want) > tol:
        return CameraCheck(False, True, f"the model expects a {want:.0f} degree forward camera but CameraInfo says "
                           f"{hfov:.0f} degrees (tolerance {tol:.0f})")
    return CameraCheck(True, True, f"forward camera {shape}, {hfov:.0f} degrees (model {want:.0f})")
