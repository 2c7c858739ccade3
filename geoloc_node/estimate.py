"""A position from the top-k matches of one frame: the paper's step, improved.

The paper (Ren et al. 2023) averages the geo-tags of the top-5 aerial tiles. Two things go wrong with a plain mean:
one far-away false match drags it by hundreds of metres, and it says nothing about how much to trust it. Here:

1. each candidate gets a weight from its Hamming distance (softmax with a temperature in bits), so a near-perfect
   match counts more than a marginal one;
2. a density cluster: the candidate with the most weighted neighbours within ``cluster_radius_m`` seeds the dominant
   cluster, and candidates farther than that from the seed are dropped as geographic outliers;
3. the weighted mean of the survivors, in metres on the local plane (never averaging degrees);
4. a 2x2 covariance that is honest: a floor for the tile quantisation and the model's own error, plus the spread of
   the survivors, plus the spread of everything weighted by the share of weight that was dropped: when candidates
   disagree, the covariance grows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .search import Matches


@dataclass(frozen=True)
class EstimateConfig:
    """Knobs of the single-frame estimate. Defaults suit 256-bit codes and tiles every 10 m."""

    #: softmax temperature in bits: a candidate ``temperature_bits`` farther than the best weighs e times less
    temperature_bits: float = 4.0
    #: candidates within this distance of the cluster seed are inliers (about 2-3 tile strides)
    cluster_radius_m: float = 30.0
    #: 1-sigma error of a correct match, metres (the model localises to about a tile; measured in eval)
    match_sigma_m: float = 5.0


@dataclass(frozen=True)
class LocationEstimate:
    """A single-frame position in the table's local frame."""

    east: float
    north: float
    cov: np.ndarray  # 2x2, m^2, (east, north)
    n_candidates: int
    n_inliers: int
    inlier_weight: float  # share of the total weight that the dominant cluster holds, in [0, 1]
    best_distance: int  # Hamming distance of the best candidate

    @property
    def sigma_m(self) -> float:
        """Radius of a circle with the same area as the 1-sigma ellipse."""
        return float(np.sqrt(np.sqrt(max(np.linalg.det(self.cov), 0.0))))


def paper_top5_mean(matches: Matches, k: int = 5) -> tuple[float, float]:
    """The paper's estimate: the plain mean position of the top-k tiles. The baseline that the demo reports."""
    _require(matches)
    en = matches.en[:k]
    return float(en[:, 0].mean()), float(en[:, 1].mean())


def estimate_location(matches: Matches, stride_m: float, config: EstimateConfig = EstimateConfig()) -> LocationEstimate:
    """Robust weighted position and covariance from the top-k matches (best first)."""
    _require(matches)
    en = np.asarray(matches.en, dtype=np.float64)
    dist = np.asarray(matches.distances, dtype=np.float64)
    w = np.exp(-(dist - dist.min()) / config.temperature_bits)
    w /= w.sum()

    # Dominant cluster: seed = candidate with the largest weighted density of neighbours.
    pair_d2 = ((en[:, None, :] - en[None, :, :]) ** 2).sum(axis=-1)
    near = pair_d2 <= config.cluster_radius_m ** 2
    seed = int(np.argmax(near @ w))
    inliers = near[seed]
    w_in = w * inliers
    inlier_weight = float(w_in.sum())
    mean = (w_in[:, None] * en).sum(axis=0) / inlier_weight

    floor = (config.match_sigma_m ** 2 + stride_m ** 2 / 12.0) * np.eye(2)
    spread_in = _weighted_cov(en, w_in / inlier_weight, mean)
    spread_all = _weighted_cov(en, w, mean)
    cov = floor + spread_in + (1.0 - inlier_weight) * spread_all
    return LocationEstimate(east=float(mean[0]), north=float(mean[1]), cov=cov, n_candidates=len(en),
                            n_inliers=int(inliers.sum()), inlier_weight=inlier_weight,
                            best_distance=int(dist.min()))


def _weighted_cov(points: np.ndarray, weights: np.ndarray, mean: np.ndarray) -> np.ndarray:
    d = points - mean
    return (weights[:, None, None] * (d[:, :, None] * d[:, None, :])).sum(axis=0)


def _require(matches: Matches) -> None:
    if len(matches) == 0:
        raise ValueError("no matches to estimate a position from (empty window or empty result)")
