"""A vehicle trajectory along a world's road graph: a random drive with turns, rounded corners, speed limits and stops.

``plan_route`` walks the graph (preferring roads not yet driven, never turning back unless at a dead end);
``drive_trajectory`` rounds the corners, gives every point a speed (cruise speeds per leg, slower in curves, full stops
at some junctions, bounded acceleration) and integrates it into time. Deterministic given the generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import GeolocError
from .grid import RoadGraph

ARC_STEP_M = 0.25  # spacing of the resampled path
CORNER_RADIUS_M = 9.0  # corners are rounded over at most this distance before and after the junction
LATERAL_ACCEL = 2.0  # m/s^2, sets the speed in curves: v <= sqrt(a / curvature)
ACCEL = 1.5  # m/s^2
DECEL = 2.5  # m/s^2


class RouteError(GeolocError, ValueError):
    """No drivable route can be found in the world's road graph."""


@dataclass
class Trajectory:
    """Ground-truth motion sampled densely in time (``t`` seconds from the start)."""

    t: np.ndarray
    east: np.ndarray
    north: np.ndarray
    yaw: np.ndarray  # ENU yaw, radians, unwrapped (continuous)
    speed: np.ndarray  # m/s
    route: np.ndarray  # (M, 2) the junction-to-junction polyline driven, (east, north)

    @property
    def duration(self) -> float:
        return float(self.t[-1])

    def at(self, times) -> dict[str, np.ndarray]:
        """Position, yaw (ENU rad), heading (compass deg), speed and yaw rate at the given times (interpolated)."""
        times = np.asarray(times, dtype=np.float64)
        yaw = np.interp(times, self.t, self.yaw)
        yaw_rate = np.interp(times, self.t, np.gradient(self.yaw, self.t))
        return {"east": np.interp(times, self.t, self.east), "north": np.interp(times, self.t, self.north),
                "yaw": yaw, "heading_deg": np.mod(90.0 - np.degrees(yaw), 360.0),
                "speed": np.interp(times, self.t, self.speed), "yaw_rate": yaw_rate}


def plan_route(graph: RoadGraph, rng: np.random.Generator, length_m: float) -> tuple[np.ndarray, list[int]]:
    """A walk over junctions at least ``length_m`` long: (nodes (M, 2), node indices)."""
    if len(graph.edges) == 0:
        raise RouteError("the world has no roads to drive on")
    adjacency = graph.neighbours()
    component = _largest_component(adjacency)
    if len(component) < 2:
        raise RouteError("the road graph has no connected pair of junctions to drive between")
    start = int(rng.choice(sorted(component)))
    walk = [start, int(rng.choice(adjacency[start]))]
    driven = {frozenset(walk)}
    length = float(np.linalg.norm(graph.nodes[walk[1]] - graph.nodes[walk[0]]))
    while length < length_m:
        here, before = walk[-1], walk[-2]
        options = [n for n in adjacency[here] if n != before] or [before]  # turn back only at a dead end
        incoming = graph.nodes[here] - graph.nodes[before]
        fresh = [n for n in options if frozenset((here, n)) not in driven]
        pool = fresh or options
        # Mostly straight on when the road goes on, otherwise any way: turns, and loops over fresh streets.
        turn = [abs(_turn_angle(incoming, graph.nodes[n] - graph.nodes[here])) for n in pool]
        nxt = pool[int(np.argmin(turn))] if rng.random() < 0.5 else pool[int(rng.integers(len(pool)))]
        driven.add(frozenset((here, nxt)))
        length += float(np.linalg.norm(graph.nodes[nxt] - graph.nodes[here]))
        walk.append(int(nxt))
        if len(walk) > 100000:
            raise RouteError("cannot find a route of the asked length (the road graph is degenerate)")
    return graph.nodes[walk], walk


def _turn_angle(a: np.ndarray, b: np.ndarray) -> float:
    return math.atan2(a[0] * b[1] - a[1] * b[0], a[0] * b[0] + a[1] * b[1])


