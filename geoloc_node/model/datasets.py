"""The public cross-view datasets in their published layouts, read into one list of pairs.

Each adapter reads only what a release ships as metadata (split CSV/TXT files, ``ACT_data.mat``, folder and file
names) and returns a :class:`ViewSet`: (ground image, positive aerial image, split, place, optional position,
semi-positives) records, no pixels. :func:`geoloc_node.model.data.view_set_pairs` turns one into training arrays.

========================  ==========================================================================================
dataset (``--data``)      layout under its root
========================  ==========================================================================================
CVUSA (``cvusa``)         ``splits/{train,val}-19zl.csv``, rows ``bingmap/19/N.jpg,streetview/panos/N.jpg[,...]``
CVACT (``cvact``)         ``ACT_data.mat`` (``panoIds``, ``utm``, ``trainSet.trainInd``, ``valSet.valInd``,
                          ``valSetAll.valInd``), ``streetview/<id>_grdView.jpg``,
                          ``satview_polish/<id>_satView_polish.jpg`` (beside the .mat or in ``ANU_data_small/``)
VIGOR (``vigor``)         ``<City>/panorama/<prefix>,<lat>,<lon>,.jpg``, ``<City>/satellite/satellite_<lat>_<lon>.png``,
                          ``splits/<City>/satellite_list.txt``, ``same_area_balanced_{train,test}.txt`` and
                          ``pano_label_balanced.txt`` (lines: panorama, then 4 x (satellite, delta_0, delta_1))
University-1652           ``train/{drone,street,satellite}/<class>/*``, ``test/{query,gallery}_{drone,street,
(``university1652``)      satellite}/<class>/*``
========================  ==========================================================================================

Panoramas of CVUSA, CVACT and VIGOR are north-aligned with **north in the centre column** (column ``j`` looks at
compass azimuth ``180 + 360 j / W``; SAFA's polar transform and the synthetic exporter assume the same), so each pair
records ``pano_col0_azimuth_deg = 180``; the loader rolls them into the runtime's convention (north at column 0).

Splits: each dataset's official training split is ``train``; its evaluation split keeps the dataset's own name
(CVUSA ``val``; CVACT ``val`` = CVACT_val, ``test`` = CVACT_test; VIGOR ``test``; University-1652 ``test``).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GeolocError

#: compass azimuth of column 0 of a north-aligned panorama with north in its centre column (CVUSA, CVACT, VIGOR)
NORTH_AT_CENTRE_COL0_AZIMUTH_DEG = 180.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class DatasetError(GeolocError, ValueError):
    """A dataset folder does not have the published layout (a file or folder is missing or unreadable)."""


@dataclass(frozen=True)
class ViewPair:
    """One ground (street panorama, drone view or street photo) -> aerial pair of a public dataset.

    ``place``: identity of the positive aerial image (pairs with the same place share it: University-1652's drone
    views of one building, VIGOR panoramas in one satellite image). ``position``: the ground camera's (east, north) in
    metres in ``frame`` (positions compare only within one frame; None where the dataset gives none). ``latlon``:
    WGS84 where the dataset gives it. ``semi_positives``: other aerial images that also cover the camera (VIGOR), never
    to be used as its negatives. ``camera_offset_px``: (row, col) of the camera in the positive aerial image relative
    to its centre (VIGOR; rows grow southwards, columns eastwards), None where the camera is at the centre.
    ``pano_col0_azimuth_deg``: compass azimuth of a panorama's column 0, None when the ground view is not a
    panorama.
    """

    ground: Path
    aerial: Path
    split: str
    place: str
    position: tuple[float, float] | None = None
    frame: str = ""
    latlon: tuple[float, float] | None = None
    semi_positives: tuple[Path, ...] = ()
    camera_offset_px: tuple[float, float] | None = None
    pano_col0_azimuth_deg: float | None = None


@dataclass
class ViewSet:
    """The pairs of one split of one dataset. ``gallery_extra``: aerial images of the evaluation gallery that are no
    pair's positive (University-1652's distractor buildings, VIGOR satellite images with no panorama). ``skipped``:
    pairs left out because an image file is missing (CVACT's release lacks a few), as 'ground -> aerial' strings."""

    name: str
    split: str
    root: Path
    pairs: list[ViewPair]
    gallery_extra: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what}: {path} not found")
    return path


