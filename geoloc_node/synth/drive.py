"""Record a drive through a world as a real rosbag2 (rosbags library): camera, GPS with faults, odometry, ground truth.

Topics (defaults of :class:`DriveConfig`):

==============================  =============================  ======  ==============================================
topic                           type                           rate    content
==============================  =============================  ======  ==============================================
/camera/image_raw               sensor_msgs/msg/Image          10 Hz   rgb8 panorama or pinhole view, frame "camera"
/camera/image_raw/compressed    sensor_msgs/msg/CompressedImage 10 Hz  same image as JPEG (``compressed_images=True``)
/camera/camera_info             sensor_msgs/msg/CameraInfo     10 Hz   pinhole: plumb_bob K/P; panorama: see below
/gps/fix                        sensor_msgs/msg/NavSatFix      5 Hz    noisy fix (white noise + slow bias) and faults
/odom                           nav_msgs/msg/Odometry          50 Hz   wheel odometry odom -> base_link, with drift
/ground_truth/fix               sensor_msgs/msg/NavSatFix      10 Hz   exact position of the camera (image stamps)
/ground_truth/pose              geometry_msgs/msg/PoseStamped  10 Hz   exact pose in "map" = ENU plane at the origin
==============================  =============================  ======  ==============================================

Every header stamp is the sample's simulated time (``start_time_s`` + t) and equals the bag's log time. The world
origin, the route and the fault list are stored in the bag's ``custom_data`` (key ``geoloc_node.synth``, JSON) and in
a sidecar ``geoloc_drive.json`` inside the bag folder, so that replay can find ground truth without this module.

GPS faults, each ``(kind, start_s, end_s)`` in seconds from the start of the drive:

* ``outage``: no /gps/fix messages at all;
* ``no_fix``: status ``STATUS_NO_FIX`` (-1), latitude/longitude/altitude NaN (the message does not define a position
  without a fix; NaN makes a consumer that ignores the status fail loudly), covariance zero, type UNKNOWN;
* ``cov_blowup``: status FIX but the position wanders (sigma 15 m) and the reported covariance grows to (50 m)^2;
* ``frozen``: the last good payload (position, covariance) repeated with fresh stamps while the vehicle moves;
* ``jump``: every fix offset by ``jump_m`` metres in one direction, with the normal (too small) covariance.

Kidnapped vehicle (``teleports``, each ``(t_s, distance_m)``): at ``t_s`` the vehicle is moved to a point of another
planned route about ``distance_m`` away on the road network, where it goes on driving. Camera, GPS and ground truth
jump with it; the wheel odometry does not see it: the new route is entered at a moment whose speed and yaw rate match
the old one's (within 0.1 m/s and 0.05 rad/s when any of the routes tried offers it), so /odom pose and twist go on
smoothly. The sidecar's ``teleports`` lists ``[t_s, distance_m]`` with the distance actually jumped; ``teleport_poses``
the poses before and after and what was left of the speed and yaw-rate mismatch.

Panorama CameraInfo: ``distortion_model = "equirectangular"`` (not a ROS standard: no ROS model fits a 360 degree
image), K = [W/(2 pi), 0, 0; 0, H/(2 pi H/W), H/2; 0, 0, 1] in pixels per radian with azimuth 0 at column 0.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import GeolocError
from .render import RenderStyle, pinhole_intrinsics, random_style, render_panorama, render_pinhole
from .route import RouteError, Trajectory, drive_trajectory

FAULT_KINDS = ("outage", "no_fix", "cov_blowup", "frozen", "jump")
SIDECAR = "geoloc_drive.json"
METADATA_KEY = "geoloc_node.synth"

# NavSatStatus / NavSatFix constants, written out so that no distribution's default is relied upon.
STATUS_NO_FIX, STATUS_FIX = -1, 0
SERVICE_GPS = 1
COVARIANCE_TYPE_UNKNOWN, COVARIANCE_TYPE_DIAGONAL_KNOWN = 0, 2


class DriveError(GeolocError, ValueError):
    """A drive cannot be recorded from what was given."""


#: Camera image size (height, width) by camera model when the config gives none: the panorama of the renderer and of
#: CVUSA, and a 4:3 forward camera.
DEFAULT_IMAGE_SIZE = {"panorama": (128, 512), "pinhole": (240, 320)}


@dataclass
class DriveConfig:
    """What to record. Defaults: 60 s, panorama camera, MCAP, Jazzy message definitions."""

    duration_s: float = 60.0
    seed: int = 0
    speed_min_mps: float = 3.0
    speed_max_mps: float = 15.0
    stop_probability: float = 0.25  # at each junction
    camera: str = "panorama"  # "panorama" or "pinhole"
    image_size: tuple[int, int] | None = None  # (height, width); None: 128x512 panorama, 240x320 (4:3) pinhole
    hfov_deg: float = 90.0  # pinhole only
    camera_height_m: float = 2.0
    image_rate_hz: float = 10.0
    compressed_images: bool = False
    randomize: bool = True  # one random lighting/colour style per drive, cars parked along the route
    gps_rate_hz: float = 5.0
    gps_noise_m: float = 1.0  # white noise per axis
    gps_bias_m: float = 1.5  # slow bias per axis (first-order Gauss-Markov), steady-state sigma
    gps_bias_tau_s: float = 120.0
    gps_faults: list[tuple[str, float, float]] = field(default_factory=list)
    jump_m: float = 60.0
    odom_rate_hz: float = 50.0
    odom_scale_error: float = 0.02  # wheel odometry distance error (2%)
    odom_yaw_rate_bias: float = 0.003  # rad/s
    teleports: list[tuple[float, float]] = field(default_factory=list)  # (t_s, distance_m): kidnapped vehicle
    storage: str = "mcap"  # "mcap" or "sqlite3"
    distro: str = "jazzy"  # "jazzy" or "humble": message definitions (typestore) and bag metadata version
    start_time_s: float = 1_700_000_000.0  # stamp of t = 0 (fixed so that bags are reproducible)
    topics: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TOPICS))

    def __post_init__(self):
        if self.image_size is None:
            self.image_size = DEFAULT_IMAGE_SIZE.get(self.camera, DEFAULT_IMAGE_SIZE["panorama"])

    def validate(self) -> None:
        if not (1.0 <= self.duration_s <= 3600.0):
            raise DriveError(f"duration_s={self.duration_s:g} is out of range [1, 3600] seconds")
        if not (0.5 <= self.speed_min_mps <= self.speed_max_mps <= 40.0):
            raise DriveError(f"speeds {self.speed_min_mps:g}-{self.speed_max_mps:g} m/s are not 0.5 <= min <= max "
                             "<= 40")
        if self.camera not in ("panorama", "pinhole"):
            raise DriveError(f"camera {self.camera!r} is not 'panorama' or 'pinhole'")
        h, w = self.image_size
        if not (16 <= h <= 2048 and 16 <= w <= 4096):
            raise DriveError(f"image_size {h}x{w} is out of range (16..2048 x 16..4096)")
        if self.camera == "pinhole" and not (10.0 <= self.hfov_deg <= 170.0):
            raise DriveError(f"hfov_deg={self.hfov_deg:g} is out of range [10, 170]")
        for name in ("image_rate_hz", "gps_rate_hz", "odom_rate_hz"):
            if not (0.1 <= getattr(self, name) <= 1000.0):
                raise DriveError(f"{name}={getattr(self, name):g} is out of range [0.1, 1000]")
        if self.storage not in ("mcap", "sqlite3"):
            raise DriveError(f"storage {self.storage!r} is not 'mcap' or 'sqlite3'")
        if self.distro not in ("jazzy", "humble"):
            raise DriveError(f"distro {self.distro!r} is not 'jazzy' or 'humble'")
        for fault in self.gps_faults:
            if len(fault) != 3 or fault[0] not in FAULT_KINDS:
                raise DriveError(f"GPS fault {fault!r}: expected (kind, start_s, end_s) with kind in {FAULT_KINDS}")
            if not (0.0 <= float(fault[1]) < float(fault[2])):
                raise DriveError(f"GPS fault {fault!r}: needs 0 <= start_s < end_s")
        if not (-0.5 < self.odom_scale_error < 1.0):
            raise DriveError(f"odom_scale_error={self.odom_scale_error:g} is out of range (-0.5, 1)")
        times = []
        for teleport in self.teleports:
            if len(teleport) != 2 or not (0.0 < float(teleport[0]) < self.duration_s) or not float(teleport[1]) > 0:
                raise DriveError(f"teleport {teleport!r}: expected (t_s, distance_m) with 0 < t_s < duration_s "
                                 f"({self.duration_s:g}) and distance_m > 0")
            times.append(float(teleport[0]))
        if len(set(times)) != len(times):
            raise DriveError(f"teleports {self.teleports!r}: two at the same time")


DEFAULT_TOPICS = {
    "image": "/camera/image_raw", "compressed": "/camera/image_raw/compressed", "camera_info": "/camera/camera_info",
    "gps": "/gps/fix", "odom": "/odom", "truth_fix": "/ground_truth/fix", "truth_pose": "/ground_truth/pose",
}
FRAMES = {"camera": "camera", "gps": "gps", "odom": "odom", "base": "base_link", "map": "map"}


def parse_fault(text: str) -> tuple[str, float, float]:
    """``kind:start:end`` (seconds) -> (kind, start_s, end_s); raises DriveError on anything else."""
    parts = text.split(":")
    try:
        kind, start, end = parts[0], float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        raise DriveError(f"GPS fault {text!r}: expected KIND:START_S:END_S, e.g. outage:20:40") from None
    if len(parts) != 3 or kind not in FAULT_KINDS:
        raise DriveError(f"GPS fault {text!r}: kind must be one of {', '.join(FAULT_KINDS)}")
    return kind, start, end


def parse_teleport(text: str) -> tuple[float, float]:
    """``t_s:distance_m`` -> (t_s, distance_m); raises DriveError on anything else."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise DriveError(f"teleport {text!r}: expected T_S:DISTANCE_M, e.g. 30:250") from None


