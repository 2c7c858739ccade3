"""Training and evaluation pairs: synthetic worlds, the CVUSA folder layout, and the University-1652 sample mosaics.

Every source ends as a :class:`PairArrays`: ground views and aerial views already *preprocessed exactly as the runtime
encoders do* (:mod:`geoloc_node.encoders.preprocess`: resize, north alignment, polar transform, heading sector), as
uint8 arrays, plus positions where known. Training adds augmentation on top (see :mod:`.train`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encoders import preprocess as pp
from ..progress import progress_bar
from .net import ModelConfig


@dataclass
class PairArrays:
    """N aligned pairs. ``en``: (east, north) metres of each ground view (None if unknown); ``group``: which world /
    area each pair comes from (positives never cross groups); ``heading``: compass heading of pinhole views.
    ``place``: identity of each pair's positive aerial image (pairs that share one are not each other's negatives:
    University-1652's drone views of a building, VIGOR panoramas in one satellite image); ``semi``: [N, K] places of
    aerial images that also cover the ground camera (VIGOR's semi-positives; -1 pads), likewise never negatives."""

    ground: np.ndarray  # uint8 [N, Hg, Wg, 3]
    aerial: np.ndarray  # uint8 [N, Ha, Wa, 3]
    en: np.ndarray | None = None  # float64 [N, 2]
    group: np.ndarray | None = None  # int64 [N]
    heading: np.ndarray | None = None  # float64 [N]
    name: str = ""
    place: np.ndarray | None = None  # int64 [N]
    semi: np.ndarray | None = None  # int64 [N, K]

    OPTIONAL = ("en", "group", "heading", "place", "semi")

    def __len__(self) -> int:
        return len(self.ground)

    def subset(self, idx) -> PairArrays:
        idx = np.asarray(idx)
        def pick(a):
            return None if a is None else a[idx]

        return PairArrays(self.ground[idx], self.aerial[idx], name=self.name,
                          **{k: pick(getattr(self, k)) for k in self.OPTIONAL})

    @staticmethod
    def concat(parts: list[PairArrays]) -> PairArrays:
        def cat(attr):
            vals = [getattr(p, attr) for p in parts]
            return None if any(v is None for v in vals) else np.concatenate(vals)
        return PairArrays(cat("ground"), cat("aerial"), name="+".join(p.name for p in parts),
                          **{k: cat(k) for k in PairArrays.OPTIONAL})

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: getattr(self, k) for k in ("ground", "aerial", *self.OPTIONAL) if getattr(self, k) is not None}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, name=self.name, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> PairArrays:
        with np.load(path, allow_pickle=False) as z:
            return cls(ground=z["ground"], aerial=z["aerial"], name=str(z["name"]),
                       **{k: z[k] if k in z else None for k in cls.OPTIONAL})


# -- shared preprocessing (the runtime encoder's, applied once to a whole array) ---------------------------------------
def preprocess_aerial(tiles: np.ndarray, cfg: ModelConfig, headings=None) -> np.ndarray:
    """Aerial tiles (north-up, square) -> the aerial branch's input images, as the runtime encoder makes them."""
    return cfg.aerial_view()(tiles, headings)