class _Listing:
    """Existence checks by one directory listing per folder (a stat per file is slow on network storage)."""

    def __init__(self):
        self._dirs: dict[Path, frozenset[str]] = {}

    def exists(self, path: Path) -> bool:
        d = path.parent
        if d not in self._dirs:
            try:
                self._dirs[d] = frozenset(os.listdir(d))
            except OSError:
                self._dirs[d] = frozenset()
        return path.name in self._dirs[d]


def _keep_existing(name: str, split: str, root: Path, pairs: list[ViewPair], extra=()) -> ViewSet:
    listing = _Listing()
    kept, skipped = [], []
    for p in pairs:
        if listing.exists(p.ground) and listing.exists(p.aerial):
            kept.append(p)
        else:
            skipped.append(f"{p.ground} -> {p.aerial}")
    if not kept:
        first = f" (first missing: {skipped[0]})" if skipped else ""
        raise DatasetError(f"{name} {split} under {root}: no pair whose two images exist{first}")
    return ViewSet(name, split, root, kept, [e for e in extra if listing.exists(e)], skipped)


# -- CVUSA --------------------------------------------------------------------------------------------------------
CVUSA_SPLIT_FILES = {"train": "train-19zl.csv", "val": "val-19zl.csv"}


def cvusa(root, split: str = "train") -> ViewSet:
    """CVUSA (the subset of Zhai et al. used by CVM-Net, SAFA and later): ``splits/<split>-19zl.csv`` rows
    ``bingmap/19/N.jpg,streetview/panos/N.jpg[,annotations/N.png]`` relative to ``root`` (aerial first). A set
    exported by ``geoloc synth pairs`` has the same layout; its ``synth_locations.csv`` and ``synth_pairs.json`` then
    add positions and the panoramas' column convention."""
    root = Path(root)
    if split not in CVUSA_SPLIT_FILES:
        raise DatasetError(f"CVUSA split {split!r}: expected one of {sorted(CVUSA_SPLIT_FILES)}")
    csv_path = root / "splits" / CVUSA_SPLIT_FILES[split]
    if not csv_path.is_file():
        raise DatasetError(f"CVUSA {split}: {csv_path} not found (the published layout has splits/train-19zl.csv "
                           "and splits/val-19zl.csv)")
    col0 = NORTH_AT_CENTRE_COL0_AZIMUTH_DEG
    meta = root / "synth_pairs.json"
    if meta.is_file():  # a synthetic export says where north is (north_at_center, the default, matches CVUSA)
        col0 = 180.0 if json.loads(meta.read_text()).get("config", {}).get("north_at_center", True) else 0.0
    locations = {}
    loc_path = root / "synth_locations.csv"
    if loc_path.is_file():
        with open(loc_path, newline="") as f:
            locations = {r["ground_path"]: (float(r["east"]), float(r["north"]), float(r["lat"]), float(r["lon"]))
                         for r in csv.DictReader(f)}
    pairs = []
    with open(csv_path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise DatasetError(f"CVUSA {csv_path}:{line_no}: expected aerial_path,ground_path")
            aerial, ground = row[0].strip(), row[1].strip()
            if line_no == 1 and not ground.lower().endswith(IMAGE_SUFFIXES):
                continue  # a header row (the published files have none; hand-made ones sometimes do)
            loc = locations.get(ground)
            pairs.append(ViewPair(root / ground, root / aerial, split, place=Path(ground).stem,
                                  position=loc[:2] if loc else None, frame="synth world ENU" if loc else "",
                                  latlon=loc[2:] if loc else None, pano_col0_azimuth_deg=col0))
    if not pairs:
        raise DatasetError(f"CVUSA {csv_path}: no pairs")
    return _keep_existing("CVUSA", split, root, pairs)


# -- CVACT --------------------------------------------------------------------------------------------------------
#: split -> the ACT_data.mat struct holding its 1-based indices into panoIds (CVACT_val and CVACT_test)
CVACT_SPLIT_FIELDS = {"train": ("trainSet", "trainInd"), "val": ("valSet", "valInd"), "test": ("valSetAll", "valInd")}


def cvact(root, split: str = "train") -> ViewSet:
    """CVACT (Liu & Li, CVPR 2019): ``ACT_data.mat`` lists every panorama id (``panoIds``), its UTM position
    (``utm``, metres: easting, northing) and the official splits as 1-based indices (``trainSet.trainInd``; CVACT_val
    = ``valSet.valInd``; CVACT_test = ``valSetAll.valInd``). Images: ``streetview/<id>_grdView.jpg`` (full
    equirectangular panoramas, north in the centre) and ``satview_polish/<id>_satView_polish.jpg``, beside the .mat or
    under ``ANU_data_small/`` (train, val) / ``ANU_data_test/`` (test). Pairs whose images are missing are skipped
    and listed (the public release lacks a few)."""
    import numpy as np
    import scipy.io

    root = Path(root)
    if split not in CVACT_SPLIT_FIELDS:
        raise DatasetError(f"CVACT split {split!r}: expected one of {sorted(CVACT_SPLIT_FIELDS)}")
    mat_path = root / "ACT_data.mat"
    if not mat_path.is_file():
        raise DatasetError(f"CVACT: {mat_path} not found (the published layout has ACT_data.mat beside streetview/ "
                           "and satview_polish/)")
    try:
        mat = scipy.io.loadmat(mat_path)
    except Exception as exc:  # scipy raises several types for a corrupt or non-MATLAB file
        raise DatasetError(f"CVACT: cannot read {mat_path} as a MATLAB file ({exc})") from None
    struct, fld = CVACT_SPLIT_FIELDS[split]
    for key in ("panoIds", "utm", struct):
        if key not in mat:
            raise DatasetError(f"CVACT: {mat_path} has no '{key}'")
    ids = [str(s).strip() for s in np.asarray(mat["panoIds"]).ravel()]
    utm = np.asarray(mat["utm"], dtype=np.float64).reshape(len(ids), -1)
    try:  # a MATLAB struct loads as a 1x1 record array whose field holds the N x 1 index column
        idx = np.asarray(mat[struct][fld][0, 0], dtype=np.int64).ravel() - 1
    except (ValueError, IndexError) as exc:
        raise DatasetError(f"CVACT: {mat_path} has no '{struct}.{fld}' ({exc})") from None
    if len(idx) and (idx.min() < 0 or idx.max() >= len(ids)):
        raise DatasetError(f"CVACT: {mat_path} {struct}.{fld} holds indices outside 1..{len(ids)}")
    images = root
    sub = "ANU_data_test" if split == "test" else "ANU_data_small"
    if not (root / "streetview").is_dir() and (root / sub / "streetview").is_dir():
        images = root / sub
    for folder in ("streetview", "satview_polish"):
        if not (images / folder).is_dir():
            raise DatasetError(f"CVACT: {images / folder} not found (expected streetview/ and satview_polish/ beside "
                               f"ACT_data.mat or under {sub}/)")
    pairs = [ViewPair(images / "streetview" / f"{ids[i]}_grdView.jpg",
                      images / "satview_polish" / f"{ids[i]}_satView_polish.jpg", split, place=ids[i],
                      position=(float(utm[i, 0]), float(utm[i, 1])), frame="CVACT UTM",
                      pano_col0_azimuth_deg=NORTH_AT_CENTRE_COL0_AZIMUTH_DEG) for i in idx]
    return _keep_existing("CVACT", split, root, pairs)


# -- VIGOR --------------------------------------------------------------------------------------------------------
VIGOR_CITIES = ("Chicago", "NewYork", "SanFrancisco", "Seattle")
#: cross-area protocol: train on two cities, test on the other two (the VIGOR paper's split)
VIGOR_CROSS_AREA = {"train": ("NewYork", "Seattle"), "test": ("SanFrancisco", "Chicago")}


def vigor_latlon(name: str) -> tuple[float, float]:
    """(lat, lon) from a VIGOR file name: ``<prefix>,<lat>,<lon>,.jpg`` (panorama) or ``satellite_<lat>_<lon>.png``."""
    stem = Path(name).name
    try:
        if stem.startswith("satellite_"):
            lat, lon = stem.rsplit(".", 1)[0].split("_")[1:3]
        else:
            lat, lon = stem.split(",")[1:3]
        return float(lat), float(lon)
    except (ValueError, IndexError):
        raise DatasetError(f"VIGOR: cannot read a position from the file name {name!r}") from None


def vigor(root, split: str = "train", area: str = "same", label_dir: str = "splits") -> ViewSet:
    """VIGOR (Zhu et al., CVPR 2021): four cities, each ``<City>/panorama/`` and ``<City>/satellite/``; labels in
    ``<label_dir>/<City>/`` (``splits``, or ``splits__corrected`` for the corrected labels of SliceMatch).

    ``area='same'``: all four cities, ``same_area_balanced_{train,test}.txt``; ``area='cross'``: train on NewYork and
    Seattle, test on SanFrancisco and Chicago, each city's ``pano_label_balanced.txt``. A label line is the panorama
    name followed by four (satellite name, delta_0, delta_1): the positive, then three semi-positives; delta is the
    satellite centre minus the camera position in the satellite image's pixels (delta_0 along latitude, delta_1 along
    longitude), so the camera sits at row ``+delta_0``, column ``-delta_1`` from the image centre. Positions: the
    panorama's latitude/longitude from its name, in a tangent plane per city (centred on the mean of the city's
    satellite images, so train and test share it)."""
    import numpy as np

    from ..geodesy import LocalFrame

    root = Path(root)
    if area not in ("same", "cross"):
        raise DatasetError(f"VIGOR area {area!r}: expected 'same' or 'cross'")
    if split not in ("train", "test"):
        raise DatasetError(f"VIGOR split {split!r}: expected 'train' or 'test'")
    cities = VIGOR_CITIES if area == "same" else VIGOR_CROSS_AREA[split]
    label_name = f"same_area_balanced_{split}.txt" if area == "same" else "pano_label_balanced.txt"
    pairs, extra = [], []
    for city in cities:
        labels = root / label_dir / city
        sat_list = labels / "satellite_list.txt"
        if not sat_list.is_file():
            raise DatasetError(f"VIGOR {city}: {sat_list} not found (the published layout has {label_dir}/<City>/"
                               "satellite_list.txt and the label files)")
        label_file = labels / label_name
        if not label_file.is_file():
            raise DatasetError(f"VIGOR {city} {area}-area {split}: {label_file} not found")
        satellites = [s.strip() for s in sat_list.read_text().splitlines() if s.strip()]
        known = set(satellites)
        lat_lon = np.array([vigor_latlon(s) for s in satellites]) if satellites else np.zeros((0, 2))
        if not len(lat_lon):
            raise DatasetError(f"VIGOR {city}: {sat_list} lists no satellite image")
        frame = LocalFrame(float(lat_lon[:, 0].mean()), float(lat_lon[:, 1].mean()))
        frame_name = f"VIGOR {city} ENU"
        used = set()
        for line_no, line in enumerate(label_file.read_text().splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 13:
                raise DatasetError(f"VIGOR {label_file}:{line_no}: expected a panorama and 4 x (satellite, delta_0, "
                                   f"delta_1), got {len(parts)} fields")
            pano, sats = parts[0], parts[1:13:3]
            for s in sats:
                if s not in known:
                    raise DatasetError(f"VIGOR {label_file}:{line_no}: {s} is not in {sat_list}")
            try:
                d0, d1 = float(parts[2]), float(parts[3])
            except ValueError:
                raise DatasetError(f"VIGOR {label_file}:{line_no}: deltas are not numbers") from None
            lat, lon = vigor_latlon(pano)
            e, n = frame.to_en(lat, lon)
            sat_dir = root / city / "satellite"
            used.add(sats[0])
            pairs.append(ViewPair(root / city / "panorama" / pano, sat_dir / sats[0], split,
                                  place=f"{city}/{sats[0]}", position=(float(e), float(n)), frame=frame_name,
                                  latlon=(lat, lon), semi_positives=tuple(sat_dir / s for s in sats[1:]),
                                  camera_offset_px=(d0, -d1), pano_col0_azimuth_deg=NORTH_AT_CENTRE_COL0_AZIMUTH_DEG))
        if split == "test":
            extra += [root / city / "satellite" / s for s in satellites if s not in used]
    return _keep_existing(f"VIGOR {area}-area", split, root, pairs, extra)


# -- University-1652 ------------------------------------------------------------------------------------------------
def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _classes(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def university1652(root, split: str = "train", view: str = "drone") -> ViewSet:
    """University-1652 (Zheng et al., ACM MM 2020), full release: ``train/{drone,street,satellite}/<class>/`` (one
    satellite image per building) and ``test/query_<view>/<class>/`` against ``test/gallery_satellite/<class>/``
    (951 buildings, 250 of them distractors without a query: ``gallery_extra``). ``view``: the ground side, 'drone'
    (drone -> satellite, the task this project ships) or 'street'."""
    root = Path(root)
    if split not in ("train", "test"):
        raise DatasetError(f"University-1652 split {split!r}: expected 'train' or 'test'")
    if view not in ("drone", "street"):
        raise DatasetError(f"University-1652 view {view!r}: expected 'drone' or 'street'")
    if split == "train":
        ground_dir, sat_dir = root / "train" / view, root / "train" / "satellite"
    else:
        ground_dir, sat_dir = root / "test" / f"query_{view}", root / "test" / "gallery_satellite"
    for d in (ground_dir, sat_dir):
        if not d.is_dir():
            raise DatasetError(f"University-1652 {split}: {d} not found (the published layout has train/{{drone,"
                               "street,satellite}/<class>/ and test/{query,gallery}_{drone,street,satellite}/<class>/)")
    satellites = {c: _images(sat_dir / c) for c in _classes(sat_dir)}
    pairs, skipped = [], []
    queried = set()
    for c in _classes(ground_dir):
        sats = satellites.get(c) or []
        for g in _images(ground_dir / c):
            if not sats:
                skipped.append(f"{g} -> {sat_dir / c}/ (no satellite image)")
                continue
            pairs.append(ViewPair(g, sats[0], split, place=c))
            queried.add(c)
    if not pairs:
        raise DatasetError(f"University-1652 {split}: no {view} image with a satellite image under {root}")
    extra = [s for c, imgs in satellites.items() if c not in queried for s in imgs] if split == "test" else []
    return ViewSet(f"University-1652 {view}", split, root, pairs, extra, skipped)


#: --data name -> (adapter, its training split, its evaluation split)
ADAPTERS = {"cvusa": (cvusa, "train", "val"), "cvact": (cvact, "train", "val"), "vigor": (vigor, "train", "test"),
            "university1652": (university1652, "train", "test")}


def load_view_set(name: str, root, split: str, **options) -> ViewSet:
    """``split`` 'train' or 'val' (the dataset's evaluation split: see :data:`ADAPTERS`) or one of its own names."""
    if name not in ADAPTERS:
        raise DatasetError(f"dataset {name!r}: expected one of {sorted(ADAPTERS)}")
    if root is None:
        raise DatasetError(f"--data {name} needs --data-root (the dataset's folder)")
    if not Path(root).is_dir():
        raise DatasetError(f"{name}: dataset folder {root} not found")
    adapter, train_split, eval_split = ADAPTERS[name]
    return adapter(root, {"train": train_split, "val": eval_split}.get(split, split), **options)
