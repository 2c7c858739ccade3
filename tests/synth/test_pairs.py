import csv

import numpy as np
import pytest
from scipy.spatial import cKDTree

from geoloc_node.synth.pairs import CvusaPairs, PairsConfig, PairsError, export_pairs, geographic_split


@pytest.fixture(scope="module")
def pairs_root(small_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs") / "cvusa_synth"
    summary = export_pairs(small_world, root, PairsConfig(count=60, seed=1, tile_size_m=40.0, tile_px=64,
                                                          min_val_distance_m=30.0, val_fraction=0.3))
    return root, summary


def test_export_writes_the_cvusa_layout(pairs_root):
    root, summary = pairs_root
    assert (root / "splits" / "train-19zl.csv").is_file() and (root / "splits" / "val-19zl.csv").is_file()
    with open(root / "splits" / "train-19zl.csv") as stream:
        first = next(csv.reader(stream))
    assert first[0].startswith("bingmap/19/") and first[1].startswith("streetview/panos/")
    assert summary["train"] > 0 and summary["val"] > 0
    assert summary["train"] + summary["val"] + summary["dropped_near_val"] == 60


def test_loader_reads_pairs_with_locations(pairs_root, small_world):
    root, summary = pairs_root
    train, val = CvusaPairs(root, "train"), CvusaPairs(root, "val")
    assert (len(train), len(val)) == (summary["train"], summary["val"])
    aerial, ground, record = train[0]
    assert aerial.shape == (64, 64, 3) and ground.shape == (128, 512, 3) and aerial.dtype == np.uint8
    east, north = small_world.frame.to_en(record.lat, record.lon)
    assert abs(east) < 150 and abs(north) < 150


def test_no_val_location_near_a_train_location(pairs_root, small_world):
    root, _ = pairs_root

    def positions(split):
        return np.array([small_world.frame.to_en(r.lat, r.lon) for r in CvusaPairs(root, split).records])
    distance, _ = cKDTree(positions("train")).query(positions("val"), k=1)
    assert distance.min() >= 30.0


def test_geographic_split_property():
    rng = np.random.default_rng(0)
    points = rng.uniform(-500, 500, (2000, 2))
    split = geographic_split(points, rng, 0.2, 50.0)
    val, train = points[split == "val"], points[split == "train"]
    assert len(val) > 100 and len(train) > 800
    assert cKDTree(train).query(val, k=1)[0].min() >= 50.0


def test_loader_and_export_refuse_bad_input(pairs_root, small_world, tmp_path):
    root, _ = pairs_root
    with pytest.raises(PairsError, match="already exists"):
        export_pairs(small_world, root, PairsConfig(count=2))
    with pytest.raises(PairsError, match="count"):
        export_pairs(small_world, tmp_path / "x", PairsConfig(count=0))
    with pytest.raises(PairsError, match="train-19zl.csv"):
        CvusaPairs(tmp_path, "train")
    assert not (tmp_path / "x").exists()
