"""The public-dataset adapters on tiny copies of each published layout, built here from synthetic images.

Every image is one flat colour that names its pair (a ground view and its positive aerial image share the colour),
so a wrong pairing, a wrong split, an off-by-one in CVACT's 1-based indices or a missed north roll shows in pixels.
"""

import csv

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
scipy_io = pytest.importorskip("scipy.io")

from geoloc_node.model import datasets as ds  # noqa: E402

WHITE = (255, 255, 255)


def colour(i: int) -> tuple[int, int, int]:
    """A distinct, JPEG-safe flat colour per pair (RGB)."""
    return (30 + (37 * i) % 180, 30 + (91 * i) % 180, 30 + (53 * i) % 180)


def write(path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


def flat(h: int, w: int, rgb) -> np.ndarray:
    return np.full((h, w, 3), rgb, np.uint8)


def panorama(h: int, w: int, rgb, full_sphere: bool = False) -> np.ndarray:
    """A north-in-the-centre panorama: a white band on the centre columns (north). A full 2:1 panorama also gets red
    sky and blue ground outside +-45 degrees of elevation, which the loader must cut away."""
    im = flat(h, w, rgb)
    im[:, w // 2 - w // 32:w // 2 + w // 32] = WHITE
    if full_sphere:
        im[:h // 4] = (255, 0, 0)
        im[h - h // 4:] = (0, 0, 255)
    return im


def model_cfg():
    from geoloc_node.model.net import ModelConfig

    return ModelConfig(backbone="vit_micro", bits=64, ground_hw=(16, 64), aerial_hw=(16, 16), aerial_preprocess="raw")


def assert_pixels_pair_up(arrays, colours):
    """Each loaded ground view (outside its north band) and aerial view carry the colour of pair i."""
    for i, c in enumerate(colours):
        g = arrays.ground[i][:, 16:48].reshape(-1, 3).mean(0)  # away from north (columns 0 and 63 after the roll)
        a = arrays.aerial[i].reshape(-1, 3).mean(0)
        assert np.abs(g - c).max() < 8 and np.abs(a - c).max() < 8, (i, g, a, c)


def assert_north_at_column_zero(arrays):
    g = arrays.ground.astype(int)
    assert (g[:, :, [0, -1]] > 230).all()  # north band rolled from the centre to the left edge (wrapping)
    assert (g[:, :, 30:34] < 230).any(axis=-1).all()  # and no longer in the centre


# -- CVUSA --------------------------------------------------------------------------------------------------------
@pytest.fixture
def cvusa_root(tmp_path):
    root = tmp_path / "CVUSA"
    rows = {"train": [], "val": []}
    for i in range(5):
        name = f"{i + 1:07d}"
        write(root / "bingmap" / "19" / f"{name}.jpg", flat(40, 40, colour(i)))
        write(root / "streetview" / "panos" / f"{name}.jpg", panorama(22, 128, colour(i)))  # CVUSA's 224 x 1232
        rows["val" if i >= 3 else "train"].append(
            [f"bingmap/19/{name}.jpg", f"streetview/panos/{name}.jpg", f"annotations/{name}.png"])
    (root / "splits").mkdir()
    for split, name in ds.CVUSA_SPLIT_FILES.items():
        with open(root / "splits" / name, "w", newline="") as f:
            csv.writer(f).writerows(rows[split])
    return root


def test_cvusa_reads_the_published_split_files(cvusa_root):
    train, val = ds.cvusa(cvusa_root, "train"), ds.cvusa(cvusa_root, "val")
    assert [p.ground.name for p in train.pairs] == ["0000001.jpg", "0000002.jpg", "0000003.jpg"]
    assert [p.ground.name for p in val.pairs] == ["0000004.jpg", "0000005.jpg"]
    for p in train.pairs + val.pairs:  # aerial is the first column, ground the second
        assert p.aerial.parent == cvusa_root / "bingmap" / "19" and p.ground.parent.name == "panos"
        assert p.aerial.stem == p.ground.stem and p.position is None and p.pano_col0_azimuth_deg == 180.0
    assert {p.split for p in train.pairs} == {"train"} and {p.split for p in val.pairs} == {"val"}


def test_cvusa_arrays_pair_up_and_put_north_at_column_zero(cvusa_root):
    from geoloc_node.model.data import cvusa_pairs

    arrays = cvusa_pairs(cvusa_root, "train", model_cfg())
    assert len(arrays) == 3 and arrays.en is None and len(set(arrays.place)) == 3
    assert_pixels_pair_up(arrays, [colour(i) for i in range(3)])
    assert_north_at_column_zero(arrays)
    assert len(cvusa_pairs(cvusa_root, "test", model_cfg())) == 2  # 'test' reads the val split, as before


def test_cvusa_missing_split_file_and_images(cvusa_root):
    (cvusa_root / "splits" / "val-19zl.csv").unlink()
    with pytest.raises(ds.DatasetError, match=r"splits/val-19zl.csv not found"):
        ds.cvusa(cvusa_root, "val")
    (cvusa_root / "streetview" / "panos" / "0000002.jpg").unlink()
    train = ds.cvusa(cvusa_root, "train")
    assert len(train) == 2 and len(train.skipped) == 1 and "0000002.jpg" in train.skipped[0]


# -- CVACT --------------------------------------------------------------------------------------------------------
CVACT_IDS = ["-_eKQW3kN9Ov5LmUGBk1dw", "0Bc2ZpX8rEHq7Vq8zXOBvA", "1KvHRKNv7JTmfj2tBPTEyg", "2ytWwE3BlOC5nVfYTdCU1w",
             "3f6qGmCTrJ2BdkVa4M4Hbg", "4Q9pDDJmJvF8uXS13YMrjw", "5ZvyPZ3lE1M9J8xbMhmMPQ"]
CVACT_TRAIN, CVACT_VAL, CVACT_TEST = [2, 5, 7, 1], [3, 6], [3, 4, 6]  # 1-based, as MATLAB writes them


def utm(i: int) -> tuple[float, float]:
    return 690000.0 + 100.0 * i, 6090000.0 + 7.0 * i


@pytest.fixture
def cvact_root(tmp_path):
    root = tmp_path / "CVACT"
    root.mkdir()
    for i, key in enumerate(CVACT_IDS):
        write(root / "streetview" / f"{key}_grdView.jpg", panorama(64, 128, colour(i), full_sphere=True))
        write(root / "satview_polish" / f"{key}_satView_polish.jpg", flat(48, 48, colour(i)))
    column = lambda idx: np.asarray(idx, np.float64)[:, None]  # noqa: E731 - MATLAB stores doubles, N x 1
    scipy_io.savemat(root / "ACT_data.mat", {
        "panoIds": np.array(CVACT_IDS), "utm": np.array([utm(i) for i in range(len(CVACT_IDS))]),
        "trainSet": {"trainInd": column(CVACT_TRAIN)}, "valSet": {"valInd": column(CVACT_VAL)},
        "valSetAll": {"valInd": column(CVACT_TEST)}})
    return root


@pytest.mark.parametrize("split, indices", [("train", CVACT_TRAIN), ("val", CVACT_VAL), ("test", CVACT_TEST)])
def test_cvact_splits_follow_the_mat_file(cvact_root, split, indices):
    vs = ds.cvact(cvact_root, split)
    assert [p.place for p in vs.pairs] == [CVACT_IDS[k - 1] for k in indices]  # 1-based indices into panoIds
    for p, k in zip(vs.pairs, indices):
        assert p.ground == cvact_root / "streetview" / f"{CVACT_IDS[k - 1]}_grdView.jpg"
        assert p.aerial == cvact_root / "satview_polish" / f"{CVACT_IDS[k - 1]}_satView_polish.jpg"
        assert p.position == utm(k - 1) and p.split == split and p.frame == "CVACT UTM"


def test_cvact_arrays_carry_utm_positions_and_only_the_horizon_band(cvact_root):
    from geoloc_node.model.data import view_set_pairs

    arrays = view_set_pairs(ds.load_view_set("cvact", cvact_root, "train"), model_cfg(), workers=2)
    assert np.array_equal(arrays.en, np.array([utm(k - 1) for k in CVACT_TRAIN]))
    assert set(arrays.group) == {0}
    assert_pixels_pair_up(arrays, [colour(k - 1) for k in CVACT_TRAIN])
    assert_north_at_column_zero(arrays)
    g = arrays.ground.astype(int)
    red = (g[..., 0] > 200) & (g[..., 2] < 60)
    blue = (g[..., 2] > 200) & (g[..., 0] < 60)
    assert not red.any() and not blue.any()  # the rows beyond +-45 degrees of elevation were cut away


def test_cvact_images_under_anu_data_small_and_missing_files(cvact_root):
    (cvact_root / "ANU_data_small").mkdir()
    for d in ("streetview", "satview_polish"):
        (cvact_root / d).rename(cvact_root / "ANU_data_small" / d)
    (cvact_root / "ANU_data_small" / "streetview" / f"{CVACT_IDS[4]}_grdView.jpg").unlink()  # index 5: in train
    vs = ds.cvact(cvact_root, "train")
    assert [p.place for p in vs.pairs] == [CVACT_IDS[1], CVACT_IDS[6], CVACT_IDS[0]]
    assert len(vs.skipped) == 1 and CVACT_IDS[4] in vs.skipped[0]
    (cvact_root / "ACT_data.mat").unlink()
    with pytest.raises(ds.DatasetError, match="ACT_data.mat not found"):
        ds.cvact(cvact_root, "train")


# -- VIGOR --------------------------------------------------------------------------------------------------------
SAT_STEP = 0.0004  # degrees between satellite centres (the real ones overlap by half, about 36 m apart)
UNIT = 320.0 / SAT_STEP  # satellite pixels per degree in these fixtures (the delta's unit)


def city_origin(c: int) -> tuple[float, float]:
    return 40.0 + c, -80.0 + c


def build_vigor(root):
    """Per city: a 3 x 3 grid of satellite images and four panoramas, two sharing one satellite image; labels in
    all three published label files (each panorama goes to same-area train or test by its index)."""
    truth = {}
    for c, city in enumerate(ds.VIGOR_CITIES):
        lat0, lon0 = city_origin(c)
        sats = {(r, k): f"satellite_{lat0 + r * SAT_STEP:.6f}_{lon0 + k * SAT_STEP:.6f}.png"
                for r in range(3) for k in range(3)}
        for (r, k), name in sats.items():
            write(root / city / "satellite" / name, flat(32, 32, colour(10 * c + 3 * r + k)))
        labels = root / "splits" / city
        labels.mkdir(parents=True)
        (labels / "satellite_list.txt").write_text("".join(f"{n}\n" for n in sats.values()))
        # (grid cell of the positive, offset in degrees lat/lon from its centre): the first two share cell (1, 1)
        panos = [((1, 1), (-0.0001, 0.00005)), ((1, 1), (0.00005, -0.0001)), ((0, 1), (0.0, 0.0)),
                 ((2, 0), (0.0001, 0.0001))]
        lines = []
        for j, ((r, k), (dlat, dlon)) in enumerate(panos):
            lat, lon = lat0 + r * SAT_STEP + dlat, lon0 + k * SAT_STEP + dlon
            name = f"pano{c}{j}xyz,{lat:.6f},{lon:.6f},.jpg"
            write(root / city / "panorama" / name, panorama(64, 128, colour(10 * c + 3 * r + k), full_sphere=True))
            others = sorted((q for q in sats if q != (r, k)), key=lambda q: abs(q[0] - r) + abs(q[1] - k))[:3]
            fields = [name]
            for q in [(r, k), *others]:  # delta = satellite centre - camera, in satellite pixels
                slat, slon = lat0 + q[0] * SAT_STEP, lon0 + q[1] * SAT_STEP
                fields += [sats[q], f"{(slat - lat) * UNIT:.4f}", f"{(slon - lon) * UNIT:.4f}"]
            lines.append(" ".join(fields))
            truth[name] = {"city": city, "positive": sats[(r, k)], "semi": [sats[q] for q in others],
                           "latlon": (lat, lon), "split": "train" if j % 2 == 0 else "test",
                           "colour": colour(10 * c + 3 * r + k)}
        (labels / "pano_label_balanced.txt").write_text("\n".join(lines) + "\n")
        (labels / "same_area_balanced_train.txt").write_text("\n".join(lines[0::2]) + "\n")
        (labels / "same_area_balanced_test.txt").write_text("\n".join(lines[1::2]) + "\n")
    return truth


@pytest.fixture
def vigor_root(tmp_path):
    root = tmp_path / "VIGOR"
    return root, build_vigor(root)


@pytest.mark.parametrize("area, split, cities", [
    ("same", "train", ds.VIGOR_CITIES), ("same", "test", ds.VIGOR_CITIES),
    ("cross", "train", ("NewYork", "Seattle")), ("cross", "test", ("SanFrancisco", "Chicago"))])
def test_vigor_splits_positives_and_semi_positives(vigor_root, area, split, cities):
    root, truth = vigor_root
    vs = ds.vigor(root, split, area=area)
    expect = [n for n, t in truth.items() if t["city"] in cities and (area == "cross" or t["split"] == split)]
    assert sorted(p.ground.name for p in vs.pairs) == sorted(expect)
    for p in vs.pairs:
        t = truth[p.ground.name]
        assert p.ground.parent == root / t["city"] / "panorama"
        assert p.aerial == root / t["city"] / "satellite" / t["positive"]
        assert [s.name for s in p.semi_positives] == t["semi"] and p.place == f"{t['city']}/{t['positive']}"
        assert p.latlon == pytest.approx(t["latlon"]) and p.frame == f"VIGOR {t['city']} ENU"
    if split == "test":  # the gallery holds every satellite image; those no panorama is paired with are extra
        assert len(vs.gallery_extra) == 9 * len(cities) - len({p.aerial for p in vs.pairs})


def test_vigor_offsets_and_positions_follow_the_geometry(vigor_root):
    root, truth = vigor_root
    by_name = {p.ground.name: p for p in ds.vigor(root, "train", area="cross").pairs}
    south_east = next(p for n, p in by_name.items() if n.startswith("pano10"))  # NewYork's first
    row, col = south_east.camera_offset_px  # 0.0001 deg south and 0.00005 deg east of its satellite's centre
    assert row == pytest.approx(0.0001 * UNIT, rel=1e-3) and col == pytest.approx(0.00005 * UNIT, rel=1e-3)
    centred = [p for p in by_name.values() if p.ground.name.startswith("pano12")][0]
    assert centred.camera_offset_px == pytest.approx((0.0, 0.0), abs=1e-6)
    # two panoramas of one city: their east/north difference is the metric one of their latitude/longitude
    a, b = by_name[south_east.ground.name], centred
    d_north = (a.latlon[0] - b.latlon[0]) * 111_000
    d_east = (a.latlon[1] - b.latlon[1]) * 111_000 * np.cos(np.radians(a.latlon[0]))
    assert a.position[1] - b.position[1] == pytest.approx(d_north, rel=0.01)
    assert a.position[0] - b.position[0] == pytest.approx(d_east, rel=0.01)


def test_vigor_arrays_mark_shared_and_semi_positive_aerial_images(vigor_root):
    from geoloc_node.model.data import view_set_pairs
    from geoloc_node.model.train import TrainConfig, pair_mask

    root, truth = vigor_root
    vs = ds.vigor(root, "train", area="cross")
    arrays = view_set_pairs(vs, model_cfg(), workers=2)
    names = [p.ground.name for p in vs.pairs]
    assert_pixels_pair_up(arrays, [truth[n]["colour"] for n in names])
    assert_north_at_column_zero(arrays)
    assert len(set(arrays.group)) == 2  # one position frame per city
    shared = [i for i, n in enumerate(names) if n.startswith(("pano10", "pano11"))]
    assert arrays.place[shared[0]] == arrays.place[shared[1]]  # one satellite image, one place
    mask = pair_mask(arrays, np.arange(len(arrays)), TrainConfig(same_place_m=0.0), "cpu").numpy()
    assert mask[shared[0], shared[1]] and mask[shared[1], shared[0]]
    for i, n in enumerate(names):
        semi_places = {arrays.place[j] for j, m in enumerate(names) if truth[m]["positive"] in truth[n]["semi"]
                       and truth[m]["city"] == truth[n]["city"]}
        assert {arrays.place[j] for j in np.nonzero(mask[i])[0]} == {arrays.place[i]} | semi_places


def test_vigor_missing_label_file(vigor_root):
    root, _ = vigor_root
    (root / "splits" / "Chicago" / "same_area_balanced_test.txt").unlink()
    with pytest.raises(ds.DatasetError, match=r"splits/Chicago/same_area_balanced_test.txt not found"):
        ds.vigor(root, "test")
    assert len(ds.vigor(root, "train", area="cross")) == 8  # the other files still serve


# -- University-1652 ------------------------------------------------------------------------------------------------
U_TRAIN, U_TEST, U_DISTRACT = ["0001", "0002", "0005"], ["0003", "0004"], ["0101", "0102"]


def build_university(root):
    for k, c in enumerate(U_TRAIN):
        write(root / "train" / "satellite" / c / f"{c}.jpg", flat(32, 32, colour(k)))
        for j in range(6):
            write(root / "train" / "drone" / c / f"image-{j + 1:02d}.jpeg", flat(24, 24, colour(k)))
        for j in range(2):
            write(root / "train" / "street" / c / f"s{j}.jpg", flat(24, 24, colour(k)))
    for k, c in enumerate(U_TEST + U_DISTRACT):
        sat = flat(32, 32, colour(10 + k))
        write(root / "test" / "gallery_satellite" / c / f"{c}.jpg", sat)
        if c in U_TEST:
            write(root / "test" / "query_satellite" / c / f"{c}.jpg", sat)
            for j in range(4):
                write(root / "test" / "query_drone" / c / f"image-{j + 1:02d}.jpeg", flat(24, 24, colour(10 + k)))
                write(root / "test" / "gallery_drone" / c / f"image-{j + 1:02d}.jpeg", flat(24, 24, colour(10 + k)))
            write(root / "test" / "query_street" / c / "q.jpg", flat(24, 24, colour(10 + k)))
            write(root / "test" / "gallery_street" / c / "g.jpg", flat(24, 24, colour(10 + k)))


@pytest.fixture
def u1652_root(tmp_path):
    root = tmp_path / "University-Release"
    build_university(root)
    return root


def test_university1652_train_and_test_pairs(u1652_root):
    train = ds.university1652(u1652_root, "train")
    assert len(train) == 6 * len(U_TRAIN) and {p.place for p in train.pairs} == set(U_TRAIN)
    for p in train.pairs:
        assert p.ground.parent.name == p.place == p.aerial.parent.name and p.aerial.name == f"{p.place}.jpg"
        assert p.ground.parts[-3:-1] == ("drone", p.place) and p.pano_col0_azimuth_deg is None
    test = ds.university1652(u1652_root, "test")
    assert len(test) == 4 * len(U_TEST) and {p.place for p in test.pairs} == set(U_TEST)
    assert all(p.aerial.parts[-3] == "gallery_satellite" and p.ground.parts[-3] == "query_drone" for p in test.pairs)
    assert sorted(e.parent.name for e in test.gallery_extra) == U_DISTRACT  # distractors: no query
    street = ds.university1652(u1652_root, "train", view="street")
    assert len(street) == 2 * len(U_TRAIN) and all(p.ground.parts[-3] == "street" for p in street.pairs)


def test_university1652_arrays_share_places_and_thin_out_evenly(u1652_root):
    from geoloc_node.model.data import view_set_pairs

    train = ds.load_view_set("university1652", u1652_root, "train")
    arrays = view_set_pairs(train, model_cfg(), workers=2)
    assert len(arrays) == 18 and len(set(arrays.place)) == 3 and arrays.en is None
    for i, p in enumerate(train.pairs):
        c = colour(U_TRAIN.index(p.place))
        assert np.abs(arrays.ground[i].reshape(-1, 3).mean(0) - c).max() < 8
        assert np.abs(arrays.aerial[i].reshape(-1, 3).mean(0) - c).max() < 8
    thin = view_set_pairs(train, model_cfg(), max_per_place=3, workers=1)
    assert len(thin) == 9
    from geoloc_node.model.data import _pick_per_place

    kept = [train.pairs[i].ground.name for i in _pick_per_place(train.pairs, 3) if train.pairs[i].place == "0001"]
    assert kept == ["image-01.jpeg", "image-03.jpeg", "image-06.jpeg"]  # first, middle, last of the circle


def test_university1652_missing_folders(u1652_root, tmp_path):
    import shutil

    shutil.rmtree(u1652_root / "test" / "query_street")
    with pytest.raises(ds.DatasetError, match=r"test/query_street not found"):
        ds.university1652(u1652_root, "test", view="street")
    assert len(ds.university1652(u1652_root, "test")) == 8  # the drone task does not need it
    with pytest.raises(ds.DatasetError, match="needs --data-root"):
        ds.load_view_set("university1652", None, "train")


def test_evaluation_gallery_holds_a_shared_aerial_image_once():
    from geoloc_node.model.evaluate import retrieval_metrics

    rng = np.random.default_rng(0)
    aerial = rng.normal(size=(4, 64))  # four buildings
    place = np.repeat(np.arange(4), 5)  # five drone views of each
    za = aerial[place]
    zg = za + rng.normal(scale=0.05, size=za.shape)
    m = retrieval_metrics(zg, za, place=place)
    assert m["gallery"] == 4 and m["hamming"]["R@1"] == 1.0 and m["chance_R@1"] == 0.25
    # without it, the four identical copies of the true image tie with it: R@1 drops to about 1 in 5 by chance
    assert retrieval_metrics(zg, za)["hamming"]["R@1"] < 0.5
