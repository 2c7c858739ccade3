"""Ground truth at an estimate's stamp (geoloc_node.report): interpolated between samples, never across a jump."""

from __future__ import annotations

import pytest

from geoloc_node.replay import Position
from geoloc_node.report import TRUTH_JUMP_MPS, _Truth


def sample(t, e, n=0.0):
    return Position(t, e, n)


def test_between_samples_the_truth_is_interpolated():
    truth = _Truth([sample(0.0, 0.0), sample(0.2, 2.0)])
    assert truth.at(0.1) == pytest.approx((1.0, 0.0))
    assert truth.at(0.2) == pytest.approx((2.0, 0.0))


def test_across_a_jump_no_vehicle_drives_the_truth_is_unknown():
    """A teleported vehicle: 500 m between two samples 0.2 s apart. Half-way in time it was at one end or the other,
    never half-way in space: an estimate stamped there is not scored; at the samples themselves it is."""
    truth = _Truth([sample(0.0, 0.0), sample(0.2, 2.0), sample(0.4, 502.0), sample(0.6, 504.0)])
    assert truth.at(0.3) is None
    assert truth.at(0.4) == pytest.approx((502.0, 0.0)) and truth.at(0.5) == pytest.approx((503.0, 0.0))
    fast = _Truth([sample(0.0, 0.0), sample(1.0, 0.9 * TRUTH_JUMP_MPS)])  # fast, but a vehicle could drive it
    assert fast.at(0.5) == pytest.approx((0.45 * TRUTH_JUMP_MPS, 0.0))
