"""Shared fixtures of the model tests: a toy cross-view world that needs no renderer, and a tiny trained model."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from geoloc_node.encoders import preprocess as pp  # noqa: E402
from geoloc_node.model.data import PairArrays  # noqa: E402
from geoloc_node.model.net import ModelConfig  # noqa: E402

HW = (32, 128)


def toy_world(seed: int, size: int = 512) -> np.ndarray:
    """A smooth random colour field with some blobs: an 'orthophoto' whose places differ."""
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(150):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, tuple(int(v) for v in rng.integers(0, size, 2)), int(rng.integers(3, 12)), c, -1)
    return img


def toy_pairs(seed: int, n: int, cfg: ModelConfig, tile_px: int = 64) -> PairArrays:
    """Ground 'panoramas' = a distorted, noisy polar view of the tile; aerial = the tile through the real pipeline."""
    from geoloc_node.model.data import preprocess_aerial

    world = toy_world(seed)
    rng = np.random.default_rng(seed + 1)
    centres = rng.integers(tile_px // 2 + 1, world.shape[0] - tile_px // 2 - 1, (n, 2))
    tiles = np.stack([world[r - tile_px // 2:r + tile_px // 2, c - tile_px // 2:c + tile_px // 2] for r, c in centres])
    ground = pp.polar_transform(tiles[:, 8:-8, 8:-8], (cfg.ground_hw[0] * 2, cfg.ground_hw[1] * 2))
    ground = pp.resize_batch(ground, cfg.ground_hw).astype(np.float32)
    ground = ground * rng.uniform(0.7, 1.2, (n, 1, 1, 1)) + rng.normal(0, 12, ground.shape)
    ground = np.clip(ground, 0, 255).astype(np.uint8)
    aerial = preprocess_aerial(tiles, cfg)
    return PairArrays(ground, aerial, en=centres[:, ::-1].astype(np.float64) * 0.5,
                      group=np.full(n, seed, np.int64), name=f"toy{seed}")


@pytest.fixture(scope="session")
def tiny_cfg() -> ModelConfig:
    return ModelConfig(backbone="vit_micro", bits=64, ground_hw=HW, aerial_hw=HW, aerial_preprocess="polar",
                       polar_src_px=64, share_weights=False, pool_maps=4, pool_dim=0)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_cfg):
    """A tiny model trained for a few seconds on toy pairs: (checkpoint path, exported sidecar, test pairs)."""
    from geoloc_node.model.export import export_model
    from geoloc_node.model.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    tr = toy_pairs(1, 512, tiny_cfg)
    te = toy_pairs(2, 200, tiny_cfg)
    tcfg = TrainConfig(epochs=5, batch=64, lr=3e-3, out_dir=str(out), progress=False, threads=1, eval_every=100,
                       hard_negative_frac=0.0, same_place_m=0.0, heading_noise_deg=0.0)
    last = train(tiny_cfg, tcfg, tr, te, log=lambda s: None)
    sidecar = export_model(last, out / "export", "tiny", precision="fp32", keep_checkpoint=False)
    return last, sidecar, te
