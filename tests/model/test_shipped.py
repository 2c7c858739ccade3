"""The shipped model: present, small, loadable without torch, and consistent with its sidecar."""

import json

import numpy as np
import pytest

from geoloc_node.encoders import load_encoder
from geoloc_node.models import SHIPPED, shipped_model_path


def _shipped(mode):
    try:
        return shipped_model_path(mode)
    except FileNotFoundError:
        pytest.skip(f"no shipped {mode} model")


@pytest.mark.parametrize("mode", sorted(SHIPPED))
def test_shipped_model_loads_and_encodes(mode):
    path = _shipped(mode)
    spec = json.loads(path.read_text())
    assert spec["bits"] == 256 and spec["mode"] == mode
    for b in ("ground", "aerial"):
        assert (path.parent / spec[b]["onnx"]).stat().st_size <= 6_000_000
    enc = load_encoder(path, backend="onnxruntime")
    frame = np.random.default_rng(0).integers(0, 256, (128, 512, 3), dtype=np.uint8)
    codes = enc.encode(frame, headings_deg=30.0)
    assert codes.shape == (1, 32) and codes.dtype == np.uint8
    aerial = load_encoder(path, backend="onnxruntime", branch="aerial")
    assert aerial.fingerprint == enc.aerial_fingerprint
    bins = aerial.heading_bins
    assert (bins == 1) == (mode == "panorama")
    tiles = aerial.encode_tiles(np.zeros((2, 100, 100, 3), np.uint8))
    assert tiles.shape == (2, bins, 32)


def test_shipped_models_fit_the_budget():
    from geoloc_node.models import MODELS_DIR

    total = sum(p.stat().st_size for p in MODELS_DIR.glob("*.onnx"))
    assert total <= 10_000_000