# -- synthetic worlds ----------------------------------------------------------------------------------------------
def sample_road_poses(world, n: int, rng: np.random.Generator, margin_m: float = 30.0,
                      min_separation_m: float = 0.0) -> np.ndarray:
    """n poses (east, north, heading_deg) on the roads of a world, away from its border, heading along the road.

    ``min_separation_m`` > 0: no two poses closer than that (distinct places, as in CVUSA, where test locations lie far
    apart); raises ValueError when the world's roads cannot hold n such places.
    """
    g = world.road_graph
    a, b = g.nodes[g.edges[:, 0]], g.nodes[g.edges[:, 1]]
    length = np.linalg.norm(b - a, axis=1)
    half = world.config.size_m / 2.0 - margin_m
    out = []
    p = length / length.sum()
    cells: dict[tuple[int, int], list] = {}  # accepted positions by grid cell of min_separation_m
    tries = 0
    while len(out) < n:
        tries += 1
        if min_separation_m > 0 and tries > 200:
            raise ValueError(f"{world.config.size_m:g} m world: its roads hold only {len(out)} places "
                             f"{min_separation_m:g} m apart, not {n}; use a larger world or fewer pairs")
        k = rng.choice(len(length), size=2 * (n - len(out)) + 8, p=p)
        t = rng.random(len(k))
        pos = a[k] + (b[k] - a[k]) * t[:, None]
        d = (b[k] - a[k]) / np.maximum(length[k], 1e-9)[:, None]
        lateral = (rng.random(len(k)) - 0.5) * 0.5 * g.width_m[k]
        pos = pos + np.stack([d[:, 1], -d[:, 0]], axis=1) * lateral[:, None]
        heading = np.degrees(np.arctan2(d[:, 0], d[:, 1])) % 360.0
        heading = np.where(rng.random(len(k)) < 0.5, heading, (heading + 180.0) % 360.0)
        ok = (np.abs(pos) < half).all(axis=1)
        for e, nn, h in zip(pos[ok, 0], pos[ok, 1], heading[ok]):
            if min_separation_m > 0:
                ci, cj = int(e // min_separation_m), int(nn // min_separation_m)
                near = [q for di in (-1, 0, 1) for dj in (-1, 0, 1) for q in cells.get((ci + di, cj + dj), ())]
                if any((q[0] - e) ** 2 + (q[1] - nn) ** 2 < min_separation_m ** 2 for q in near):
                    continue
                cells.setdefault((ci, cj), []).append((e, nn))
            out.append((e, nn, h))
            if len(out) == n:
                break
    return np.asarray(out[:n], dtype=np.float64)


def crop_aerial(world, east: float, north: float, tile_size_m: float) -> np.ndarray:
    """North-up square tile of the orthophoto centred at (east, north), cut exactly as ``build-table`` cuts a GeoTIFF
    of this world (native resolution, pixel-aligned; outside the world is black). ``world``: a synthetic world (or
    anything with ``aerial_rgb`` and ``config.resolution_m`` / ``config.size_m``)."""
    res = world.config.resolution_m
    half_m = world.config.size_m / 2.0
    tile_px = int(round(tile_size_m / res))
    col = int(round((east + half_m) / res)) - tile_px // 2
    row = int(round((half_m - north) / res)) - tile_px // 2
    img = world.aerial_rgb
    out = np.zeros((tile_px, tile_px, 3), np.uint8)
    r0, r1, c0, c1 = max(row, 0), min(row + tile_px, img.shape[0]), max(col, 0), min(col + tile_px, img.shape[1])
    if r0 < r1 and c0 < c1:
        out[r0 - row:r1 - row, c0 - col:c1 - col] = img[r0:r1, c0:c1]
    return out


def synth_pairs(seed: int, n: int, cfg: ModelConfig, world_size_m: float = 700.0, tile_size_m: float = 50.0,
                render_seed: int | None = None, randomize: bool = True, world=None, progress: bool = False,
                tile_jitter_m: float = 0.0, min_separation_m: float = 0.0) -> PairArrays:
    """n ground/aerial pairs from the procedural world of ``seed`` (rendered with the synth renderer).

    Ground panoramas are rendered at the vehicle's heading and rolled north-aligned (as the runtime does with a known
    heading); pinhole views keep their heading, and the aerial view is the matching polar sector.
    """
    from ..synth import render
    from ..synth.world import WorldConfig, make_world

    world = world or make_world(WorldConfig(size_m=world_size_m, seed=seed))
    rng = np.random.default_rng(seed * 7919 + 17 if render_seed is None else render_seed)
    poses = sample_road_poses(world, n, rng, min_separation_m=min_separation_m)
    render_hw = _render_hw(cfg)
    ground = np.empty((n, *cfg.ground_hw, 3), np.uint8)
    tiles = []
    for i in progress_bar(iterable=range(n), enabled=progress, desc=f"render world {seed}", unit="pair", leave=False):
        e, nn, h = poses[i]
        if cfg.mode == "panorama":
            im = render.render_panorama(world, e, nn, h, size=render_hw, rng=rng, randomize=randomize)
            im = pp.align_panorama(im, h, PANORAMA_COL0_OFFSET_DEG)
        else:
            im = render.render_pinhole(world, e, nn, h, hfov_deg=cfg.hfov_deg, size=render_hw, rng=rng,
                                       randomize=randomize)
        ground[i] = pp.resize_batch(im[None], cfg.ground_hw)[0]
        je, jn = (rng.uniform(-tile_jitter_m, tile_jitter_m, 2) if tile_jitter_m else (0.0, 0.0))
        tiles.append(crop_aerial(world, e + je, nn + jn, tile_size_m))
    aerial = preprocess_aerial(np.stack(tiles), cfg, poses[:, 2])
    return PairArrays(ground, aerial, en=poses[:, :2].copy(), group=np.full(n, seed, np.int64), heading=poses[:, 2],
                      name=f"synth{seed}")


#: Azimuth, relative to the vehicle heading, of the left edge of a panorama from ``synth.render.render_panorama``
#: (its column 0 looks at the heading: half a column, well under a degree, from our convention; see preprocess).
PANORAMA_COL0_OFFSET_DEG = 0.0


def _render_hw(cfg: ModelConfig) -> tuple[int, int]:
    """Render at twice the model's input (128 x 512 for 64 x 256: the renderer's and CVUSA's panorama size) and
    shrink with area interpolation, as the runtime encoder shrinks a camera frame."""
    h, w = cfg.ground_hw
    return (h * 2, w * 2)


def synth_pairs_cached(seeds, n_per_world: int, cfg: ModelConfig, cache_dir, world_size_m: float = 700.0,
                       tile_size_m: float = 50.0, progress: bool = True, tile_jitter_m: float = 0.0,
                       min_separation_m: float = 0.0, workers: int = 1) -> PairArrays:
    """:func:`synth_pairs` for several worlds, each cached as an .npz keyed by everything that shapes it.

    ``workers`` > 1 renders the missing worlds in that many processes (one world each; rendering is single-threaded
    numpy, so this is what uses the other cores before training starts)."""
    paths = {}
    for seed in seeds:
        key = json.dumps({"seed": seed, "n": n_per_world, "size": world_size_m, "tile": tile_size_m,
                          "jit": tile_jitter_m, "mode": cfg.mode, "hfov": cfg.hfov_deg, "g": cfg.ground_hw,
                          "a": cfg.aerial_hw, "pre": cfg.aerial_preprocess, "psrc": cfg.polar_src_px,
                          "phw": cfg.polar_hw, "geo": [cfg.tile_size_m, cfg.camera_height_m, cfg.ceiling_m],
                          "off": PANORAMA_COL0_OFFSET_DEG, "v": 2,
                          **({"sep": min_separation_m} if min_separation_m else {})}, sort_keys=True)
        paths[seed] = Path(cache_dir) / f"synth_{seed}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
    missing = [s for s in paths if not paths[s].exists()]
    kwargs = dict(n=n_per_world, cfg=cfg, world_size_m=world_size_m, tile_size_m=tile_size_m,
                  tile_jitter_m=tile_jitter_m, min_separation_m=min_separation_m)
    rendered: dict[int, PairArrays] = {}  # rendered here: kept, not read back from the cache
    if workers > 1 and len(missing) > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        # spawn, not fork: the parent has torch (and its thread pool) loaded
        with cf.ProcessPoolExecutor(min(workers, len(missing)), mp_context=mp.get_context("spawn")) as ex:
            futs = [ex.submit(_render_to_cache, s, paths[s], kwargs) for s in missing]
            done = progress_bar(len(futs), iterable=cf.as_completed(futs), enabled=progress,
                                desc=f"render {len(futs)} worlds", unit="world", leave=False)
            for f in done:
                f.result()
    else:
        for s in missing:
            rendered[s] = synth_pairs(s, progress=progress, **kwargs)
            rendered[s].save(paths[s])
    return PairArrays.concat([rendered[s] if s in rendered else PairArrays.load(paths[s]) for s in seeds])


def _render_to_cache(seed: int, path: Path, kwargs: dict) -> None:
    """A worker process's job: returns nothing, so the arrays do not travel back through a pipe."""
    synth_pairs(seed, **kwargs).save(path)


class JitteredAerial:
    """Draws each training pair's aerial view afresh, cut around its place moved by up to ``jitter_m`` metres (uniform
    in a square) each time the pair is used: a region table's tiles sit on a grid, up to half a stride away from the
    vehicle, and the codes must tolerate that. Keeps only the orthophotos of the training worlds (a few MB each).

    ``heading_jitter_deg`` (pinhole models): the aerial view is drawn at the camera heading moved by up to this much,
    because a region table stores one code per heading *bin* and a camera's heading falls anywhere inside its bin.

    ``sampler(indices, rng)`` -> uint8 aerial views of those pairs, preprocessed exactly as the runtime encoder does.
    """

    def __init__(self, pairs: PairArrays, cfg: ModelConfig, jitter_m: float, world_size_m: float = 700.0,
                 tile_size_m: float = 50.0, heading_jitter_deg: float = 0.0, worlds: dict | None = None):
        """``worlds``: {seed: world} already built (default: the procedural world of each seed, as synth_pairs)."""
        from ..synth.world import WorldConfig, make_world

        if pairs.en is None or pairs.group is None:
            raise ValueError("jittered aerial views need positions and world seeds (synthetic pairs)")
        self.pairs, self.cfg, self.jitter_m, self.tile_size_m = pairs, cfg, float(jitter_m), tile_size_m
        self.heading_jitter_deg = float(heading_jitter_deg)
        self.view = cfg.aerial_view()
        self.worlds = {}
        for g in np.unique(pairs.group):
            w = (worlds or {}).get(int(g)) or make_world(WorldConfig(size_m=world_size_m, seed=int(g)))
            self.worlds[int(g)] = _Ortho(w.aerial_rgb, w.config.resolution_m, w.config.size_m)

    def __call__(self, idx, rng: np.random.Generator) -> np.ndarray:
        idx = np.asarray(idx)
        off = rng.uniform(-self.jitter_m, self.jitter_m, (len(idx), 2))
        tiles = np.stack([crop_aerial(self.worlds[int(self.pairs.group[i])], e + de, n + dn, self.tile_size_m)
                          for i, (e, n), (de, dn) in zip(idx, self.pairs.en[idx], off)])
        headings = None if self.pairs.heading is None else self.pairs.heading[idx]
        if headings is not None and self.heading_jitter_deg > 0:
            headings = headings + rng.uniform(-self.heading_jitter_deg, self.heading_jitter_deg, len(idx))
        return self.view(tiles, headings)


@dataclass(frozen=True)
class _Ortho:
    """What :func:`crop_aerial` needs of a world: its orthophoto and geometry."""

    aerial_rgb: np.ndarray
    resolution_m: float
    size_m: float

    @property
    def config(self):
        return self


# -- the public datasets (CVUSA, CVACT, VIGOR, University-1652; adapters in .datasets) -------------------------------
def _read_rgb(path) -> np.ndarray:
    import cv2

    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return np.ascontiguousarray(im[:, :, ::-1])


def panorama_band(pano: np.ndarray) -> np.ndarray:
    """The rows of an equirectangular panorama that the runtime's convention covers (+-45 degrees of elevation about
    the horizon, a 1:4 image): a full panorama (2:1, +-90 degrees, CVACT and VIGOR) is cut to its central half, as
    SAFA does for CVACT; a panorama already that flat or flatter (CVUSA's 224 x 1232) is kept whole."""
    h, w = pano.shape[:2]
    keep = int(round(w / 4))
    if h <= keep:
        return pano
    top = (h - keep) // 2
    return pano[top:top + keep]


def _ground_view(path, pair, cfg: ModelConfig) -> np.ndarray:
    im = _read_rgb(path)
    if pair.pano_col0_azimuth_deg is None:  # a drone view or a street photo: the image as it is
        return pp.resize_batch(im[None], cfg.ground_hw)[0]
    im = pp.resize_batch(panorama_band(im)[None], cfg.ground_hw)[0]
    # roll into the runtime's convention (north at column 0) from the dataset's (north in the centre: azimuth 180)
    return pp.align_panorama(im, 0.0, pair.pano_col0_azimuth_deg)


def _pick_per_place(pairs: list, max_per_place: int) -> list[int]:
    """Indices of at most ``max_per_place`` pairs per place, evenly spread over each place's pairs in their order
    (University-1652's 54 drone views of a building circle it: even spacing keeps every side)."""
    if max_per_place <= 0:
        return list(range(len(pairs)))
    by_place: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_place.setdefault(p.place, []).append(i)
    keep = []
    for idx in by_place.values():
        if len(idx) > max_per_place:
            idx = [idx[int(k)] for k in np.linspace(0, len(idx) - 1, max_per_place).round()]
        keep += idx
    return sorted(keep)


def view_set_pairs(view_set, cfg: ModelConfig, max_per_place: int = 0, workers: int = 4,
                   progress: bool = False, chunk: int = 256) -> PairArrays:
    """A :class:`.datasets.ViewSet` -> :class:`PairArrays`, each view preprocessed as the runtime encoders do it.

    Ground panoramas: cut to +-45 degrees of elevation (:func:`panorama_band`), resized, rolled north to column 0.
    Aerial images: through the model's aerial view (:class:`~geoloc_node.encoders.preprocess.AerialView`) at their
    own size, north-up and square as published. Positions become ``en`` with one ``group`` per position frame (a
    VIGOR city, CVACT's UTM zone); ``place``/``semi`` index the distinct aerial images. Images are decoded in
    ``workers`` threads (OpenCV releases the GIL), ``chunk`` at a time, so that memory holds only the small arrays.
    """
    import concurrent.futures as cf

    pairs = [view_set.pairs[i] for i in _pick_per_place(view_set.pairs, max_per_place)]
    n = len(pairs)
    places = sorted({p.place for p in pairs} | {str(s) for p in pairs for s in p.semi_positives})
    place_id = {k: i for i, k in enumerate(places)}
    # a semi-positive is named by its file; map it to the place of the pair whose positive that file is, if any
    aerial_place = {str(p.aerial): p.place for p in pairs}
    ground = np.empty((n, *cfg.ground_hw, 3), np.uint8)
    aerial = np.empty((n, *cfg.aerial_hw, 3), np.uint8)
    view = cfg.aerial_view()

    def load(i):
        return _ground_view(pairs[i].ground, pairs[i], cfg), _read_rgb(pairs[i].aerial)

    starts = range(0, n, chunk)
    with cf.ThreadPoolExecutor(max(1, workers)) as ex:
        for s in progress_bar(len(starts), iterable=starts, enabled=progress, desc=f"read {view_set.name}",
                              unit="chunk", leave=False):
            got = list(ex.map(load, range(s, min(n, s + chunk))))
            by_size: dict[tuple, list[int]] = {}
            for k, (g, a) in enumerate(got):
                ground[s + k] = g
                by_size.setdefault(a.shape, []).append(k)
            for shape, ks in by_size.items():  # one aerial-view call per image size (the runtime's path exactly)
                tiles = np.stack([got[k][1] for k in ks])
                if shape[0] != shape[1]:
                    tiles = pp.resize_batch(tiles, (max(shape[:2]),) * 2)
                aerial[[s + k for k in ks]] = view(tiles, np.zeros(len(ks)) if view.needs_heading else None)
    frames = sorted({p.frame for p in pairs if p.position is not None})
    en = group = None
    if frames and all(p.position is not None for p in pairs):
        en = np.array([p.position for p in pairs], np.float64)
        group = np.array([frames.index(p.frame) for p in pairs], np.int64)
    semi = None
    k = max((len(p.semi_positives) for p in pairs), default=0)
    if k:
        semi = np.full((n, k), -1, np.int64)
        for i, p in enumerate(pairs):
            for j, s in enumerate(p.semi_positives):
                semi[i, j] = place_id[aerial_place.get(str(s), str(s))]
    return PairArrays(ground, aerial, en=en, group=group, name=f"{view_set.name}-{view_set.split}",
                      place=np.array([place_id[p.place] for p in pairs], np.int64), semi=semi)


def view_set_pairs_cached(view_set, cfg: ModelConfig, cache_dir=None, max_per_place: int = 0, workers: int = 4,
                          progress: bool = True) -> PairArrays:
    """:func:`view_set_pairs`, cached in ``cache_dir`` as an .npz keyed by the pairs and every setting that shapes
    the arrays (decoding a whole dataset takes minutes; a resumed or repeated run reads the arrays back)."""
    if cache_dir is None:
        return view_set_pairs(view_set, cfg, max_per_place, workers, progress)
    listing = hashlib.sha256("\n".join(f"{p.ground}|{p.aerial}" for p in view_set.pairs).encode()).hexdigest()
    key = json.dumps({"set": view_set.name, "split": view_set.split, "pairs": listing, "per_place": max_per_place,
                      "mode": cfg.mode, "hfov": cfg.hfov_deg, "g": cfg.ground_hw, "a": cfg.aerial_hw,
                      "pre": cfg.aerial_preprocess, "psrc": cfg.polar_src_px, "phw": cfg.polar_hw,
                      "geo": [cfg.tile_size_m, cfg.camera_height_m, cfg.ceiling_m], "v": 1}, sort_keys=True)
    slug = "".join(c if c.isalnum() else "_" for c in view_set.name.lower())
    path = Path(cache_dir) / f"{slug}_{view_set.split}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
    if path.exists():
        return PairArrays.load(path)
    out = view_set_pairs(view_set, cfg, max_per_place, workers, progress)
    out.save(path)
    return out


def cvusa_pairs(root, split: str, cfg: ModelConfig, limit: int | None = None) -> PairArrays:
    """Pairs of a CVUSA-layout folder (``root/splits/{train,val}-19zl.csv``; 'test' reads val), preprocessed as the
    runtime does: panoramas rolled from CVUSA's north-in-the-centre to north at column 0 (see :mod:`.datasets`)."""
    from .datasets import cvusa

    vs = cvusa(root, "val" if split == "test" else split)
    if limit:
        vs.pairs = vs.pairs[:limit]
    return view_set_pairs(vs, cfg)


# -- University-1652 sample mosaics ---------------------------------------------------------------------------------
U1652_DIR = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "university1652_sample"
U1652_ROWS, U1652_COLS, U1652_PITCH_Y, U1652_VIEW = 25, 20, 158.0, 134


def u1652_cells(directory=None) -> tuple[np.ndarray, np.ndarray]:
    """The 500 (drone, satellite) views cut from the two mosaics: uint8 [500, 134, 134, 3] each, row-major cells."""
    import cv2

    d = Path(directory) if directory else U1652_DIR
    out = []
    for name in ("sample_drone.jpg", "sample_satellite.jpg"):
        im = cv2.imread(str(d / name), cv2.IMREAD_COLOR)
        if im is None:
            raise FileNotFoundError(f"University-1652 mosaic {d / name}: missing or unreadable")
        im = im[:, :, ::-1]
        pitch_x = im.shape[1] / U1652_COLS
        cells = []
        for r in range(U1652_ROWS):
            for c in range(U1652_COLS):
                y, x = int(round(r * U1652_PITCH_Y)), int(round(c * pitch_x))
                cells.append(im[y:y + U1652_VIEW, x:x + U1652_VIEW])
        out.append(np.stack(cells))
    return out[0], out[1]


def u1652_pairs(split: str, cfg: ModelConfig, directory=None, n_train: int = 400, val_cells: int = 0) -> PairArrays:
    """Train: the first ``n_train`` cells (rows 0-19); test: the rest (rows 20-24): disjoint buildings. With
    ``val_cells`` > 0 the last ``val_cells`` training cells are held out and stand in for the test rows (train: the
    cells before them; any other split: them), so that a recipe is chosen without ever looking at the test rows."""
    drone, sat = u1652_cells(directory)
    if not 0 <= val_cells < n_train:
        raise ValueError(f"u1652: val_cells must be in [0, {n_train})")
    fit = n_train - val_cells
    if split == "train":
        idx = np.arange(fit)
    else:
        idx = np.arange(fit, n_train) if val_cells else np.arange(n_train, len(drone))
    g = pp.resize_batch(drone[idx], cfg.ground_hw)
    a = preprocess_aerial(sat[idx], cfg)
    name = f"u1652-{split}" if not val_cells or split == "train" else f"u1652-val{val_cells}"
    return PairArrays(g, a, group=np.zeros(len(idx), np.int64), name=name)


def split_by_geography(p: PairArrays, holdout_frac: float = 0.2, axis: int = 0) -> tuple[PairArrays, PairArrays]:
    """Split one world's pairs by a line across it (east < x for training): test places are never trained on."""
    if p.en is None:
        raise ValueError("split_by_geography needs positions")
    x = p.en[:, axis]
    cut = np.quantile(x, 1.0 - holdout_frac)
    return p.subset(np.where(x < cut - 25.0)[0]), p.subset(np.where(x >= cut + 25.0)[0])


def heading_sector_count(hfov_deg: float) -> int:
    return max(1, int(math.ceil(360.0 / hfov_deg)))