def _stamp(types, t_abs: float):
    sec = int(math.floor(t_abs))
    nanosec = int(round((t_abs - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def _quaternion(types, yaw: float):
    return types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))


def _ticks(duration_s: float, rate_hz: float) -> np.ndarray:
    return np.arange(0, int(math.floor(duration_s * rate_hz + 1e-9)) + 1) / rate_hz


class _BagWriter:
    """Typed connections to a rosbags Writer, serialising with the chosen distribution's message definitions."""

    def __init__(self, path: Path, config: DriveConfig):
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.typestore = get_typestore(Stores.ROS2_JAZZY if config.distro == "jazzy" else Stores.ROS2_HUMBLE)
        self.types = self.typestore.types
        plugin = StoragePlugin.MCAP if config.storage == "mcap" else StoragePlugin.SQLITE3
        # rosbags writes metadata versions 8 and 9 only; 9 is Jazzy's, 8 the oldest it offers for Humble.
        self.writer = Writer(path, version=9 if config.distro == "jazzy" else 8, storage_plugin=plugin)
        self.writer.open()
        self.connections = {}
        self.counts: dict[str, int] = {}

    def add(self, topic: str, msgtype: str) -> None:
        self.connections[topic] = (self.writer.add_connection(topic, msgtype, typestore=self.typestore), msgtype)
        self.counts[topic] = 0

    def write(self, topic: str, t_abs: float, message) -> None:
        connection, msgtype = self.connections[topic]
        self.writer.write(connection, int(round(t_abs * 1e9)), self.typestore.serialize_cdr(message, msgtype))
        self.counts[topic] += 1

    def close(self, custom: dict) -> None:
        self.writer.set_custom_data(METADATA_KEY, json.dumps(custom))
        self.writer.close()


def _route_cars(world, trajectory: Trajectory, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cars parked at the kerb along the route (the same for every frame of a drive)."""
    graph = world.road_graph
    route = trajectory.route
    width = {}
    for (a, b), w in zip(graph.edges.tolist(), graph.width_m.tolist(), strict=True):
        width[a, b] = width[b, a] = w
    node_index = {tuple(p): i for i, p in enumerate(graph.nodes.tolist())}
    rows, colours = [], []
    palette = np.array([(200, 200, 205), (30, 30, 34), (150, 20, 24), (40, 60, 130), (120, 124, 128),
                        (230, 230, 225), (60, 90, 60), (200, 160, 40)], np.float64)
    for start, end in zip(route[:-1], route[1:], strict=True):
        w = width.get((node_index.get(tuple(start.tolist())), node_index.get(tuple(end.tolist()))), 8.0)
        length = float(np.linalg.norm(end - start))
        if length < 40:
            continue
        along = (end - start) / length
        across = np.array([-along[1], along[0]])
        yaw = math.atan2(along[1], along[0])
        for side in (-1.0, 1.0):
            s = np.arange(20.0, length - 20.0, 6.0)
            s = s[rng.random(len(s)) < 0.25]
            for p in start + s[:, None] * along + side * (w / 2 - 1.1) * across:
                rows.append((p[0], p[1], yaw, rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.95), rng.uniform(1.4, 1.9)))
                colours.append(palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1))
    return np.asarray(rows, np.float64).reshape(-1, 6), np.asarray(colours, np.float64).reshape(-1, 3)


# -- kidnapped vehicle -------------------------------------------------------------------------------------------------
TELEPORT_SEARCH_S = 300.0  # the new route is entered within its first five minutes (it is planned to outlast the drive)
TELEPORT_CANDIDATES = 64  # routes tried per teleport before the best match is taken
TELEPORT_DISTANCE_TOL = (5.0, 0.1)  # a target matches within the larger of 5 m and 10 % of the distance asked ...
TELEPORT_SPEED_TOL_MPS = 0.1  # ... at a speed and a yaw rate this close to the vehicle's: odometry sees no jump
TELEPORT_YAW_RATE_TOL = 0.05  # rad/s
TELEPORT_REFUSE = 2.5  # refuse when the best target misses the distance by more than this many tolerances
TELEPORT_STREAM = 0x7E1E  # teleports draw from their own stream: the drive before the first one is unchanged


@dataclass
class Leg:
    """Part of a drive: from ``start_s`` (drive time) on, the vehicle is at ``trajectory`` time ``t - start_s +
    offset_s``."""

    start_s: float
    trajectory: Trajectory
    offset_s: float


def _legs_at(legs: list[Leg], times) -> dict[str, np.ndarray]:
    """:meth:`Trajectory.at` over legs: each time is served by the last leg started by then (yaw rate per leg)."""
    times = np.asarray(times, dtype=np.float64)
    flat = np.atleast_1d(times).ravel()
    which = np.clip(np.searchsorted([leg.start_s for leg in legs], flat, side="right") - 1, 0, len(legs) - 1)
    out: dict[str, np.ndarray] = {}
    for k, leg in enumerate(legs):
        mask = which == k
        part = leg.trajectory.at(flat[mask] - leg.start_s + leg.offset_s)
        for key, values in part.items():
            out.setdefault(key, np.empty(len(flat)))[mask] = values
    return {key: values.reshape(times.shape) for key, values in out.items()}


@dataclass
class SplicedTrajectory(Trajectory):
    """A drive with teleports: legs of several planned trajectories, the vehicle jumping from one to the next."""

    legs: list[Leg] = field(default_factory=list)
    teleports: list[dict] = field(default_factory=list)  # per jump: t_s, distance_m, poses before and after

    def at(self, times) -> dict[str, np.ndarray]:
        return _legs_at(self.legs, times)


def _pose(state: dict) -> list[float]:
    """ENU east, north (m) and yaw wrapped to [-pi, pi], rounded for the sidecar."""
    return [round(float(state["east"]), 3), round(float(state["north"]), 3),
            round(math.remainder(float(state["yaw"]), 2 * math.pi), 4)]


def _teleport_leg(graph, rng: np.random.Generator, config: DriveConfig, here: dict, t_s: float,
                  distance_m: float) -> tuple[Leg, dict]:
    """Plan new routes until one passes about ``distance_m`` from ``here`` at the vehicle's speed and yaw rate."""
    tol_m = max(TELEPORT_DISTANCE_TOL[0], TELEPORT_DISTANCE_TOL[1] * distance_m)
    best = None
    for _ in range(TELEPORT_CANDIDATES):
        trajectory = drive_trajectory(graph, rng, config.duration_s - t_s + TELEPORT_SEARCH_S,
                                      (config.speed_min_mps, config.speed_max_mps), config.stop_probability)
        n = int(np.searchsorted(trajectory.t, TELEPORT_SEARCH_S, side="right"))
        distance = np.hypot(trajectory.east[:n] - here["east"], trajectory.north[:n] - here["north"])
        miss = np.abs(distance - distance_m) / tol_m
        motion = np.maximum(np.abs(trajectory.speed[:n] - here["speed"]) / TELEPORT_SPEED_TOL_MPS,
                            np.abs(np.gradient(trajectory.yaw, trajectory.t)[:n] - here["yaw_rate"])
                            / TELEPORT_YAW_RATE_TOL)
        # Odometry continuity matters more than the exact distance: both count, the distance within a bound.
        cost = np.where(miss <= TELEPORT_REFUSE, np.maximum(miss, motion), np.inf)
        i = int(np.argmin(cost))
        if np.isfinite(cost[i]) and (best is None or cost[i] < best[0]):
            best = (float(cost[i]), trajectory, i, float(distance[i]))
        if best is not None and best[0] <= 1.0:
            break
    if best is None:
        raise DriveError(f"teleport at {t_s:g} s: no road point about {distance_m:g} m away was found; the world "
                         "is too small for this distance")
    _, trajectory, i, distance = best
    to = trajectory.at(trajectory.t[i])
    record = {"t_s": t_s, "distance_m": round(distance, 3), "from_en_yaw": _pose(here), "to_en_yaw": _pose(to),
              "speed_mismatch_mps": round(float(to["speed"] - here["speed"]), 4),
              "yaw_rate_mismatch": round(float(to["yaw_rate"] - here["yaw_rate"]), 4)}
    return Leg(t_s, trajectory, float(trajectory.t[i])), record


def with_teleports(graph, base: Trajectory, config: DriveConfig) -> SplicedTrajectory:
    """``base`` with the vehicle moved at each of ``config.teleports``; deterministic in ``config.seed``."""
    rng = np.random.default_rng((config.seed, TELEPORT_STREAM))
    legs, records = [Leg(0.0, base, 0.0)], []
    for t_s, distance_m in sorted((float(t), float(d)) for t, d in config.teleports):
        here = _legs_at(legs, t_s)
        leg, record = _teleport_leg(graph, rng, config, here, t_s, distance_m)
        legs.append(leg)
        records.append(record)
    dense = _legs_at(legs, base.t)
    return SplicedTrajectory(t=base.t, east=dense["east"], north=dense["north"], yaw=dense["yaw"],
                             speed=dense["speed"], route=base.route, legs=legs, teleports=records)


def _distance_driven(trajectory: Trajectory) -> float:
    """Path length, not counting the jumps of teleports."""
    steps = np.hypot(np.diff(trajectory.east), np.diff(trajectory.north))
    for leg in getattr(trajectory, "legs", [])[1:]:
        steps[int(np.searchsorted(trajectory.t, leg.start_s)) - 1] = 0.0  # the step into the new leg
    return float(np.sum(steps))


def _drive_cars(world, trajectory: Trajectory, rng: np.random.Generator, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cars parked along every leg's route; the first leg's draw from ``rng`` as in a drive without teleports."""
    legs = getattr(trajectory, "legs", None) or [Leg(0.0, trajectory, 0.0)]
    cars, colours = zip(*([_route_cars(world, legs[0].trajectory, rng)] + [
        _route_cars(world, leg.trajectory, np.random.default_rng((seed, TELEPORT_STREAM, k)))
        for k, leg in enumerate(legs[1:], start=1)]))
    return np.concatenate(cars), np.concatenate(colours)


def _gps_samples(config: DriveConfig, trajectory: Trajectory, rng: np.random.Generator) -> list[dict]:
    """Every GPS tick with the fix it reports: (t, east, north, alt, status, sigma reported, faults applied)."""
    ticks = _ticks(config.duration_s, config.gps_rate_hz)
    truth = trajectory.at(ticks)
    dt = 1.0 / config.gps_rate_hz
    # First-order Gauss-Markov bias: steady-state sigma gps_bias_m, correlation time gps_bias_tau_s.
    phi = math.exp(-dt / config.gps_bias_tau_s)
    bias = np.zeros((len(ticks), 3))
    bias[0] = rng.normal(0, config.gps_bias_m, 3)
    for i in range(1, len(ticks)):
        bias[i] = phi * bias[i - 1] + rng.normal(0, config.gps_bias_m * math.sqrt(1 - phi * phi), 3)
    noise = rng.normal(0, config.gps_noise_m, (len(ticks), 3))
    sigma = math.hypot(config.gps_noise_m, config.gps_bias_m)
    jump_dir = rng.uniform(0, 2 * math.pi)
    wander = rng.normal(0, 15.0, (len(ticks), 2))
    samples, last_good = [], None
    for i, t in enumerate(ticks):
        active = {kind for kind, start, end in config.gps_faults if start <= t < end}
        fix = {"t": float(t), "east": truth["east"][i] + bias[i, 0] + noise[i, 0],
               "north": truth["north"][i] + bias[i, 1] + noise[i, 1],
               "alt": config.camera_height_m + bias[i, 2] + 1.5 * noise[i, 2],
               "status": STATUS_FIX, "sigma_h": sigma, "sigma_v": 1.5 * sigma,
               "covariance_type": COVARIANCE_TYPE_DIAGONAL_KNOWN, "faults": sorted(active)}
        if "outage" in active:
            continue
        if "jump" in active:
            fix["east"] += config.jump_m * math.sin(jump_dir)
            fix["north"] += config.jump_m * math.cos(jump_dir)
        if "cov_blowup" in active:
            fix["east"] += wander[i, 0]
            fix["north"] += wander[i, 1]
            fix["sigma_h"], fix["sigma_v"] = 50.0, 75.0
        if "frozen" in active and last_good is not None:
            fix.update({k: last_good[k] for k in ("east", "north", "alt", "sigma_h", "sigma_v", "status")})
        if "no_fix" in active:
            fix.update(east=math.nan, north=math.nan, alt=math.nan, status=STATUS_NO_FIX, sigma_h=0.0, sigma_v=0.0,
                       covariance_type=COVARIANCE_TYPE_UNKNOWN)
        if not active:
            last_good = fix
        samples.append(fix)
    return samples


def record_drive(world, bag_dir, config: DriveConfig | None = None, progress=None) -> dict:
    """Drive through ``world`` and write a rosbag2 folder at ``bag_dir`` (must not exist); returns a summary.

    The bag is written into a temporary folder beside ``bag_dir`` and renamed into place when complete.
    ``progress``: optional callable(done, total) called after each camera frame.
    """
    config = config or DriveConfig()
    config.validate()
    bag_dir = Path(bag_dir)
    if bag_dir.exists():
        raise DriveError(f"output {bag_dir} already exists; choose a new path or remove it first")
    rng = np.random.default_rng(config.seed)
    try:
        trajectory = drive_trajectory(world.road_graph, rng, config.duration_s,
                                      (config.speed_min_mps, config.speed_max_mps), config.stop_probability)
        if config.teleports:
            trajectory = with_teleports(world.road_graph, trajectory, config)
    except RouteError as exc:
        raise DriveError(f"no route can be found: {exc}") from exc
    style = RenderStyle()
    if config.randomize:
        style = random_style(rng, None)
        style.cars, style.car_rgb = _drive_cars(world, trajectory, rng, config.seed)
    gps = _gps_samples(config, trajectory, rng)
    odom_noise_rng = np.random.default_rng(rng.integers(1 << 62))

    bag_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_parent = Path(tempfile.mkdtemp(prefix=f".{bag_dir.name}.", dir=bag_dir.parent))
    try:
        summary = _write_bag(world, tmp_parent / bag_dir.name, config, trajectory, style, gps, odom_noise_rng,
                             progress)
        (tmp_parent / bag_dir.name).chmod(0o755)
        os.rename(tmp_parent / bag_dir.name, bag_dir)
    finally:
        shutil.rmtree(tmp_parent, ignore_errors=True)
    summary["bag"] = str(bag_dir)
    return summary


def _write_bag(world, path: Path, config: DriveConfig, trajectory: Trajectory, style: RenderStyle, gps: list[dict],
               odom_rng: np.random.Generator, progress) -> dict:
    topics = config.topics
    bag = _BagWriter(path, config)
    T = bag.types
    bag.add(topics["image"], "sensor_msgs/msg/Image")
    if config.compressed_images:
        bag.add(topics["compressed"], "sensor_msgs/msg/CompressedImage")
    bag.add(topics["camera_info"], "sensor_msgs/msg/CameraInfo")
    bag.add(topics["gps"], "sensor_msgs/msg/NavSatFix")
    bag.add(topics["odom"], "nav_msgs/msg/Odometry")
    bag.add(topics["truth_fix"], "sensor_msgs/msg/NavSatFix")
    bag.add(topics["truth_pose"], "geometry_msgs/msg/PoseStamped")
    frame = world.frame
    t0 = config.start_time_s
    header = T["std_msgs/msg/Header"]

    # Messages are written in time order across topics: gather (time, priority, writer) and sort.
    events = []
    for fix in gps:
        events.append((fix["t"], 1, lambda f=fix: _write_gps(bag, T, frame, topics["gps"], t0, f)))
    events += _odometry_events(bag, T, config, trajectory, odom_rng, t0)
    image_ticks = _ticks(config.duration_s, config.image_rate_hz)
    truth = trajectory.at(image_ticks)
    camera_info = _camera_info(T, header, config)
    for i, t in enumerate(image_ticks):
        events.append((float(t), 0, lambda i=i, t=t: _write_frame(bag, T, world, config, style, truth, i, t0 + t,
                                                                  camera_info)))
    events.sort(key=lambda e: (e[0], e[1]))
    done = 0
    for _t, priority, write in events:
        write()
        if priority == 0:
            done += 1
            if progress is not None:
                progress(done, len(image_ticks))

    lat, lon = frame.to_latlon(trajectory.route[:, 0], trajectory.route[:, 1])
    teleports = getattr(trajectory, "teleports", [])
    custom = {
        "format": "geoloc_node.synth.drive", "version": 1,
        "origin": {"lat": world.config.origin_lat, "lon": world.config.origin_lon},
        "map_frame": "ENU tangent plane at the origin, ellipsoidal height 0 (geoloc_node.geodesy.LocalFrame)",
        "start_time_s": t0, "duration_s": config.duration_s, "topics": topics,
        "gps_faults": [list(f) for f in config.gps_faults],
        "teleports": [[r["t_s"], r["distance_m"]] for r in teleports], "teleport_poses": teleports,
        "route_en": trajectory.route.round(3).tolist(), "route_latlon": np.stack([lat, lon], 1).round(8).tolist(),
        "initial_pose": {"east": float(trajectory.east[0]), "north": float(trajectory.north[0]),
                         "yaw": float(trajectory.yaw[0])},
        "world": {"size_m": world.config.size_m, "seed": world.config.seed, "layout": world.source.get("layout")},
        "config": {k: v for k, v in asdict(config).items() if k != "topics"},
    }
    bag.close(custom)
    (path / SIDECAR).write_text(json.dumps(custom, indent=1))
    moving = trajectory.speed > 0.05
    return {"topics": dict(bag.counts), "duration_s": config.duration_s,
            "distance_m": _distance_driven(trajectory), "teleports": custom["teleports"],
            "stopped_s": float(np.sum(~moving) * (trajectory.t[1] - trajectory.t[0])),
            "max_speed_mps": float(trajectory.speed.max()), "gps_faults": [list(f) for f in config.gps_faults]}


def _write_gps(bag: _BagWriter, T, frame, topic: str, t0: float, fix: dict) -> None:
    if math.isnan(fix["east"]):
        lat = lon = math.nan
    else:
        lat, lon = (float(v) for v in frame.to_latlon(fix["east"], fix["north"]))
    cov = np.diag([fix["sigma_h"] ** 2, fix["sigma_h"] ** 2, fix["sigma_v"] ** 2]).ravel().astype(np.float64)
    message = T["sensor_msgs/msg/NavSatFix"](
        header=T["std_msgs/msg/Header"](stamp=_stamp(T, t0 + fix["t"]), frame_id=FRAMES["gps"]),
        status=T["sensor_msgs/msg/NavSatStatus"](status=fix["status"], service=SERVICE_GPS),
        latitude=lat, longitude=lon, altitude=float(fix["alt"]), position_covariance=cov,
        position_covariance_type=fix["covariance_type"])
    bag.write(topic, t0 + fix["t"], message)


def _odometry_events(bag: _BagWriter, T, config: DriveConfig, trajectory: Trajectory, rng: np.random.Generator,
                     t0: float) -> list:
    """Wheel odometry: measured speed (scale error, noise) and yaw rate (bias, noise), integrated from (0, 0, 0)."""
    ticks = _ticks(config.duration_s, config.odom_rate_hz)
    truth = trajectory.at(ticks)
    dt = 1.0 / config.odom_rate_hz
    v = truth["speed"] * (1.0 + config.odom_scale_error) + rng.normal(0, 0.02, len(ticks)) * (truth["speed"] > 0)
    w = truth["yaw_rate"] + config.odom_yaw_rate_bias * (truth["speed"] > 0) + rng.normal(0, 0.002, len(ticks))
    yaw = np.concatenate([[0.0], np.cumsum(w[:-1] * dt)])
    x = np.concatenate([[0.0], np.cumsum(v[:-1] * np.cos(yaw[:-1]) * dt)])
    y = np.concatenate([[0.0], np.cumsum(v[:-1] * np.sin(yaw[:-1]) * dt)])
    travelled = np.concatenate([[0.0], np.cumsum(np.abs(v[:-1]) * dt)])
    events = []
    topic = config.topics["odom"]
    for i, t in enumerate(ticks):
        # Pose uncertainty grows with the distance travelled (the scale error); z/roll/pitch are not measured.
        sxy = (0.01 + abs(config.odom_scale_error) * travelled[i]) ** 2
        pose_cov = np.diag([sxy, sxy, 1e6, 1e6, 1e6, (0.01 + abs(config.odom_yaw_rate_bias) * t) ** 2]).ravel()
        twist_cov = np.diag([0.02 ** 2, 1e-4, 1e6, 1e6, 1e6, 0.002 ** 2]).ravel()
        message = T["nav_msgs/msg/Odometry"](
            header=T["std_msgs/msg/Header"](stamp=_stamp(T, t0 + t), frame_id=FRAMES["odom"]),
            child_frame_id=FRAMES["base"],
            pose=T["geometry_msgs/msg/PoseWithCovariance"](
                pose=T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=float(x[i]), y=float(y[i]),
                                                                                       z=0.0),
                                                  orientation=_quaternion(T, float(yaw[i]))),
                covariance=pose_cov.astype(np.float64)),
            twist=T["geometry_msgs/msg/TwistWithCovariance"](
                twist=T["geometry_msgs/msg/Twist"](linear=T["geometry_msgs/msg/Vector3"](x=float(v[i]), y=0.0, z=0.0),
                                                   angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=float(w[i]))),
                covariance=twist_cov.astype(np.float64)))
        events.append((float(t), 2, lambda m=message, t=t: bag.write(topic, t0 + t, m)))
    return events


def _camera_info(T, header, config: DriveConfig):
    h, w = config.image_size
    if config.camera == "pinhole":
        k = pinhole_intrinsics(config.hfov_deg, (h, w))
        model, d = "plumb_bob", np.zeros(5)
    else:
        k = np.array([[w / (2 * math.pi), 0.0, 0.0], [0.0, w / (2 * math.pi), h / 2.0], [0.0, 0.0, 1.0]])
        model, d = "equirectangular", np.zeros(0)
    p = np.hstack([k, np.zeros((3, 1))])

    def make(stamp):
        return T["sensor_msgs/msg/CameraInfo"](
            header=header(stamp=stamp, frame_id=FRAMES["camera"]), height=h, width=w, distortion_model=model,
            d=d.astype(np.float64), k=k.ravel().astype(np.float64), r=np.eye(3).ravel(),
            p=p.ravel().astype(np.float64), binning_x=0, binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    return make


def _write_frame(bag: _BagWriter, T, world, config: DriveConfig, style: RenderStyle, truth: dict, i: int,
                 t_abs: float, camera_info) -> None:
    east, north, heading = float(truth["east"][i]), float(truth["north"][i]), float(truth["heading_deg"][i])
    if config.camera == "panorama":
        image = render_panorama(world, east, north, heading, size=config.image_size, style=style,
                                camera_height_m=config.camera_height_m)
    else:
        image = render_pinhole(world, east, north, heading, hfov_deg=config.hfov_deg, size=config.image_size,
                               style=style, camera_height_m=config.camera_height_m)
    stamp = _stamp(T, t_abs)
    header = T["std_msgs/msg/Header"]
    topics = config.topics
    h, w = image.shape[:2]
    bag.write(topics["image"], t_abs, T["sensor_msgs/msg/Image"](
        header=header(stamp=stamp, frame_id=FRAMES["camera"]), height=h, width=w, encoding="rgb8", is_bigendian=0,
        step=w * 3, data=np.ascontiguousarray(image).reshape(-1)))
    if config.compressed_images:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        bag.write(topics["compressed"], t_abs, T["sensor_msgs/msg/CompressedImage"](
            header=header(stamp=stamp, frame_id=FRAMES["camera"]), format="rgb8; jpeg compressed bgr8",
            data=np.frombuffer(jpeg.tobytes(), np.uint8)))
    bag.write(topics["camera_info"], t_abs, camera_info(stamp))
    lat, lon = (float(v) for v in world.frame.to_latlon(east, north))
    bag.write(topics["truth_fix"], t_abs, T["sensor_msgs/msg/NavSatFix"](
        header=header(stamp=stamp, frame_id=FRAMES["gps"]),
        status=T["sensor_msgs/msg/NavSatStatus"](status=STATUS_FIX, service=SERVICE_GPS),
        latitude=lat, longitude=lon, altitude=config.camera_height_m, position_covariance=np.zeros(9),
        position_covariance_type=COVARIANCE_TYPE_DIAGONAL_KNOWN))
    yaw = float(truth["yaw"][i])
    bag.write(topics["truth_pose"], t_abs, T["geometry_msgs/msg/PoseStamped"](
        header=header(stamp=stamp, frame_id=FRAMES["map"]),
        pose=T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=east, y=north,
                                                                               z=config.camera_height_m),
                                         orientation=_quaternion(T, yaw))))
