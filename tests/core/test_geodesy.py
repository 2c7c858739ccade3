import math

import numpy as np
import pytest

from geoloc_node.errors import CoordinateError
from geoloc_node.geodesy import LocalFrame, heading_to_yaw, yaw_to_heading


def test_round_trip_and_scale():
    frame = LocalFrame(47.3769, 8.5417)
    e, n = frame.to_en([47.3769, 47.3869], [8.5417, 8.5517])
    assert abs(e[0]) < 1e-6 and abs(n[0]) < 1e-6
    # 0.01 degree of latitude is about 1112 m, of longitude at 47.4 deg about 754 m
    assert n[1] == pytest.approx(1112.4, abs=2.0)
    assert e[1] == pytest.approx(754.3, abs=2.0)
    lat, lon = frame.to_latlon(e, n)
    assert np.allclose(lat, [47.3769, 47.3869], atol=1e-9) and np.allclose(lon, [8.5417, 8.5517], atol=1e-9)


def test_bad_coordinates_are_refused():
    frame = LocalFrame(0.0, 0.0)
    for lat, lon in [(math.nan, 0.0), (0.0, math.inf), (91.0, 0.0), (0.0, -181.0)]:
        with pytest.raises(CoordinateError):
            frame.to_en(lat, lon)
    with pytest.raises(CoordinateError):
        frame.to_latlon(math.nan, 0.0)
    with pytest.raises(CoordinateError):
        LocalFrame(math.nan, 0.0)


@pytest.mark.parametrize("heading,yaw", [(0.0, math.pi / 2), (90.0, 0.0), (180.0, -math.pi / 2), (270.0, -math.pi)])
def test_heading_yaw_conventions(heading, yaw):
    assert heading_to_yaw(heading) == pytest.approx(yaw)
    assert yaw_to_heading(heading_to_yaw(heading)) == pytest.approx(heading % 360.0)
