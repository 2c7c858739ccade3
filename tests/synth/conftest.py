import pytest

from geoloc_node.synth.world import WorldConfig, make_world

SMALL = WorldConfig(size_m=300.0, resolution_m=0.5, seed=7, block_m=90.0)


@pytest.fixture(scope="session")
def small_config():
    return SMALL


@pytest.fixture(scope="session")
def small_world():
    """A 300 m procedural world shared by the tests that only read it (about a second to build)."""
    return make_world(SMALL)
