"""Pipeline.from_config: an empty model.path means the shipped model, as in the node."""

from __future__ import annotations

import pytest
from fakes import FakeOracleEncoder

import geoloc_node.encoders as encoders
from geoloc_node.config import GeolocConfig
from geoloc_node.models import shipped_model_path
from geoloc_node.pipeline import Pipeline


@pytest.mark.parametrize("path", ["", "  "])
def test_empty_model_path_loads_the_shipped_model(world, table, monkeypatch, path):
    calls = []

    def fake_load_encoder(model, backend="auto", **kwargs):
        calls.append((model, backend))
        return FakeOracleEncoder(world)  # pairs with the fake table

    monkeypatch.setattr(encoders, "load_encoder", fake_load_encoder)
    cfg = GeolocConfig.from_flat({"model.path": path, "model.backend": "onnx", "table.path": str(table.path)})
    p = Pipeline.from_config(cfg)
    assert p.encoder is not None
    assert calls == [(str(shipped_model_path()), "onnxruntime")]  # never load_encoder(None); 'onnx' as the node maps it


def test_given_model_path_is_used(world, table, monkeypatch):
    calls = []
    monkeypatch.setattr(encoders, "load_encoder", lambda m, b="auto", **kw: calls.append(m) or FakeOracleEncoder(world))
    Pipeline.from_config(GeolocConfig.from_flat({"model.path": "/x/model.json", "table.path": str(table.path)}))
    assert calls == ["/x/model.json"]


def test_empty_model_path_real_shipped_encoder(tmp_path):
    """No fakes on the encoder side: the shipped model loads with ONNX Runtime and pairs with a table made for it."""
    pytest.importorskip("onnxruntime")
    import numpy as np

    from geoloc_node.encoders.spec import find_spec
    from geoloc_node.table import write_table

    spec, _ = find_spec(shipped_model_path())
    bits = spec.bits
    lat, lon = np.array([47.0, 47.0001]), np.array([8.0, 8.0])
    tab = write_table(tmp_path / "t.gltab", np.zeros((2, bits // 8), np.uint8), lat, lon, bits=bits,
                      tile_size_m=50.0, stride_m=10.0, encoder_fingerprint=spec.aerial_fingerprint)
    p = Pipeline.from_config(GeolocConfig.from_flat({"model.path": "", "model.backend": "onnx",
                                                      "table.path": str(tab)}))
    assert p.encoder.aerial_fingerprint == spec.aerial_fingerprint
