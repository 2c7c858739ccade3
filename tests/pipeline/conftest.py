import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakes import FakeWorld  # noqa: E402


@pytest.fixture(scope="session")
def world():
    return FakeWorld(seed=0)


@pytest.fixture(scope="session")
def table(world, tmp_path_factory):
    return world.write_table(tmp_path_factory.mktemp("tab") / "fake.gltab")
