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


def test_u1652_validation_cells_come_from_the_training_rows(tmp_path):
    """``val_cells``: a recipe is chosen on held-out training cells; the test rows stay unseen, the splits disjoint."""
    import cv2

    from geoloc_node.model import data

    pitch_x = 3136 / data.U1652_COLS
    for name in ("sample_drone.jpg", "sample_satellite.jpg"):  # each cell's grey level tells its index
        im = np.full((3950, 3136, 3), 255, np.uint8)
        for i in range(data.U1652_ROWS * data.U1652_COLS):
            r, c = divmod(i, data.U1652_COLS)
            y, x = int(round(r * data.U1652_PITCH_Y)), int(round(c * pitch_x))
            im[y:y + data.U1652_VIEW, x:x + data.U1652_VIEW] = i // 2
        cv2.imwrite(str(tmp_path / name), im)
    cfg = ModelConfig(ground_hw=(16, 16), aerial_hw=(16, 16), aerial_preprocess="raw")

    def cells(split, val_cells):
        p = data.u1652_pairs(split, cfg, tmp_path, val_cells=val_cells)
        return np.round(p.ground.reshape(len(p.ground), -1).mean(1))

    assert len(cells("train", 0)) == 400 and cells("test", 0).min() >= 199  # rows 20-24: cells 400-499
    train, val = cells("train", 80), cells("val", 80)
    assert len(train) == 320 and len(val) == 80
    assert train.max() <= 160 and 159 <= val.min() and val.max() <= 200  # cells 320-399, never the test rows
    with pytest.raises(ValueError):
        data.u1652_pairs("train", cfg, tmp_path, val_cells=400)
