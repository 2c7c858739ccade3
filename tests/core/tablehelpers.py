"""Tile grids and tables for the core tests."""

import numpy as np

from geoloc_node.geodesy import LocalFrame

ORIGIN = (47.3769, 8.5417)


def grid_tiles(size_m=600.0, stride_m=10.0, origin=ORIGIN):
    """Tile centres on a regular grid around ``origin``: lat, lon arrays and their (east, north)."""
    ticks = np.arange(-size_m / 2, size_m / 2 + 1e-9, stride_m)
    east, north = (a.ravel() for a in np.meshgrid(ticks, ticks))
    lat, lon = LocalFrame(*origin).to_latlon(east, north)
    return lat, lon, east, north
