import numpy as np
import pytest

from geoloc_node.estimate import EstimateConfig, estimate_location, paper_top5_mean
from geoloc_node.search import Matches


def matches(points, distances):
    points = np.asarray(points, dtype=np.float64)
    return Matches(indices=np.arange(len(points)), distances=np.asarray(distances, np.int32), en=points)


def test_outlier_is_dropped_where_the_paper_mean_is_dragged():
    m = matches([[0, 0], [10, 0], [0, 10], [10, 10], [900, -700]], [40, 42, 43, 44, 45])
    est = estimate_location(m, stride_m=10)
    assert est.n_inliers == 4 and est.inlier_weight < 1.0
    assert np.hypot(est.east - 5, est.north - 5) < 5
    pe, pn = paper_top5_mean(m)
    assert np.hypot(pe - 5, pn - 5) > 100  # the plain average moves by more than 100 m


def test_hamming_weights_pull_towards_the_best_match():
    m = matches([[0, 0], [20, 0]], [30, 50])
    est = estimate_location(m, stride_m=10, config=EstimateConfig(cluster_radius_m=30))
    assert est.east < 1.0  # 20 bits worse weighs e^-5 as much


def test_covariance_grows_when_candidates_disagree():
    agree = estimate_location(matches([[0, 0], [5, 0], [0, 5], [5, 5], [2, 2]], [40] * 5), stride_m=10)
    split = estimate_location(matches([[0, 0], [5, 0], [400, 0], [400, 5], [0, 400]], [40] * 5), stride_m=10)
    assert np.trace(split.cov) > 10 * np.trace(agree.cov)
    for est in (agree, split):
        assert est.cov.shape == (2, 2) and np.allclose(est.cov, est.cov.T)
        assert np.all(np.linalg.eigvalsh(est.cov) > 0)
    # the floor: even a unanimous answer is never more certain than the match error and tile quantisation
    assert agree.sigma_m >= 5.0


def test_empty_matches_are_refused():
    with pytest.raises(ValueError, match="no matches"):
        estimate_location(matches(np.zeros((0, 2)), []), stride_m=10)
    with pytest.raises(ValueError, match="no matches"):
        paper_top5_mean(matches(np.zeros((0, 2)), []))