def _largest_component(adjacency: list[list[int]]) -> set[int]:
    seen: set[int] = set()
    best: set[int] = set()
    for start in range(len(adjacency)):
        if start in seen or not adjacency[start]:
            continue
        component, stack = {start}, [start]
        while stack:
            for n in adjacency[stack.pop()]:
                if n not in component:
                    component.add(n)
                    stack.append(n)
        seen |= component
        if len(component) > len(best):
            best = component
    return best


TURN_BACK_RAD = math.radians(150.0)  # a junction where the route turns by more than this is a turn-back


def turn_backs(points: np.ndarray) -> np.ndarray:
    """For each interior vertex of a polyline, whether the route turns back there (a dead end)."""
    return np.array([abs(_turn_angle(points[i] - points[i - 1], points[i + 1] - points[i])) > TURN_BACK_RAD
                     for i in range(1, len(points) - 1)], bool)


def round_corners(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample a polyline about every ``ARC_STEP_M`` with each corner replaced by a quadratic Bezier arc.

    A turn-back vertex is kept sharp and is itself a sample (the vehicle stops and turns there). Returns the points,
    their arc length, and for every interior vertex the index of the sample at (or nearest to) it.
    """
    back = turn_backs(points)
    pieces = [points[:1]]
    marks = []  # per interior vertex: index, in the concatenated pieces, of the point that stands for it
    size = 1
    for i in range(1, len(points) - 1):
        prev, here, nxt = points[i - 1], points[i], points[i + 1]
        if back[i - 1]:
            piece = here[None]
            marks.append(size)
        else:
            len_in, len_out = np.linalg.norm(here - prev), np.linalg.norm(nxt - here)
            r = min(CORNER_RADIUS_M, 0.45 * len_in, 0.45 * len_out)
            a = here + (prev - here) / max(len_in, 1e-9) * r
            b = here + (nxt - here) / max(len_out, 1e-9) * r
            u = np.linspace(0, 1, 13)[:, None]
            piece = (1 - u) ** 2 * a + 2 * u * (1 - u) * here + u ** 2 * b
            marks.append(size + 6)  # the apex of the bend (u = 0.5)
        pieces.append(piece)
        size += len(piece)
    pieces.append(points[-1:])
    path = np.concatenate(pieces)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(path, axis=0), axis=1) > 1e-6])
    new_index = np.cumsum(keep) - 1  # a dropped duplicate stands where the point it repeats stands
    path = path[keep]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    s_marks = s[new_index[np.asarray(marks, np.int64)]] if marks else np.zeros(0)
    # Turn-back vertices are samples themselves; other junctions take the nearest sample.
    s_new = np.union1d(np.arange(0.0, s[-1], ARC_STEP_M), s_marks[back])
    dense = np.stack([np.interp(s_new, s, path[:, 0]), np.interp(s_new, s, path[:, 1])], axis=1)
    nearest = np.clip(np.searchsorted(s_new, s_marks), 1, len(s_new) - 1)
    nearest -= (s_marks - s_new[nearest - 1]) < (s_new[nearest] - s_marks)
    return dense, s_new, nearest.astype(np.int64)


def drive_trajectory(graph: RoadGraph, rng: np.random.Generator, duration_s: float, speed_range=(3.0, 15.0),
                     stop_probability: float = 0.25, dwell_range_s=(2.0, 6.0), dt: float = 0.01) -> Trajectory:
    """A drive of ``duration_s`` seconds: route, speed profile with stops, integrated in time and sampled every dt."""
    v_min, v_max = speed_range
    if not (0.0 < v_min <= v_max):
        raise RouteError(f"speed range {speed_range} is not 0 < min <= max")
    nodes, walk = plan_route(graph, rng, length_m=duration_s * v_max * 1.1 + 100.0)
    path, arc, junctions = round_corners(nodes)
    if len(path) < 4:
        raise RouteError("the route is too short to drive")
    ds = np.maximum(np.diff(arc), 1e-6)
    # Heading of the step leaving each point (the last point keeps the one before): exact on both sides of a turn-back.
    step_heading = np.arctan2(np.diff(path[:, 1]), np.diff(path[:, 0]))
    heading = np.unwrap(np.concatenate([step_heading, step_heading[-1:]]))
    curvature = np.abs(np.concatenate([[0.0], np.diff(heading[:-1]) / ds[:-1], [0.0]]))
    # Averaged over about 2 m: the resampled bends turn in uneven steps, the vehicle does not.
    curvature = np.convolve(curvature, np.ones(9) / 9.0, mode="same")
    # Real junctions (three or more roads meet) bound the legs and are where the vehicle may stop; the other vertices
    # only shape curved roads (OSM ways).
    degree = np.bincount(graph.edges.ravel(), minlength=len(graph.nodes))
    crossing = degree[np.asarray(walk[1:-1], np.int64)] >= 3
    # Cruise speed per leg, capped in curves, never below v_min while rolling.
    leg = np.searchsorted(junctions[crossing], np.arange(len(path)), side="right")
    cruise = rng.uniform(max(v_min, 0.5 * (v_min + v_max)), v_max, size=int(crossing.sum()) + 1)[leg]
    speed = np.minimum(cruise, np.maximum(v_min, np.sqrt(LATERAL_ACCEL / np.maximum(curvature, 1e-9))))
    # Stops: at some junctions, and always where the route turns back (a dead end): there the vehicle stops and
    # turns on the spot during the dwell (a three-point turn, compressed).
    turn_back = turn_backs(nodes)
    stop_here = ((rng.random(len(junctions)) < stop_probability) & crossing) | turn_back
    stops = junctions[stop_here]
    speed[stops] = 0.0
    speed[0] = 0.0  # start from rest
    # Bounded acceleration forwards and deceleration backwards: v^2 changes by at most 2 a ds per step.
    for i in range(1, len(speed)):
        speed[i] = min(speed[i], math.sqrt(speed[i - 1] ** 2 + 2 * ACCEL * ds[i - 1]))
    for i in range(len(speed) - 2, -1, -1):
        speed[i] = min(speed[i], math.sqrt(speed[i + 1] ** 2 + 2 * DECEL * ds[i]))
    # Time at each path point: ds over mean speed, plus a dwell at each stop (a repeated point).
    mean_v = np.maximum(0.5 * (speed[1:] + speed[:-1]), 1e-3)
    t = np.concatenate([[0.0], np.cumsum(ds / mean_v)])
    dwell = np.zeros(len(path))
    dwell[stops] = rng.uniform(*dwell_range_s, size=len(stops))
    # Heading at each point: between the arriving and the leaving step's (so that it turns smoothly through bends);
    # at a stop it turns from one to the other during the dwell (on the spot where the route turns back).
    arriving = np.concatenate([heading[:1], heading[:-1]])
    middle = 0.5 * (arriving + heading)
    yaw_arrive = np.where(dwell > 0, arriving, middle)
    yaw_leave = np.where(dwell > 0, heading, middle)
    t_arrive = t + np.concatenate([[0.0], np.cumsum(dwell)[:-1]])
    t_leave = t_arrive + dwell
    order_t = np.stack([t_arrive, t_leave], axis=1).ravel()
    if order_t[-1] < duration_s:
        raise RouteError(f"the route lasts {order_t[-1]:.0f} s, less than the {duration_s:.0f} s asked")
    times = np.arange(0.0, duration_s + dt / 2, dt)
    s_driven = np.interp(times, order_t, np.repeat(arc, 2))
    # The speed reported is the derivative of the position actually driven (odometry integrates it).
    moving_speed = np.gradient(s_driven, dt)
    east = np.interp(s_driven, arc, path[:, 0])
    north = np.interp(s_driven, arc, path[:, 1])
    yaw = np.interp(times, order_t, np.stack([yaw_arrive, yaw_leave], axis=1).ravel())
    return Trajectory(t=times, east=east, north=north, yaw=yaw, speed=moving_speed, route=nodes)
