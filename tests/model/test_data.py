"""Training data from the synthetic worlds: distinct test places, aerial views re-cut with jitter on the fly."""

import numpy as np
import pytest

pytest.importorskip("torch")

from geoloc_node.model.data import JitteredAerial, sample_road_poses, synth_pairs  # noqa: E402
from geoloc_node.model.net import ModelConfig  # noqa: E402
from geoloc_node.synth.world import WorldConfig, make_world  # noqa: E402

WORLD = WorldConfig(size_m=300.0, resolution_m=0.5, seed=7, block_m=90.0)


@pytest.fixture(scope="module")
def world():
    return make_world(WORLD)


def test_distinct_places_keep_their_distance(world):
    poses = sample_road_poses(world, 40, np.random.default_rng(0), min_separation_m=15.0)
    d = np.linalg.norm(poses[:, None, :2] - poses[None, :, :2], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert len(poses) == 40 and d.min() >= 15.0
    dense = sample_road_poses(world, 40, np.random.default_rng(0))
    dd = np.linalg.norm(dense[:, None, :2] - dense[None, :, :2], axis=-1)
    np.fill_diagonal(dd, np.inf)
    assert dd.min() < 15.0  # without the constraint, places crowd
    with pytest.raises(ValueError, match="roads hold only"):
        sample_road_poses(world, 2000, np.random.default_rng(0), min_separation_m=25.0)


@pytest.mark.parametrize("mode", ["panorama", "pinhole"])
def test_jittered_aerial_matches_the_runtime_view_and_moves(world, mode):
    cfg = ModelConfig(backbone="vit_micro", bits=64, ground_hw=(16, 64), aerial_hw=(16, 64),
                      aerial_preprocess="projective", mode=mode, hfov_deg=90.0 if mode == "pinhole" else None)
    pairs = synth_pairs(WORLD.seed, 6, cfg, world_size_m=WORLD.size_m, world=world)
    idx = np.arange(6)
    still = JitteredAerial(pairs, cfg, jitter_m=0.0, worlds={WORLD.seed: world})
    assert np.array_equal(still(idx, np.random.default_rng(1)), pairs.aerial)  # no jitter: the cached views
    moved = JitteredAerial(pairs, cfg, jitter_m=5.0, heading_jitter_deg=10.0, worlds={WORLD.seed: world})
    a, b = moved(idx, np.random.default_rng(1)), moved(idx, np.random.default_rng(2))
    assert a.shape == pairs.aerial.shape and not np.array_equal(a, pairs.aerial) and not np.array_equal(a, b)


def test_worlds_rendered_in_parallel_equal_the_serial_ones_and_are_cached(tmp_path):
    from geoloc_node.model.data import synth_pairs_cached

    cfg = ModelConfig(backbone="vit_micro", bits=64, ground_hw=(16, 64), aerial_hw=(16, 64))
    kw = dict(world_size_m=300.0, progress=False)
    serial = synth_pairs_cached([3, 4], 5, cfg, tmp_path / "serial", workers=1, **kw)
    parallel = synth_pairs_cached([3, 4], 5, cfg, tmp_path / "parallel", workers=2, **kw)
    for name in ("ground", "aerial", "en", "group", "heading"):
        assert np.array_equal(getattr(serial, name), getattr(parallel, name)), name
    assert list(parallel.group) == [3] * 5 + [4] * 5  # in the order of the seeds asked for
    cached = sorted((tmp_path / "parallel").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = synth_pairs_cached([3, 4], 5, cfg, tmp_path / "parallel", workers=2, **kw)
    assert [p.stat().st_mtime_ns for p in cached] == stamps and len(cached) == 2  # read, not rendered again
    assert np.array_equal(again.ground, parallel.ground)
