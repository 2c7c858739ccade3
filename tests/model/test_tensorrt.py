"""TensorRT backend: needs an NVIDIA GPU and the tensorrt package; skipped cleanly otherwise."""

import pytest

from geoloc_node.encoders import available_backends


def test_cache_key_changes_with_inputs():
    from geoloc_node.encoders.trt import cache_key

    k = cache_key("a" * 64, "fp16", 64, "10.0", "Orin")
    assert k != cache_key("b" * 64, "fp16", 64, "10.0", "Orin")
    assert k != cache_key("a" * 64, "fp16", 64, "10.1", "Orin")
    assert k != cache_key("a" * 64, "fp16", 64, "10.0", "H100")
    assert k != cache_key("a" * 64, "int8", 64, "10.0", "Orin")


@pytest.mark.gpu
def test_tensorrt_parity(trained, tmp_path):
    if "tensorrt" not in available_backends():
        pytest.skip("no TensorRT / NVIDIA GPU on this machine")
    from geoloc_node.codes import hamming
    from geoloc_node.encoders import load_encoder

    _, sidecar, te = trained
    ref = load_encoder(sidecar, backend="onnxruntime").encode(te.ground[:64])
    enc = load_encoder(sidecar, backend="tensorrt", cache_dir=tmp_path, precision="fp32")
    assert enc.engine_path.exists()
    got = enc.encode(te.ground[:64])
    assert 1 - hamming(ref, got).sum() / ref.size / 8 >= 0.995
