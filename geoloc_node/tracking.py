"""Tracking filter: a particle filter over (east, north, yaw) in the region table's local ENU frame.

Why particles: the visual measurement is a score over a map of tiles, often multi-modal (repeated structure, a wrong
match), and the odometry frame's rotation to east/north is unknown until the vehicle has moved; a Gaussian filter would
have to pick one mode and one heading up front. A few hundred particles cost about a millisecond per update here.

* predict: odometry pose increments, rotated by each particle's own yaw (so the odometry frame need not be aligned with
  ENU), scaled by its own odometry scale and corrected by its own yaw-rate bias (both learned while GPS is good and
  kept through an outage), with noise proportional to the distance driven and turned; a position random walk in time.
* GPS update (only while the health monitor trusts GPS): Gaussian likelihood with the fix's covariance.
* visual update: Hamming distances from the frame's code to every table tile in a window around the cloud; each tile
  scores ``exp(-(d - d_min) / T)``, the scores are interpolated at each particle with a spatial kernel of about the
  table stride, and mixed with an outlier floor, so that one wrong match cannot wipe out the cloud. With several
  heading bins (forward camera), each particle is scored in the bin of its own yaw: heading is observed too.
* (re)initialisation: from the last trusted GPS state (the filter tracks GPS while it is healthy), or from a global
  top-k search when there is no prior (cold start) or when the filter has diverged (the best tiles of the whole table
  beat the best tiles near the filter by a margin, far away, on several checks in a row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import TrackingConfig
from .records import Odometry
from .search import TableSearch


@dataclass(frozen=True)
class VisualUpdate:
    """What one visual update did (for estimates, markers and diagnostics)."""

    applied: bool
    reason: str
    topk: tuple  # ((east, north, hamming distance), ...) best tiles of the window, best first
    best_distance: int | None
    n_tiles: int


class ParticleFilter:
    """Particle filter over (east, north, yaw). Not thread-safe by itself: the pipeline calls it under its lock."""

    def __init__(self, search: TableSearch, config: TrackingConfig = TrackingConfig()):
        self.search = search
        self.table = search.table
        self.config = config
        self.stride = float(self.table.header.stride_m)
        self.bits = int(self.table.bits)
        self.reset()

    # -- state -----------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.rng = np.random.default_rng(self.config.seed)
        self.p = np.zeros((0, 5))  # east, north, yaw, odometry scale, yaw-rate bias (rad/s)
        self.w = np.zeros(0)
        self.stamp: float | None = None
        self._last_odom: Odometry | None = None
        self._odom_stamp: float | None = None
        self._div_count = 0
        self._div_prev = None
        self.reinits = 0
        self.last_init = "none"

    @property
    def initialized(self) -> bool:
        return self.p.shape[0] > 0

    def init_gaussian(self, east: float, north: float, cov: np.ndarray, stamp: float,
                      yaw: float | None = None, yaw_std: float = math.pi, reason: str = "gps") -> None:
        """Particles around a position (from GPS); yaw uniform unless given."""
        n = self.config.n_particles
        cov = np.asarray(cov, dtype=np.float64) + np.eye(2) * 1e-6
        xy = self.rng.multivariate_normal([east, north], cov, size=n)
        if yaw is None or yaw_std >= math.pi:
            th = self.rng.uniform(-math.pi, math.pi, n)
        else:
            th = yaw + self.rng.normal(0.0, yaw_std, n)
        self.p = np.column_stack([xy, th, self._prior_odometry(n)])
        self.w = np.full(n, 1.0 / n)
        self.stamp = stamp
        self._div_count = 0
        self.last_init = reason

    def init_global(self, codes: np.ndarray, stamp: float, reason: str = "global top-k",
                    headings_deg=None) -> bool:
        """Particles around the global top-k tiles (cold start, kidnapped vehicle).

        ``codes``: one code, or one per heading hypothesis (``headings_deg``, panorama rolled to each heading). With
        several table heading bins (forward camera) every bin is searched. A candidate's heading seeds the particles'
        yaw; without one, yaw is uniform.
        """
        c = self.config
        codes, headings = _as_hypotheses(codes, headings_deg)
        B = self.table.heading_bins
        k = min(c.global_topk, self.table.n_tiles)
        cand = []
        for j, code in enumerate(codes):
            for b in range(B):
                m = self.search.topk(code, k, b)
                hdg = b * 360.0 / B if B > 1 else headings[j]
                for en, d in zip(m.en, m.distances):
                    cand.append((float(d), float(en[0]), float(en[1]), hdg))
        cand.sort(key=lambda x: x[0])
        cand = cand[:k]
        if not cand:
            return False
        n = c.n_particles
        n_local = int(round(n * c.global_init_fraction))
        d = np.array([x[0] for x in cand])
        w = np.exp(-(d - d.min()) / max(c.hamming_temperature * self.bits, 1e-6))
        pick = self.rng.choice(len(cand), size=n_local, p=w / w.sum())
        centre = np.array([[x[1], x[2]] for x in cand])[pick]
        xy = centre + self.rng.normal(0.0, 0.5 * self.stride, (n_local, 2))
        hd = [x[3] for x in cand]
        if all(h is not None for h in hd):
            width = 2 * math.pi / (B if B > 1 else len(codes))
            th = np.radians(90.0 - np.array(hd, dtype=np.float64)[pick]) + \
                self.rng.uniform(-width / 2, width / 2, n_local)
        else:
            th = self.rng.uniform(-math.pi, math.pi, n_local)
        cov = self.table.coverage()
        rest = n - n_local
        xy_r = np.column_stack([self.rng.uniform(cov["east_min"], cov["east_max"], rest),
                                self.rng.uniform(cov["north_min"], cov["north_max"], rest)])
        th_r = self.rng.uniform(-math.pi, math.pi, rest)
        self.p = np.column_stack([np.vstack([np.column_stack([xy, th]), np.column_stack([xy_r, th_r])]),
                                  self._prior_odometry(n)])
        self.w = np.full(n, 1.0 / n)
        self.stamp = stamp
        self._div_count = 0
        self.reinits += 1
        self.last_init = reason
        return True

    # -- predict ---------------------------------------------------------------------------------------------
    def predict_odometry(self, odom: Odometry) -> None:
        """Move particles by the odometry increment since the previous odometry record."""
        prev, self._last_odom = self._last_odom, odom
        self._odom_stamp = odom.stamp
        if prev is None or not self.initialized:
            if self.initialized:
                self._diffuse(odom.stamp, with_odometry=True)
            return
        dt = odom.stamp - prev.stamp
        if dt <= 0:
            return
        dx, dy = odom.x - prev.x, odom.y - prev.y
        c0, s0 = math.cos(prev.yaw), math.sin(prev.yaw)
        fwd, lat = c0 * dx + s0 * dy, -s0 * dx + c0 * dy
        dyaw = math.atan2(math.sin(odom.yaw - prev.yaw), math.cos(odom.yaw - prev.yaw))
        if math.hypot(dx, dy) < 1e-9 and abs(prev.v * dt) > 1e-3:  # twist-only odometry
            fwd, lat, dyaw = prev.v * dt, 0.0, prev.yaw_rate * dt
        c = self.config
        n = self.p.shape[0]
        dist = math.hypot(fwd, lat)
        f = fwd * self.p[:, 3] * (1.0 + self.rng.normal(0.0, c.odom_distance_noise, n))
        lt = lat + self.rng.normal(0.0, c.odom_lateral_noise * dist + 1e-6, n)
        th = self.p[:, 2]
        dyaw = dyaw - self.p[:, 4] * dt  # each particle's own yaw-rate bias
        # heading at mid-step for the translation
        mid = th + 0.5 * dyaw
        self.p[:, 0] += np.cos(mid) * f - np.sin(mid) * lt
        self.p[:, 1] += np.sin(mid) * f + np.cos(mid) * lt
        self.p[:, 2] = th + dyaw * (1.0 + self.rng.normal(0.0, c.odom_yaw_noise, n)) + \
            self.rng.normal(0.0, c.yaw_random_walk * math.sqrt(dt), n)
        self._diffuse(odom.stamp, with_odometry=True)

    def predict_time(self, stamp: float) -> None:
        """Advance time without odometry (random walk; a large one when there has been no odometry for a second)."""
        if not self.initialized:
            return
        no_odom = self._odom_stamp is None or stamp - self._odom_stamp > 1.0
        self._diffuse(stamp, with_odometry=not no_odom)

    def _diffuse(self, stamp: float, with_odometry: bool) -> None:
        if self.stamp is None:
            self.stamp = stamp
            return
        dt = stamp - self.stamp
        if dt <= 0:
            return
        self.stamp = stamp
        c = self.config
        sigma = (c.position_random_walk if with_odometry else c.no_odometry_random_walk)
        n = self.p.shape[0]
        self.p[:, :2] += self.rng.normal(0.0, sigma * math.sqrt(dt), (n, 2))
        self.p[:, 3] += self.rng.normal(0.0, c.odom_scale_random_walk * math.sqrt(dt), n)
        self.p[:, 4] += self.rng.normal(0.0, c.yaw_rate_bias_random_walk * math.sqrt(dt), n)

    def _prior_odometry(self, n: int) -> np.ndarray:
        """Odometry scale and yaw-rate bias of fresh particles: learned while GPS is good, kept through an outage."""
        c = self.config
        return np.column_stack([1.0 + self.rng.normal(0.0, c.odom_scale_std, n),
                                self.rng.normal(0.0, c.yaw_rate_bias_std, n)])

    # -- updates ---------------------------------------------------------------------------------------------
    def update_gps(self, east: float, north: float, cov: np.ndarray) -> None:
        c = self.config
        cov = np.asarray(cov, dtype=np.float64).copy()
        cov += np.eye(2) * c.gps_min_std_m ** 2
        inv = np.linalg.inv(cov)
        d = self.p[:, :2] - [east, north]
        m2 = np.einsum("ni,ij,nj->n", d, inv, d)
        if not self.initialized:
            return
        if np.all(m2 > 100.0):  # every particle beyond 10 sigma: the filter is somewhere else; restart on the fix
            self.init_gaussian(east, north, cov, self.stamp or 0.0, reason="gps (filter far from the fix)")
            return
        self._reweight(np.exp(-0.5 * (m2 - m2.min())))

    def update_visual(self, codes: np.ndarray, report_k: int = 5, headings_deg=None) -> VisualUpdate:
        """Weight particles by the Hamming distances of the tiles around them.

        ``codes``: one code, or one per heading hypothesis (``headings_deg``); each particle is scored with the code of
        the hypothesis nearest to its yaw and, with several table heading bins, in the bin of its yaw.
        """
        c = self.config
        codes, headings = _as_hypotheses(codes, headings_deg)
        mean, _ = self._mean_cov()
        r = np.sqrt(((self.p[:, :2] - mean) ** 2).sum(axis=1))
        radius = float(np.clip(np.quantile(r, 0.99) + 2.0 * self.stride, c.window_min_radius_m, c.window_max_radius_m))
        keys = self._keys_of(self.p[:, 2], headings)  # [N] row key = hypothesis * bins + table bin
        used = np.unique(keys)
        B = self.table.heading_bins
        k0 = int(used[0])
        idx, d0 = self.search.window_distances(codes[k0 // B], float(mean[0]), float(mean[1]), radius, k0 % B)
        if idx.size == 0:
            return VisualUpdate(False, "no table tiles around the filter (outside the coverage)", (), None, 0)
        rows = [d0] + [self.search.distances(codes[int(k) // B], idx, int(k) % B) for k in used[1:]]
        D = np.stack(rows).astype(np.float64)  # [keys used, tiles]
        dmin = D.min()
        tau = max(c.hamming_temperature * self.bits, 1e-6)
        S = np.exp(-(D - dmin) / tau)
        en = np.asarray(self.table.en[idx], dtype=np.float64)
        lik = self._interpolate(en, S, np.searchsorted(used, keys))
        a = c.visual_outlier_prob
        self._reweight(a + (1.0 - a) * lik)
        # report: best tiles for the mean heading
        kmean = int(self._keys_of(np.array([self.yaw_mean()]), headings)[0])
        row = D[int(np.nonzero(used == kmean)[0][0])] if kmean in used else D.min(axis=0)
        order = np.lexsort((idx, row))[:report_k]
        topk = tuple((float(en[i, 0]), float(en[i, 1]), int(row[i])) for i in order)
        return VisualUpdate(True, "ok", topk, int(dmin), int(idx.size))

    def check_divergence(self, codes: np.ndarray, local_best: int | None, stamp: float, headings_deg=None) -> bool:
        """Compare the filter with a global top-k search; re-initialise on a credible, persistent disagreement.

        A check counts against the filter when the global top-k form one tight cluster (the robust single-frame
        estimate of :func:`geoloc_node.estimate.estimate_location` keeps at least ``divergence_inlier_weight`` of the
        weight), whose best tile beats the best tile near the filter by ``divergence_margin`` x bits, farther than
        ``divergence_distance_m`` from the filter, and (from the second check on) where the previous check's cluster
        has moved to, as the filter moved. ``divergence_checks`` such checks in a row: the filter restarts around the
        cluster. A weak model's scattered global matches never add up to that, so they cannot kidnap the filter.
        """
        from .estimate import estimate_location

        c = self.config
        codes, headings = _as_hypotheses(codes, headings_deg)
        mean, _ = self._mean_cov()
        B = self.table.heading_bins
        key = int(self._keys_of(np.array([self.yaw_mean()]), headings)[0])
        g = self.search.topk(codes[key // B], min(c.global_topk, self.table.n_tiles), key % B)
        est = estimate_location(g, self.stride)
        gd = int(g.distances[0])
        cand = np.array([est.east, est.north])
        far = float(np.hypot(*(cand - mean))) > c.divergence_distance_m
        worse = local_best is None or local_best - gd >= c.divergence_margin * self.bits
        credible = est.inlier_weight >= c.divergence_inlier_weight and est.n_inliers >= 3
        bad = far and worse and credible
        prev = self._div_prev
        if bad and prev is not None and self._div_count > 0:
            moved_cand, moved_filter = cand - prev[0], mean - prev[1]
            if float(np.hypot(*(moved_cand - moved_filter))) > max(3.0 * self.stride, 30.0):
                self._div_count = 0  # the candidate jumped around: not one place seen repeatedly
        self._div_count = self._div_count + 1 if bad else 0
        self._div_prev = (cand, mean.copy()) if bad else None
        if self._div_count >= c.divergence_checks:
            _, _, yaw, yaw_var = self.estimate()
            self.init_gaussian(est.east, est.north, est.cov * 4.0, stamp, yaw=yaw,
                               yaw_std=min(math.sqrt(yaw_var), math.pi),
                               reason="re-initialised: diverged from a persistent global match")
            self.reinits += 1
            self._div_prev = None
            return True
        return False

    # -- outputs ---------------------------------------------------------------------------------------------
    def odometry_calibration(self) -> tuple[float, float]:
        """Weighted mean odometry scale and yaw-rate bias (rad/s) the filter has learned."""
        return float(self.w @ self.p[:, 3]), float(self.w @ self.p[:, 4])

    def estimate(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(mean [e, n], cov 2x2, yaw mean, yaw variance)."""
        mean, cov = self._mean_cov()
        C = float(np.sum(self.w * np.cos(self.p[:, 2])))
        S = float(np.sum(self.w * np.sin(self.p[:, 2])))
        R = min(max(math.hypot(C, S), 1e-9), 1.0)
        return mean, cov, math.atan2(S, C), -2.0 * math.log(R)

    def yaw_mean(self) -> float:
        return math.atan2(float(np.sum(self.w * np.sin(self.p[:, 2]))), float(np.sum(self.w * np.cos(self.p[:, 2]))))

    def ess(self) -> float:
        return float(1.0 / np.sum(self.w ** 2)) if self.initialized else 0.0

    def code_row_of_yaw(self, yaw: float, headings_deg) -> tuple[int, int]:
        """(index of the code among the frame's heading hypotheses, table heading bin) that a particle at ``yaw``
        is scored with."""
        _, headings = _as_hypotheses(np.zeros((len(headings_deg) if headings_deg is not None else 1, 1), np.uint8),
                                     headings_deg)
        key = int(self._keys_of(np.array([yaw]), headings)[0])
        return key // self.table.heading_bins, key % self.table.heading_bins

    def restart_odometry(self) -> None:
        """The odometry source restarted (a new track): the next record starts the increments afresh."""
        self._last_odom = None

    # -- helpers ---------------------------------------------------------------------------------------------
    def _mean_cov(self):
        mean = self.w @ self.p[:, :2]
        d = self.p[:, :2] - mean
        cov = (d * self.w[:, None]).T @ d + np.eye(2) * 1e-6
        return mean, cov

    def _interpolate(self, en: np.ndarray, S: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Kernel-weighted (Nadaraya-Watson) average of tile scores ``S[row]`` at each particle; 0 with no tile near.

        Tiles on the table's regular lattice (the usual case) are put on a grid and each particle reads its 4x4
        neighbourhood: O(particles). Irregular tiles fall back to all pairs, in chunks.
        """
        sig = self.config.tile_kernel_stride * self.stride
        st = self.stride
        e0, n0 = en[:, 0].min(), en[:, 1].min()
        fx, fy = (en[:, 0] - e0) / st, (en[:, 1] - n0) / st
        ix, iy = np.rint(fx).astype(np.int64), np.rint(fy).astype(np.int64)
        nx, ny = int(ix.max()) + 1, int(iy.max()) + 1
        regular = (np.abs(fx - ix).max() < 0.25 and np.abs(fy - iy).max() < 0.25 and
                   np.unique(iy * nx + ix).size == ix.size and nx * ny <= 4_000_000)
        P = self.p[:, :2]
        if not regular:
            out = np.zeros(P.shape[0])
            for a in range(0, P.shape[0], 256):
                sl = slice(a, a + 256)
                k = np.exp(-0.5 * ((P[sl, None, :] - en[None, :, :]) ** 2).sum(axis=2) / (sig * sig))
                ks = k.sum(axis=1)
                num = (k * S[rows[sl]]).sum(axis=1)
                out[sl] = np.where(ks > 1e-3, num / np.maximum(ks, 1e-12), 0.0)
            return out
        pad = 2
        G = np.zeros((S.shape[0], ny + 2 * pad, nx + 2 * pad))
        M = np.zeros((ny + 2 * pad, nx + 2 * pad))
        G[:, iy + pad, ix + pad] = S
        M[iy + pad, ix + pad] = 1.0
        px, py = (P[:, 0] - e0) / st + pad, (P[:, 1] - n0) / st + pad
        bx, by = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
        num = np.zeros(P.shape[0])
        den = np.zeros(P.shape[0])
        h, w = M.shape
        scale = 0.5 * (st / sig) ** 2
        for dy in (-1, 0, 1, 2):
            cy = by + dy
            for dx in (-1, 0, 1, 2):
                cx = bx + dx
                ok = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
                cxc, cyc = np.where(ok, cx, 0), np.where(ok, cy, 0)
                wgt = np.exp(-scale * ((cx - px) ** 2 + (cy - py) ** 2)) * M[cyc, cxc] * ok
                num += wgt * G[rows, cyc, cxc]
                den += wgt
        return np.where(den > 1e-3, num / np.maximum(den, 1e-12), 0.0)

    def _keys_of(self, yaw: np.ndarray, headings) -> np.ndarray:
        """Row key of each yaw: (index of the nearest heading hypothesis) * table bins + table heading bin."""
        B = self.table.heading_bins
        tb = self._bins_of(yaw) if B > 1 else np.zeros(len(yaw), dtype=np.int64)
        if len(headings) <= 1 or headings[0] is None:
            return tb
        hdg = np.mod(90.0 - np.degrees(yaw), 360.0)
        diff = np.abs(((hdg[:, None] - np.asarray(headings, dtype=np.float64)[None, :]) + 180.0) % 360.0 - 180.0)
        return np.argmin(diff, axis=1).astype(np.int64) * B + tb

    def _bins_of(self, yaw: np.ndarray) -> np.ndarray:
        B = self.table.heading_bins
        hdg = np.mod(90.0 - np.degrees(yaw), 360.0)
        return (np.floor(hdg / (360.0 / B) + 0.5).astype(np.int64)) % B

    def _reweight(self, lik: np.ndarray) -> None:
        w = self.w * lik
        s = w.sum()
        if not np.isfinite(s) or s <= 0:
            w = np.full_like(self.w, 1.0 / self.w.size)
        else:
            w = w / s
        self.w = w
        if self.ess() < self.config.resample_ess_fraction * self.w.size:
            self._resample()

    def _resample(self) -> None:
        n = self.w.size
        pos = (self.rng.random() + np.arange(n)) / n
        idx = np.searchsorted(np.cumsum(self.w), pos)
        idx = np.minimum(idx, n - 1)
        self.p = self.p[idx]
        # roughening: keeps diversity after resampling
        self.p[:, :2] += self.rng.normal(0.0, 0.05 * self.stride, (n, 2))
        self.p[:, 2] += self.rng.normal(0.0, 0.01, n)
        self.p[:, 3] += self.rng.normal(0.0, 0.1 * self.config.odom_scale_random_walk, n)
        self.p[:, 4] += self.rng.normal(0.0, 0.1 * self.config.yaw_rate_bias_random_walk, n)
        self.w = np.full(n, 1.0 / n)


def _as_hypotheses(codes, headings_deg):
    """(codes [K, bytes], headings [K] or [None]) from one code or K codes with their headings."""
    codes = np.asarray(codes)
    if codes.ndim == 1:
        codes = codes[None]
    if headings_deg is None:
        if len(codes) != 1:
            raise ValueError("several codes need their headings_deg")
        return codes, [None]
    headings = [float(h) for h in np.atleast_1d(headings_deg)]
    if len(headings) != len(codes):
        raise ValueError(f"{len(codes)} codes but {len(headings)} headings")
    return codes, headings
