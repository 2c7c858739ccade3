"""Where on the whole table, facing which way, does the recent track of camera frames fit? Global localization for a
cold start and for a filter that lost its place (a kidnapped vehicle, a wrong start).

The filter starts from the table's best tiles for single frames. On worlds the model reads poorly one frame's best
tiles are mostly elsewhere (evaluation world 9102: single-frame median 176 m on a 700 m table), the cloud settles on a
wrong place and the heading that goes with it, and the track check (:mod:`geoloc_node.track_match`), which lines the
frames up along the *filter's* heading, cannot see the right place from there. Sequence matching over headings can:
the frames of the last ``length_m`` of driving, placed along the odometry, are scored against the whole table for each
of ``headings`` hypotheses of the vehicle's heading now; each frame is compared at the compass heading the hypothesis
gives it (a panorama rolled to the nearest of the encoded headings; a forward camera in the table's nearest heading
bin). False single-frame matches do not line up along a trajectory; the true place does, at the true heading.
Measured offline on the evaluation cold-start drive (world 9102, 60 m of frames 4 m apart, 16 headings): every
hypothesis with a margin of at least 8 bits per frame over the best one more than 50 m away lay within 9 m of the
truth; the wrong ones had margins below 6.

What it finds restarts the filter there (:meth:`Pipeline`), never trust: the place was chosen by these frames, so
only frames taken afterwards may confirm it (:mod:`geoloc_node.integrity`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .robust import median_and_spread
from .track_match import _add_shifted


@dataclass(frozen=True)
class Relocalization:
    """The best place and heading for the recent track, and how clearly it wins."""

    stamp: float
    east: float
    north: float
    yaw: float  # ENU yaw of the vehicle now (rad)
    margin_bits: float  # per frame: best hypothesis ending farther than ``separation_m`` minus the best
    z: float  # robust z of the best among all places and headings
    length_m: float
    frames: int
    decisive: bool  # margin and z clear their thresholds on a long enough track


@dataclass
class _Frame:
    stamp: float
    odometer_m: float
    pose: tuple[float, float, float]  # odometry x, y, yaw at the frame
    codes: np.ndarray  # [hypotheses, bytes]: one code per encoded compass heading (one for a forward camera)
    headings: tuple | None  # compass degrees of the codes (None: the camera takes no heading)
    grids: dict  # (code row, table heading bin) -> distances - half the bits on the table's grid (lazily)


class Relocalizer:
    """Keeps frames of the recent track with codes at several headings; scores them against the whole table.
    Not thread-safe (the pipeline calls it under its lock)."""

    def __init__(self, search, *, length_m: float = 60.0, spacing_m: float = 4.0, headings: int = 16,
                 separation_m: float = 50.0, min_length_m: float = 40.0, min_margin_bits: float = 8.0,
                 min_z: float = 6.5):
        self.search = search
        table = search.table
        self.stride = float(table.header.stride_m)
        self.half_bits = table.bits / 2.0
        self.bins = int(table.heading_bins)
        self.length_m, self.spacing_m = float(length_m), float(spacing_m)
        self.n_headings = max(1, int(headings))
        self.separation_m, self.min_length_m = float(separation_m), float(min_length_m)
        self.min_margin_bits, self.min_z = float(min_margin_bits), float(min_z)
        en = np.asarray(table.en, dtype=np.float64)
        self.origin = en.min(axis=0)
        self.cells = np.rint((en - self.origin) / self.stride).astype(np.int64)
        self.shape = (int(self.cells[:, 1].max()) + 1, int(self.cells[:, 0].max()) + 1)
        self.positions = self.origin + self.cells * self.stride
        self.all_tiles = np.arange(en.shape[0])
        self.frames: deque[_Frame] = deque()

    def reset(self) -> None:
        self.frames.clear()

    def wants_frame(self, odometer_m: float) -> bool:
        """Whether a frame taken here adds to the track (``spacing_m`` of driving after the last kept one): only
        those need encoding at every heading."""
        return not self.frames or odometer_m - self.frames[-1].odometer_m >= self.spacing_m

    def add(self, stamp: float, odometer_m: float, pose, codes: np.ndarray, headings_deg) -> None:
        if not self.wants_frame(odometer_m):
            return
        codes = np.atleast_2d(np.asarray(codes, dtype=np.uint8))
        headings = None if headings_deg is None else tuple(float(h) for h in headings_deg)
        self.frames.append(_Frame(stamp, odometer_m, tuple(float(v) for v in pose), codes.copy(), headings, {}))
        while len(self.frames) > 2 and odometer_m - self.frames[1].odometer_m >= self.length_m:
            self.frames.popleft()

    def locate(self, stamp: float) -> Relocalization | None:
        """The best (place, heading) for the kept track; None while it covers less than ``min_length_m``."""
        if len(self.frames) < 2 or self.frames[-1].odometer_m - self.frames[0].odometer_m < self.min_length_m:
            return None
        now = self.frames[-1].pose
        scores = np.stack([self._score(2.0 * math.pi * j / self.n_headings, now) for j in range(self.n_headings)])
        j, i = np.unravel_index(int(np.argmin(scores)), scores.shape)
        best = float(scores[j, i])
        pos = self.positions[i]
        far = np.hypot(self.positions[:, 0] - pos[0], self.positions[:, 1] - pos[1]) > self.separation_m
        runner_up = float(scores[:, far].min()) if far.any() else self.half_bits
        med, spread = median_and_spread(scores, 0.25)
        margin, z = runner_up - best, (med - best) / spread
        length = self.frames[-1].odometer_m - self.frames[0].odometer_m
        return Relocalization(stamp, float(pos[0]), float(pos[1]), 2.0 * math.pi * j / self.n_headings, margin, z,
                              length, len(self.frames),
                              margin >= self.min_margin_bits and z >= self.min_z and length >= self.min_length_m)

    # -- scoring -------------------------------------------------------------------------------------------------
    def _score(self, yaw_now: float, now) -> np.ndarray:
        """Mean per frame of (Hamming distance - half the bits) of the track ending at each tile, for a vehicle
        facing ``yaw_now`` (ENU) now; a frame shifted off the table counts as chance (0)."""
        phi = yaw_now - now[2]  # odometry frame -> east/north
        c, s = math.cos(phi), math.sin(phi)
        total = np.zeros(self.shape, dtype=np.float32)
        for f in self.frames:
            dx, dy = f.pose[0] - now[0], f.pose[1] - now[1]
            shift = (int(round((c * dx - s * dy) / self.stride)), int(round((s * dx + c * dy) / self.stride)))
            _add_shifted(total, self._grid(f, yaw_now + (f.pose[2] - now[2])), shift)
        return total[self.cells[:, 1], self.cells[:, 0]] / len(self.frames) + self.half_bits

    def _grid(self, f: _Frame, yaw: float) -> np.ndarray:
        """The frame's distances to every tile, for the code and table heading bin of a vehicle facing ``yaw``."""
        compass = (90.0 - math.degrees(yaw)) % 360.0
        row = 0
        if f.headings is not None and len(f.headings) > 1:
            diff = np.abs((compass - np.asarray(f.headings) + 180.0) % 360.0 - 180.0)
            row = int(np.argmin(diff))
        table_bin = int(math.floor(compass / (360.0 / self.bins) + 0.5)) % self.bins if self.bins > 1 else 0
        key = (row, table_bin)
        grid = f.grids.get(key)
        if grid is None:
            grid = np.zeros(self.shape, dtype=np.float32)
            d = self.search.distances(f.codes[row], self.all_tiles, table_bin)
            grid[self.cells[:, 1], self.cells[:, 0]] = d - self.half_bits
            f.grids[key] = grid
        return grid
