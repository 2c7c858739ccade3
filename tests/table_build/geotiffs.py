"""Real GeoTIFFs for the build tests, written with rasterio: projected CRSs, nodata, textures that differ by place."""

from __future__ import annotations

import numpy as np


def texture(seed: int, h: int, w: int) -> np.ndarray:
    """A smooth random colour field with blobs (uint8 H x W x 3): places differ, as in an orthophoto."""
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    for _ in range(h * w // 2000):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(3, 12)), c, -1)
    return img


def write_geotiff(path, crs: str, west: float, north: float, gsd: float, img: np.ndarray, nodata: int | None = None):
    """``img`` (H x W x 3 uint8) as a north-up GeoTIFF whose north-west corner is (west, north) in ``crs``."""
    import rasterio
    from rasterio.transform import from_origin

    h, w = img.shape[:2]
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs=crs,
                       transform=from_origin(west, north, gsd, gsd), nodata=nodata, tiled=True, blockxsize=256,
                       blockysize=256) as dst:
        dst.write(np.moveaxis(img, 2, 0))
    return path
