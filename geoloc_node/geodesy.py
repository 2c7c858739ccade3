"""WGS84 <-> local ENU tangent plane, through pyproj; metres everywhere inside the project.

Conventions used across the project:

* positions inside are ``(east, north)`` in metres on the tangent plane at a fixed origin (ellipsoidal height 0);
* ``heading_deg`` is a compass heading: degrees clockwise from north, in [0, 360);
* ``yaw`` (filter state, ROS poses) is the ENU yaw: radians counter-clockwise from east (REP-103).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pyproj import Transformer

from .errors import CoordinateError


def check_latlon(lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """Return lat/lon as float64 arrays, or raise :class:`CoordinateError` on NaN/inf or out-of-range values."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise CoordinateError("latitude/longitude must be finite numbers (got NaN or infinity)")
    if (np.abs(lat) > 90.0).any():
        raise CoordinateError(f"latitude out of range [-90, 90]: {lat[np.abs(lat) > 90.0].ravel()[:3]}")
    if (np.abs(lon) > 180.0).any():
        raise CoordinateError(f"longitude out of range [-180, 180]: {lon[np.abs(lon) > 180.0].ravel()[:3]}")
    return lat, lon


def check_en(east, north) -> tuple[np.ndarray, np.ndarray]:
    """Return east/north as float64 arrays, or raise :class:`CoordinateError` on NaN/inf."""
    east = np.asarray(east, dtype=np.float64)
    north = np.asarray(north, dtype=np.float64)
    if not (np.isfinite(east).all() and np.isfinite(north).all()):
        raise CoordinateError("east/north must be finite numbers (got NaN or infinity)")
    return east, north


@dataclass(frozen=True)
class LocalFrame:
    """A local East-North-Up tangent plane at (lat0, lon0), height 0 on the WGS84 ellipsoid.

    pyproj's ``topocentric`` conversion is exact (no flat-earth approximation), so tables spanning hundreds of km stay
    consistent with the positions a GNSS receiver reports.
    """

    lat0: float
    lon0: float
    _transformer: Transformer = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        check_latlon(self.lat0, self.lon0)
        # pyproj feeds degrees to the geodetic input of the pipeline and applies it backwards with direction=INVERSE.
        object.__setattr__(self, "_transformer", Transformer.from_pipeline(
            "+proj=pipeline +step +proj=cart +ellps=WGS84 "
            f"+step +proj=topocentric +ellps=WGS84 +lat_0={self.lat0!r} +lon_0={self.lon0!r} +h_0=0"))

    def to_en(self, lat, lon) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 degrees -> (east, north) metres."""
        lat, lon = check_latlon(lat, lon)
        e, n, _ = self._transformer.transform(lon, lat, np.zeros_like(lat))
        return np.asarray(e, dtype=np.float64), np.asarray(n, dtype=np.float64)

    def to_latlon(self, east, north) -> tuple[np.ndarray, np.ndarray]:
        """(east, north) metres at height 0 of the tangent plane -> WGS84 degrees (lat, lon)."""
        east, north = check_en(east, north)
        lon, lat, _ = self._transformer.transform(east, north, np.zeros_like(east), direction="INVERSE")
        return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)


def heading_to_yaw(heading_deg: float) -> float:
    """Compass heading (deg, clockwise from north) -> ENU yaw (rad, counter-clockwise from east)."""
    return math.radians(90.0 - heading_deg)


def yaw_to_heading(yaw: float) -> float:
    """ENU yaw (rad) -> compass heading in [0, 360) degrees."""
    return (90.0 - math.degrees(yaw)) % 360.0
