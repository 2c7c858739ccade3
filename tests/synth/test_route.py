import numpy as np
import pytest

from geoloc_node.synth.grid import Material
from geoloc_node.synth.route import RouteError, drive_trajectory


def test_drive_follows_the_roads_with_turns_stops_and_speed_limits(small_world):
    trajectory = drive_trajectory(small_world.road_graph, np.random.default_rng(11), 150.0, (3.0, 15.0), 0.5)
    assert trajectory.duration == pytest.approx(150.0)
    assert trajectory.speed.max() <= 15.0 + 1e-9
    moving = trajectory.speed > 0.05
    dt = trajectory.t[1] - trajectory.t[0]
    assert (~moving).sum() * dt >= 2.0  # at least one full stop of seconds
    # Cruising (not accelerating or braking for a stop) stays at or above the minimum speed.
    assert np.percentile(trajectory.speed[moving], 25) >= 3.0
    # It turns: the heading changes by more than 60 degrees over the drive.
    assert np.ptp(trajectory.yaw) > np.radians(60)
    # It stays on the carriageway (rounded corners may clip a kerb).
    material = small_world.sample(trajectory.east, trajectory.north)["material"]
    assert np.isin(material, [Material.ROAD, Material.MARKING, Material.CAR]).mean() > 0.95
    # Speed is consistent with the positions.
    step = np.hypot(np.diff(trajectory.east), np.diff(trajectory.north)) / dt
    assert np.abs(step - trajectory.speed[:-1]).max() < 0.5
    # Heading changes smoothly (dead ends: the vehicle stops and turns during the dwell, not while rolling).
    yaw_rate = np.gradient(trajectory.yaw, trajectory.t)
    assert np.abs(yaw_rate[trajectory.speed > 0.5]).max() < 1.5


def test_same_seed_same_route(small_world):
    a = drive_trajectory(small_world.road_graph, np.random.default_rng(5), 30.0)
    b = drive_trajectory(small_world.road_graph, np.random.default_rng(5), 30.0)
    assert np.array_equal(a.east, b.east) and np.array_equal(a.yaw, b.yaw)
    with pytest.raises(RouteError, match="speed range"):
        drive_trajectory(small_world.road_graph, np.random.default_rng(5), 30.0, (5.0, 2.0))
