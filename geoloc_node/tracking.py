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
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .config import TrackingConfig
from .records import Odometry
from .robust import median_and_spread
from .search import TableSearch


@dataclass(frozen=True)
class VisualUpdate:
    """What one frame says about the particles (for the integrity monitor, estimates, markers and diagnostics).

    ``log_bayes_factor``: how much better the frame's matches agree with the filter's prediction than with a tile of
    the search window chosen at random: log(sum_i w_i L(x_i) / mean over window tiles of L), with L the tile score
    each particle reads. About 0 for a frame the model cannot read (its codes match any place as well as this one),
    or for a filter at the wrong place; large when the prediction sits on the frame's best matches. Computed before
    the frame moves the particles, so a frame cannot confirm the position it just created.
    ``distinctness``: (median - min) / robust spread of the window's Hamming distances: how far the best tile stands
    out from unrelated tiles (chance codes: about sqrt(2 ln N) for N tiles).
    """

    applied: bool  # the window held tiles (False: the filter is outside the table's coverage)
    reason: str
    topk: tuple  # ((east, north, hamming distance), ...) best tiles of the window, best first
    best_distance: int | None
    n_tiles: int
    log_bayes_factor: float = 0.0
    distinctness: float = 0.0
    likelihood: np.ndarray | None = field(default=None, repr=False)  # per particle, for apply_visual


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
        self.divergence_suspect = False
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
        """Move particles by the odometry increment since the previous odometry record.

        The model, per particle (odometry scale ``s`` and yaw-rate bias ``b`` are particle states)::

            forward = fwd * s * (1 + N(0, odom_distance_noise))      lateral = lat + N(0, odom_lateral_noise * dist)
            turn    = (dyaw - b dt) * (1 + N(0, odom_yaw_noise)) + N(0, yaw_random_walk sqrt(dt))
            (east, north) += R(yaw + (dyaw - b dt) / 2) (forward, lateral), then the random walks of :meth:`_diffuse`

        Independent Gaussians that add up are drawn as one Gaussian of the summed variance: the isotropic position
        walk is as isotropic in each particle's forward/lateral axes, so it joins the forward and the lateral noise.
        Same distribution, 5 standard normals per particle instead of 8; at 1000 particles the normals are most of
        the cost (about 10 ns each here).
        """
        prev, self._last_odom = self._last_odom, odom
        self._odom_stamp = odom.stamp
        if prev is None or not self.initialized:
            if self.initialized:
                self._diffuse(odom.stamp, with_odometry=True)
            return
        dt = odom.stamp - prev.stamp
        if dt <= 0:
            return
        fwd, lat, dyaw = _odometry_increment(prev, odom, dt)
        c = self.config
        n = self.p.shape[0]
        walk_dt = self._advance_stamp(odom.stamp)
        walk = c.position_random_walk * math.sqrt(walk_dt)
        z = self._standard_normals(5 * n)  # rows: forward, lateral, turn, scale, bias
        if not self.p.flags.c_contiguous:
            self.p = np.ascontiguousarray(self.p)
        # One compiled pass over the particles (see _predict_kernel): the numpy expressions of this model made about
        # 20 temporary arrays per message, 100 us at 1000 particles against about 55 us for the normals themselves.
        # float(): one compiled signature, whatever number types the configuration holds
        _predict_kernel(self.p, z, float(fwd), float(lat), float(dyaw), float(dt), float(walk * walk),
                        float(c.odom_distance_noise),
                        float(math.hypot(c.odom_lateral_noise * math.hypot(fwd, lat) + 1e-6, walk)),
                        float(c.odom_yaw_noise), float(c.yaw_random_walk ** 2 * dt), walk_dt > 0,
                        float(c.odom_scale_random_walk * math.sqrt(walk_dt)),
                        float(c.yaw_rate_bias_random_walk * math.sqrt(walk_dt)))

    def predict_time(self, stamp: float) -> None:
        """Advance time without odometry (random walk; a large one when there has been no odometry for a second)."""
        if not self.initialized:
            return
        no_odom = self._odom_stamp is None or stamp - self._odom_stamp > 1.0
        self._diffuse(stamp, with_odometry=not no_odom)

    def _diffuse(self, stamp: float, with_odometry: bool) -> None:
        """Random walks of position, odometry scale and yaw-rate bias over the time since the filter's stamp."""
        dt = self._advance_stamp(stamp)
        if dt <= 0:
            return
        c = self.config
        sigma = (c.position_random_walk if with_odometry else c.no_odometry_random_walk)
        n = self.p.shape[0]
        z = self._standard_normals(4 * n)
        self.p[:, :2] += sigma * math.sqrt(dt) * z[:2 * n].reshape(n, 2)
        self.p[:, 3] += c.odom_scale_random_walk * math.sqrt(dt) * z[2 * n:3 * n]
        self.p[:, 4] += c.yaw_rate_bias_random_walk * math.sqrt(dt) * z[3 * n:]

    def _advance_stamp(self, stamp: float) -> float:
        """Move the filter's stamp to ``stamp``; the seconds the random walks cover (0 on the first or an old stamp)."""
        if self.stamp is None:
            self.stamp = stamp
            return 0.0
        dt = stamp - self.stamp
        if dt <= 0:
            return 0.0
        self.stamp = stamp
        return dt

    def _prior_odometry(self, n: int) -> np.ndarray:
        """Odometry scale and yaw-rate bias of fresh particles: learned while GPS is good, kept through an outage."""
        c = self.config
        z = self._standard_normals(2 * n).reshape(n, 2)
        return z * [c.odom_scale_std, c.yaw_rate_bias_std] + [1.0, 0.0]

    def _standard_normals(self, count: int) -> np.ndarray:
        """``count`` standard normals, sliced from blocks drawn from ``self.rng``.

        One ``rng.normal`` call per noise term cost 1-1.5 us of overhead each, seven per odometry message; a block of
        65,536 serves 13 messages of 1000 particles. The block belongs to the generator it came from: after
        :meth:`reset` (a new generator) the first draw starts a new block, so a reset filter repeats a fresh one.
        """
        block = getattr(self, "_normal_block", None)
        if block is None or block.rng is not self.rng:
            block = self._normal_block = _NormalBlock(self.rng)
        return block.take(count)

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
        """Score a frame and weight the particles with it (:meth:`score_visual` then :meth:`apply_visual`)."""
        vu = self.score_visual(codes, report_k, headings_deg)
        self.apply_visual(vu)
        return vu

    def score_visual(self, codes: np.ndarray, report_k: int = 5, headings_deg=None) -> VisualUpdate:
        """What a frame says about each particle, from the Hamming distances of the tiles around the cloud; the
        particles are not changed.

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
        row_of = np.searchsorted(used, keys)
        lik = self._interpolate(en, S, row_of)
        predicted = float(self.w @ lik)  # the frame's score where the filter expects the vehicle ...
        at_random = float(self.w @ S.mean(axis=1)[row_of])  # ... and at a tile of the window taken at random
        # report: best tiles for the mean heading
        kmean = int(self._keys_of(np.array([self.yaw_mean()]), headings)[0])
        row = D[int(np.nonzero(used == kmean)[0][0])] if kmean in used else D.min(axis=0)
        order = np.lexsort((idx, row))[:report_k]
        topk = tuple((float(en[i, 0]), float(en[i, 1]), int(row[i])) for i in order)
        return VisualUpdate(True, "ok", topk, int(dmin), int(idx.size),
                            log_bayes_factor=math.log(max(predicted, 1e-300) / max(at_random, 1e-300)),
                            distinctness=_distinctness(row), likelihood=lik)

    def apply_visual(self, vu: VisualUpdate) -> None:
        """Weight the particles with a scored frame (mixed with an outlier floor: one wrong match cannot wipe out the
        cloud)."""
        if not vu.applied or vu.likelihood is None or vu.likelihood.shape[0] != self.w.shape[0]:
            return
        a = self.config.visual_outlier_prob
        self._reweight(a + (1.0 - a) * vu.likelihood)

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
        self.divergence_suspect = bad  # read by the integrity monitor: another place matches better
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
        scale = 0.5 * (st / sig) ** 2
        # The 4x4 neighbourhood in two compiled passes around one np.exp: 16 rounds of a dozen numpy operations cost
        # about 1 ms per frame. The exponential stays numpy's (its float64 exp is not the C library's: they differ
        # in the last bit), so the weights, and the sums taken in the same order, are the same bits as before.
        arg, cyc, cxc, ok = _neighbour_exponents(px, py, bx, by, M.shape[0], M.shape[1], -scale)
        num, den = _neighbour_sums(np.exp(arg), cyc, cxc, ok, M, G, np.asarray(rows, dtype=np.int64))
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


def _distinctness(distances: np.ndarray) -> float:
    """(median - min) / (1.4826 MAD) of a row of Hamming distances: how far the best tile stands out."""
    med, spread = median_and_spread(distances, 0.5)
    return (med - float(distances.min())) / spread


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


def _odometry_increment(prev: Odometry, odom: Odometry, dt: float) -> tuple[float, float, float]:
    """(forward, lateral, yaw change) from ``prev`` to ``odom`` in the vehicle frame at ``prev``; from the twist when
    the pose stands still while the vehicle moves (twist-only odometry)."""
    dx, dy = odom.x - prev.x, odom.y - prev.y
    c0, s0 = math.cos(prev.yaw), math.sin(prev.yaw)
    if math.hypot(dx, dy) < 1e-9 and abs(prev.v * dt) > 1e-3:
        return prev.v * dt, 0.0, prev.yaw_rate * dt
    dyaw = math.atan2(math.sin(odom.yaw - prev.yaw), math.cos(odom.yaw - prev.yaw))
    return c0 * dx + s0 * dy, -s0 * dx + c0 * dy, dyaw


@njit(cache=True, nogil=True)
def _predict_kernel(p, z, fwd, lat, dyaw, dt, walk2, distance_noise, lateral_std, yaw_noise, yaw_walk2, walked,
                    scale_step, bias_step):
    """The odometry prediction of :meth:`ParticleFilter.predict_odometry`, particle by particle, in place on ``p``
    ([n, 5], C order) with the standard normals ``z`` ([5 n]: n forward, n lateral, n turn, n scale, n bias).

    It performs the same IEEE operations in the same order as the numpy expressions it replaced (kept in
    tests/core/test_tracking.py as the reference), so a replay's particles are bit-identical: no fastmath, and
    ``math.cos``/``math.sin`` are the C library's, as numpy's are for float64 on this machine (the test checks).
    """
    n = p.shape[0]
    for i in range(n):
        forward = fwd * p[i, 3]
        forward = forward + math.sqrt(forward * distance_noise * (forward * distance_noise) + walk2) * z[i]
        lateral = z[n + i] * lateral_std + lat
        turn = dyaw - p[i, 4] * dt  # each particle's own yaw-rate bias
        mid = p[i, 2] + 0.5 * turn  # heading at mid-step for the translation
        cos_mid, sin_mid = math.cos(mid), math.sin(mid)
        p[i, 0] = p[i, 0] + (cos_mid * forward - sin_mid * lateral)
        p[i, 1] = p[i, 1] + (sin_mid * forward + cos_mid * lateral)
        p[i, 2] = p[i, 2] + (turn + math.sqrt(turn * yaw_noise * (turn * yaw_noise) + yaw_walk2) * z[2 * n + i])
        if walked:
            p[i, 3] = p[i, 3] + scale_step * z[3 * n + i]
            p[i, 4] = p[i, 4] + bias_step * z[4 * n + i]


@njit(cache=True, nogil=True)
def _neighbour_exponents(px, py, bx, by, h, w, neg_scale):
    """For the 16 grid neighbours (dy, dx in -1..2, dy outer) of each particle's cell: the kernel's exponent
    ``-scale * ((cx - px)^2 + (cy - py)^2)``, the neighbour's cell clipped to (0, 0) off the grid, and whether it is on
    the grid; the operations of the numpy expressions of :meth:`ParticleFilter._interpolate` in their order."""
    n = px.shape[0]
    arg = np.empty((16, n))
    cyc = np.empty((16, n), np.int64)
    cxc = np.empty((16, n), np.int64)
    ok = np.empty((16, n), np.bool_)
    j = 0
    for dy in range(-1, 3):
        for dx in range(-1, 3):
            for i in range(n):
                cy = by[i] + dy
                cx = bx[i] + dx
                inside = cx >= 0 and cx < w and cy >= 0 and cy < h
                ex = float(cx) - px[i]
                ey = float(cy) - py[i]
                arg[j, i] = neg_scale * (ex * ex + ey * ey)
                cyc[j, i] = cy if inside else 0
                cxc[j, i] = cx if inside else 0
                ok[j, i] = inside
            j += 1
    return arg, cyc, cxc, ok


@njit(cache=True, nogil=True)
def _neighbour_sums(e, cyc, cxc, ok, mask, grid, rows):
    """Kernel-weighted sums of the neighbours' scores (num) and of the weights (den), the neighbours added in the
    order of :func:`_neighbour_exponents`: weight = exp * on-table mask * on-grid, as the numpy code had it."""
    n = e.shape[1]
    num = np.zeros(n)
    den = np.zeros(n)
    for j in range(16):
        for i in range(n):
            y, x = cyc[j, i], cxc[j, i]
            wgt = e[j, i] * mask[y, x] * (1.0 if ok[j, i] else 0.0)
            num[i] = num[i] + wgt * grid[rows[i], y, x]
            den[i] = den[i] + wgt
    return num, den


def warm_up() -> None:
    """Load (or, without a cache, compile) the compiled kernels of the filter: their first calls would otherwise
    stall a live node's first odometry message and first frame (see :meth:`geoloc_node.pipeline.Pipeline.warm_up`)."""
    _predict_kernel(np.zeros((1, 5)), np.zeros(5), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, True, 0.0, 0.0)
    one, zero = np.ones(1), np.zeros(1, np.int64)
    arg, cyc, cxc, ok = _neighbour_exponents(one, one, zero, zero, 4, 4, -0.5)
    _neighbour_sums(np.exp(arg), cyc, cxc, ok, np.ones((4, 4)), np.ones((1, 4, 4)), zero)


class _NormalBlock:
    """Standard normals drawn ``size`` at a time from one generator and handed out in order (deterministic)."""

    def __init__(self, rng: np.random.Generator, size: int = 1 << 16):
        self.rng = rng
        self.size = size
        self.block = np.empty(0)
        self.pos = 0

    def take(self, count: int) -> np.ndarray:
        if self.pos + count > self.block.size:
            self.block = self.rng.standard_normal(max(count, self.size))
            self.pos = 0
        self.pos += count
        return self.block[self.pos - count:self.pos]
