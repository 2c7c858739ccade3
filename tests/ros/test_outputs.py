"""Estimate -> message conventions (no node needed)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from sensor_msgs.msg import NavSatFix, NavSatStatus
from visualization_msgs.msg import Marker

from geoloc_node.ros import outputs

from .fakes import FakeEstimate

EST = FakeEstimate(stamp=12.25, east=3.0, north=4.0, cov=np.array([[4.0, 1.0], [1.0, 9.0]]), lat=47.0, lon=8.0,
                   yaw=None, source="visual", confidence=0.7, fallback_active=True, trustworthy=True,
                   topk=((3.0, 4.0, 12), (13.0, 4.0, 20)))


def _fix(est, alt=math.nan):
    return outputs.navsatfix(est, frame_id="base_link", altitude=alt, altitude_variance_m2=100.0)


def test_navsatfix_status_and_covariance():
    f = _fix(EST, alt=410.0)
    assert (f.header.stamp.sec, f.header.stamp.nanosec) == (12, 250_000_000)
    assert f.status.status == NavSatStatus.STATUS_FIX and f.status.service == outputs.SERVICE_UNKNOWN
    assert f.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN  # off-diagonal terms
    assert list(f.position_covariance) == [4.0, 1.0, 0.0, 1.0, 9.0, 0.0, 0.0, 0.0, 100.0]
    assert f.altitude == 410.0
    diag = _fix(dataclasses.replace(EST, cov=np.diag([4.0, 9.0])))
    assert diag.position_covariance_type == NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN and diag.altitude == 0.0
    assert _fix(dataclasses.replace(EST, trustworthy=False)).status.status == NavSatStatus.STATUS_NO_FIX


def test_never_nan_with_fix():
    for bad in (dataclasses.replace(EST, lat=math.nan), dataclasses.replace(EST, cov=np.full((2, 2), np.nan)),
                dataclasses.replace(EST, cov=np.zeros((2, 2)))):
        f = _fix(bad)
        assert f.status.status == NavSatStatus.STATUS_NO_FIX
        assert all(math.isfinite(v) for v in (f.latitude, f.longitude, f.altitude, *f.position_covariance))


def test_pose_and_markers():
    p = outputs.pose(dataclasses.replace(EST, yaw=math.pi / 2, yaw_var=0.01), frame_id="map",
                     altitude_variance_m2=100.0, unknown_variance=1e6)
    assert math.isclose(p.pose.pose.orientation.z, math.sqrt(0.5)) and p.pose.covariance[35] == 0.01
    assert p.pose.covariance[0] == 4.0 and p.pose.covariance[7] == 9.0 and p.pose.covariance[21] == 1e6
    m = outputs.markers(EST, frame_id="map", gps_trail=[(0, 0), (1, 1)], estimate_trail=[(0, 0)])
    by_ns = {mk.ns: mk for mk in m.markers}
    assert len(by_ns["topk_tiles"].points) == 2 and by_ns["covariance"].action == Marker.ADD
    assert by_ns["estimate_trail"].action == Marker.DELETE  # one point is not a line
    assert all(mk.header.stamp.sec == 12 for mk in m.markers)
