"""Does the camera's recent *track* match the table where the filter says it is, and nowhere else?

One frame that matches is weak evidence: repeated structure matches in many places, and consecutive frames look
alike, so a filter that locked onto a wrong place keeps finding good matches frame after frame (measured: a vehicle
teleported 500 m away kept "confirming" frames for 10 s). A track is strong evidence: the last frames, placed along
the odometry (rotated into east/north by the filter's heading), line up with the table's codes at one place only if
that place is right (the idea of sequence matching, SeqSLAM, and of satellite navigation's solution separation).

For every tile position p of a window around the filter, the track score is the sum over the kept frames k of the
Hamming distance between frame k's code and the tile at p + R(phi)(o_k - o_now), with o the odometry position and phi
the rotation from the odometry frame to east/north that the filter's heading implies (a tile missing from the table
counts half the bits: chance). Then, per frame:

* ``margin_bits``: how much better the filter's track scores than the best track ending farther than
  ``separation_m`` from it (positive: the filter's place is the best; near 0 or negative: another place fits as well);
* ``z``: how far the filter's track stands out from the scores of all positions (robust z; about 0 for a camera the
  model cannot read).

Frames are kept at least ``spacing_m`` of driving apart, over the last ``length_m`` of driving (at most
``max_frames``), so a stopped vehicle keeps the track it drove.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .robust import median_and_spread


@dataclass(frozen=True)
class TrackFrame:
    stamp: float
    odometer_m: float  # distance driven when the frame was taken
    odom: tuple[float, float, float]  # odometry x, y (m), yaw (rad) at the frame
    code: np.ndarray  # the frame's code at the filter's heading
    heading_bin: int  # the table heading bin it is compared in


@dataclass(frozen=True)
class TrackVerdict:
    stamp: float
    frames: int
    length_m: float  # driving covered by the kept frames
    margin_bits: float  # per frame: best far alternative minus the filter's track (> 0: the filter's place is best)
    z: float  # robust z of the filter's track score among all positions of the window
    alternative_en: tuple[float, float]  # where the best far alternative track ends
    best_z: float  # robust z of the best track anywhere in the window (high: the frames are readable somewhere)
    recent_margin_bits: float  # the same two for the newest frames alone (``recent_m`` of driving, at least
    recent_z: float  # ``recent_frames``): a vehicle no longer where the long track says shows here first
    newest_z: float  # robust z, at the filter's place, of the newest frame alone
    first_stamp: float  # stamp of the oldest frame of the track
    fresh_length_m: float = 0.0  # the same for the frames taken after ``fresh_after`` (check's argument) alone:
    fresh_margin_bits: float = -math.inf  # a place the old frames chose cannot be confirmed by them again
    fresh_z: float = 0.0
    fresh_alternative_en: tuple[float, float] = (math.nan, math.nan)
    fresh_best_z: float = 0.0
    fresh_frames: int = 0
    fresh_first_stamp: float = math.inf
    recent_best_en: tuple[float, float] = (math.nan, math.nan)  # where the newest frames alone fit best, anywhere
    recent_best_z: float = 0.0  # (robust z there): readable frames single out their place, unreadable ones a random one


class TrackMatcher:
    """Keeps the recent frames and scores tracks; not thread-safe (the pipeline calls it under its lock)."""

    def __init__(self, search, *, length_m: float, spacing_m: float, max_frames: int, radius_m: float,
                 separation_m: float, recent_frames: int = 3, recent_m: float = 0.0):
        self.search = search
        self.stride = float(search.table.header.stride_m)
        self.half_bits = search.table.bits / 2.0
        self.length_m, self.spacing_m, self.radius_m = length_m, spacing_m, radius_m
        self.separation_m = separation_m
        self.recent_frames = max(1, int(recent_frames))
        self.recent_m = float(recent_m)
        self.resolution_m = 1.5 * self.stride  # places closer than this are "the filter's place"
        self.frames: deque[TrackFrame] = deque(maxlen=max(2, int(max_frames)))
        self.reset()

    def reset(self) -> None:
        self.frames.clear()
        self._window = None  # (anchor cell, tile indices, their grid cells, origin, grid shape)
        self._grids: dict = {}  # frame stamp -> its distances on the window's grid (computed once per window)

    def add(self, frame: TrackFrame) -> None:
        """Keep a frame: the newest frame is always kept, and replaces the previous newest when that one lies closer
        than ``spacing_m`` of driving to the frame before it (a slow or stopped vehicle keeps its track)."""
        if len(self.frames) >= 2 and frame.odometer_m - self.frames[-2].odometer_m < self.spacing_m:
            self.frames.pop()
        self.frames.append(frame)
        while len(self.frames) > 2 and frame.odometer_m - self.frames[1].odometer_m >= self.length_m:
            self.frames.popleft()

    def check(self, stamp: float, filter_en, filter_yaw: float, odom_now,
              fresh_after: float | None = None) -> TrackVerdict | None:
        """Score the kept track around the filter's position; None without frames or without tiles around it.
        ``fresh_after``: also score the frames taken after this stamp alone (the ``fresh_*`` fields; None: all)."""
        if not self.frames:
            return None
        window = self._window_at(filter_en)
        if window is None:
            return None
        _, idx, cells, origin, shape = window
        phi = float(filter_yaw) - float(odom_now[2])  # odometry frame -> east/north
        c, s = math.cos(phi), math.sin(phi)
        n = len(self.frames)
        k = self._recent_count()
        fresh_first = 0 if fresh_after is None else next(
            (i for i, f in enumerate(self.frames) if f.stamp > fresh_after), n)
        # sums of (distance - half the bits): a tile missing from the table, or a shift off the window, adds 0
        score, recent, newest, fresh = np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape)
        kept = {f.stamp for f in self.frames}
        for stamp_ in [key for key in self._grids if key not in kept]:
            del self._grids[stamp_]
        for i, f in enumerate(self.frames):
            dev = self._grid(f, idx, cells, shape)
            dx, dy = f.odom[0] - odom_now[0], f.odom[1] - odom_now[1]
            shift = (int(round((c * dx - s * dy) / self.stride)), int(round((s * dx + c * dy) / self.stride)))
            targets = (score, recent) if i >= n - k else (score,)
            targets += (newest,) if i == n - 1 else ()
            for target in targets + ((fresh,) if i >= fresh_first else ()):
                _add_shifted(target, dev, shift)
        score, recent, newest = score / n + self.half_bits, recent / k + self.half_bits, newest + self.half_bits
        fresh = fresh / max(n - fresh_first, 1) + self.half_bits
        pos = origin + cells * self.stride
        filter_en = np.asarray(filter_en, dtype=np.float64)
        dist = np.hypot(pos[:, 0] - filter_en[0], pos[:, 1] - filter_en[1])
        margin, z, best_z, alt_en, _ = self._separation(score[cells[:, 1], cells[:, 0]], dist, pos)
        recent_margin, recent_z, recent_best_z, _, recent_best_en = self._separation(
            recent[cells[:, 1], cells[:, 0]], dist, pos)
        newest_z = self._separation(newest[cells[:, 1], cells[:, 0]], dist, pos)[1]
        if fresh_first < n:
            fresh_margin, fresh_z, fresh_best_z, fresh_alt, _ = self._separation(fresh[cells[:, 1], cells[:, 0]],
                                                                                 dist, pos)
            fresh_length = self.frames[-1].odometer_m - self.frames[fresh_first].odometer_m
            fresh_first_stamp = self.frames[fresh_first].stamp
        else:
            fresh_margin, fresh_z, fresh_best_z, fresh_alt = -math.inf, 0.0, 0.0, (math.nan, math.nan)
            fresh_length, fresh_first_stamp = 0.0, math.inf
        return TrackVerdict(stamp=stamp, frames=n, length_m=self.frames[-1].odometer_m - self.frames[0].odometer_m,
                            margin_bits=margin, z=z, alternative_en=alt_en, best_z=best_z,
                            recent_margin_bits=recent_margin, recent_z=recent_z, newest_z=newest_z,
                            first_stamp=self.frames[0].stamp, fresh_length_m=fresh_length,
                            fresh_margin_bits=fresh_margin, fresh_z=fresh_z, fresh_alternative_en=fresh_alt,
                            fresh_best_z=fresh_best_z, fresh_frames=n - fresh_first,
                            fresh_first_stamp=fresh_first_stamp, recent_best_en=recent_best_en,
                            recent_best_z=recent_best_z)

    def frame_z(self, frame: TrackFrame, filter_en) -> float | None:
        """Robust z, at the filter's place, of one frame alone: the newest-frame test of :meth:`check` (its
        ``newest_z`` once the frame is the newest kept), cheap enough to run before the frame's estimate is
        published. The frame's distances are kept for the check (same window). None without tiles around."""
        window = self._window_at(filter_en)
        if window is None:
            return None
        _, idx, cells, origin, shape = window
        values = self._grid(frame, idx, cells, shape)[cells[:, 1], cells[:, 0]] + self.half_bits
        pos = origin + cells * self.stride
        filter_en = np.asarray(filter_en, dtype=np.float64)
        return self._separation(values, np.hypot(pos[:, 0] - filter_en[0], pos[:, 1] - filter_en[1]), pos)[1]

    def _grid(self, f: TrackFrame, idx, cells, shape) -> np.ndarray:
        """The frame's (distance - half the bits) on the window's grid, computed once per window (the check runs at
        every frame)."""
        dev = self._grids.get(f.stamp)
        if dev is None:
            dev = np.zeros(shape, dtype=np.float32)
            dev[cells[:, 1], cells[:, 0]] = self.search.distances(f.code, idx, f.heading_bin) - self.half_bits
            self._grids[f.stamp] = dev
        return dev

    def _recent_count(self) -> int:
        """How many of the newest frames make the recent window: those within ``recent_m`` of driving of the newest
        (the same stretch of road whatever the frame rate), and at least ``recent_frames``."""
        n = len(self.frames)
        k = min(n, self.recent_frames)
        newest = self.frames[-1].odometer_m
        while k < n and newest - self.frames[n - k - 1].odometer_m <= self.recent_m:
            k += 1
        return k

    def _window_at(self, filter_en):
        """The tiles within ``radius_m`` of a point near the filter, on a grid of table strides. The point moves in
        steps of a quarter of the radius, so that consecutive checks share the window and its cached distances."""
        step = self.radius_m / 4.0
        anchor = (round(float(filter_en[0]) / step), round(float(filter_en[1]) / step))
        if self._window is not None and self._window[0] == anchor:
            return self._window
        self._grids.clear()
        idx = self.search.window(anchor[0] * step, anchor[1] * step, self.radius_m)
        if idx.size == 0:
            self._window = None
            return None
        en = np.asarray(self.search.table.en[idx], dtype=np.float64)
        origin = en.min(axis=0)
        cells = np.rint((en - origin) / self.stride).astype(np.int64)
        shape = (int(cells[:, 1].max()) + 1, int(cells[:, 0].max()) + 1)
        self._window = (anchor, idx, cells, origin, shape)
        return self._window

    def _separation(self, values: np.ndarray, dist: np.ndarray, pos: np.ndarray):
        """(margin, z, best z, where the best far alternative is, where the best place is) of per-frame track scores
        at the window's tiles."""
        near = dist <= self.resolution_m  # the filter's place, up to the grid's quantisation
        far = dist > self.separation_m
        own = float(values[near].min()) if near.any() else self.half_bits
        if far.any():
            j = int(np.argmin(np.where(far, values, np.inf)))
            alt, alt_en = float(values[j]), (float(pos[j, 0]), float(pos[j, 1]))
        else:
            alt, alt_en = self.half_bits, (math.nan, math.nan)
        med, spread = median_and_spread(values, 0.25)
        b = int(np.argmin(values))
        return alt - own, (med - own) / spread, (med - float(values[b])) / spread, alt_en, (float(pos[b, 0]),
                                                                                             float(pos[b, 1]))


def _add_shifted(target: np.ndarray, grid: np.ndarray, shift: tuple[int, int]) -> None:
    """``target[y, x] += grid[y + sy, x + sx]`` where that lies inside ``grid``."""
    sx, sy = shift
    h, w = grid.shape
    ys, yd = (slice(sy, h), slice(0, h - sy)) if sy >= 0 else (slice(0, h + sy), slice(-sy, h))
    xs, xd = (slice(sx, w), slice(0, w - sx)) if sx >= 0 else (slice(0, w + sx), slice(-sx, w))
    if ys.start < ys.stop and xs.start < xs.stop:
        target[yd, xd] += grid[ys, xs]
