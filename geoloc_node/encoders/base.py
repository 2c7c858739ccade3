"""The encoder interface: uint8 images in, packed binary codes out, whatever runs the network underneath.

A backend implements only :meth:`Encoder._run` (float32 NCHW in [0, 1] -> float32 embeddings); validation, resizing,
panorama alignment, the aerial view (:class:`.preprocess.AerialView`), batching and sign-packing live here, once.
"""

from __future__ import annotations

import functools

import numpy as np

from ..codes import pack_signs
from . import preprocess as pp
from .spec import ModelFileError, ModelSpec, sha256_file


class Encoder:
    """One branch of a cross-view hashing model behind a runtime backend.

    Attributes: ``bits``, ``mode`` ('panorama' | 'pinhole'), ``branch`` ('ground' | 'aerial'), ``input_hw``,
    ``backend``, ``fingerprint`` (sha256 of this branch's ONNX), ``aerial_fingerprint`` (the paired aerial branch's:
    the region table must carry it), ``hfov_deg`` (pinhole models).
    """

    backend = "base"
    #: images per call of the runtime; larger batches are split (bounded memory, steady latency)
    max_batch = 64

    def __init__(self, spec: ModelSpec, branch: str = "ground", verify: bool = True):
        self.spec = spec
        self.branch = branch
        self._bs = spec.branch(branch)
        onnx_path = spec.onnx_path(branch)
        if verify and onnx_path.exists():
            actual = sha256_file(onnx_path)
            if actual != self._bs.sha256:
                raise ModelFileError(onnx_path, f"sha256 {actual[:16]}... differs from the sidecar's "
                                                f"{self._bs.sha256[:16]}...; the file changed after export")

    # -- description -----------------------------------------------------------------------------------------------
    @property
    def bits(self) -> int:
        return self.spec.bits

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def input_hw(self) -> tuple[int, int]:
        return self._bs.input_hw

    @property
    def hfov_deg(self) -> float | None:
        return self.spec.hfov_deg

    @property
    def heading_bins(self) -> int:
        """Codes per region-table tile this model was trained for (1 for a panorama model)."""
        return self.spec.heading_bins

    @property
    def fingerprint(self) -> str:
        return self._bs.sha256

    @property
    def ground_fingerprint(self) -> str:
        return self.spec.ground.sha256

    @property
    def aerial_fingerprint(self) -> str:
        return self.spec.aerial.sha256

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.spec.name!r}, branch={self.branch}, mode={self.mode}, bits={self.bits}, "
                f"input={self.input_hw[0]}x{self.input_hw[1]}, fingerprint={self.fingerprint[:12]})")

    # -- preprocessing -------------------------------------------------------------------------------------------------
    def preprocess(self, images, headings_deg=None) -> np.ndarray:
        """uint8 images -> float32 NCHW network input (see :meth:`encode`)."""
        batch = pp.as_rgb_batch(images, f"{self.branch} images")
        n = len(batch)
        if headings_deg is not None:
            headings_deg = np.broadcast_to(np.asarray(headings_deg, dtype=np.float64), (n,))
            if not np.isfinite(headings_deg).all():
                raise ValueError("headings must be finite degrees")
        if self.branch == "ground":
            x = pp.resize_batch(batch, self.input_hw)
            if self.mode == "panorama" and headings_deg is not None:
                x = np.stack([pp.align_panorama(im, h, self.spec.ground_col0_offset_deg)
                              for im, h in zip(x, headings_deg)])
            return pp.to_nchw_float(x)
        # aerial
        return pp.to_nchw_float(self.aerial_view(batch, headings_deg))
        return pp.to_nchw_float(x)

    @functools.cached_property
    def aerial_view(self) -> pp.AerialView:
        """How this model turns an aerial tile into its aerial branch's input (from the sidecar)."""
        bs = self.spec.aerial
        return pp.AerialView(kind=bs.preprocess, input_hw=bs.input_hw,
                             hfov_deg=self.spec.hfov_deg if self.mode == "pinhole" else None,
                             polar_src_px=bs.polar_src_px, polar_hw=bs.polar_hw, tile_size_m=bs.tile_size_m,
                             camera_height_m=bs.camera_height_m, ceiling_m=bs.ceiling_m)

    # -- inference ---------------------------------------------------------------------------------------------------
    def embed(self, images, headings_deg=None) -> np.ndarray:
        """Real-valued embeddings (float32 [B, bits]) whose signs are the code."""
        x = self.preprocess(images, headings_deg)
        return self.embed_preprocessed(x)

    def embed_preprocessed(self, x: np.ndarray) -> np.ndarray:
        outs = [self._run(np.ascontiguousarray(x[i:i + self.max_batch])) for i in range(0, len(x), self.max_batch)]
        out = np.concatenate(outs, axis=0).astype(np.float32, copy=False)
        if out.shape != (len(x), self.bits):
            raise RuntimeError(f"{self.backend} backend returned shape {out.shape}, expected ({len(x)}, {self.bits})")
        return out

    def encode(self, images, headings_deg=None) -> np.ndarray:
        """Packed codes, uint8 [B, bits/8], of uint8 RGB images (H x W x 3 or B x H x W x 3, any size: resized).

        Ground panoramas are expected north-aligned; give ``headings_deg`` (the vehicle's compass heading per image) to
        have them rolled into alignment. For a pinhole model's aerial branch ``headings_deg`` picks the sector.
        """
        return pack_signs(self.embed(images, headings_deg))

    def encode_tiles(self, tiles, heading_bins: int | None = None) -> np.ndarray:
        """Aerial tiles -> uint8 [B, heading_bins, bits/8]: one code per heading bin (bin b centred on b*360/bins;
        default: the model's own :attr:`heading_bins`)."""
        if self.branch != "aerial":
            raise ValueError("encode_tiles is for the aerial branch; load it with branch='aerial'")
        heading_bins = self.heading_bins if heading_bins is None else int(heading_bins)
        if heading_bins < 1:
            raise ValueError("heading_bins must be >= 1")
        if self.mode == "panorama":
            if heading_bins != 1:
                raise ValueError("a panorama model takes heading_bins=1 (its code covers every heading)")
            return self.encode(tiles)[:, None, :]
        batch = pp.as_rgb_batch(tiles, "aerial tiles")
        out = np.empty((len(batch), heading_bins, self.bits // 8), np.uint8)
        for b in range(heading_bins):
            x = pp.to_nchw_float(self.aerial_view(batch, b * 360.0 / heading_bins))
            out[:, b] = pack_signs(self.embed_preprocessed(x))
        return out

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the runtime (sessions, GPU memory). Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
