import numpy as np
import pytest
from tablehelpers import ORIGIN, grid_tiles

from geoloc_node.codes import pack_signs
from geoloc_node.table import write_table


@pytest.fixture
def small_table(tmp_path):
    """A 61 x 61 tile table (600 m at 10 m stride) of random 256-bit codes, 4 heading bins."""
    rng = np.random.default_rng(7)
    lat, lon, east, north = grid_tiles()
    codes = pack_signs(rng.standard_normal((len(lat), 4, 256)))
    path = write_table(tmp_path / "t.gltab", codes, lat, lon, bits=256, tile_size_m=50, stride_m=10,
                       encoder_fingerprint="f" * 64, origin=ORIGIN)
    return path, codes, lat, lon, east, north
