"""Model tests: a tiny model trained in seconds beats chance; ONNX export agrees with torch; encoder interface."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from geoloc_node.codes import hamming, pack_signs  # noqa: E402
from geoloc_node.encoders import ImageInputError, ModelFileError, load_encoder  # noqa: E402
from geoloc_node.encoders.preprocess import to_nchw_float  # noqa: E402
from geoloc_node.model.evaluate import retrieval_metrics  # noqa: E402
from geoloc_node.model.export import load_checkpoint  # noqa: E402
from geoloc_node.model.net import CrossViewHasher, ModelConfig, hash_loss  # noqa: E402
from geoloc_node.model.train import embed_arrays  # noqa: E402


def test_tiny_model_beats_chance(trained):
    last, _, te = trained
    model, _ = load_checkpoint(last)
    zg, za = embed_arrays(model, te)
    m = retrieval_metrics(zg, za, te.en)
    chance = m["chance_R@1"]
    assert m["hamming"]["R@1"] > 20 * chance, m["hamming"]
    assert m["hamming"]["R@10"] > 0.5, m["hamming"]


def test_onnx_parity_with_torch(trained):
    last, sidecar, te = trained
    model, _ = load_checkpoint(last)
    zg_t, za_t = embed_arrays(model, te)
    ge = load_encoder(sidecar, backend="onnxruntime")
    ae = load_encoder(sidecar, backend="onnxruntime", branch="aerial")
    cg = ge.embed_preprocessed(to_nchw_float(te.ground))
    ca = ae.embed_preprocessed(to_nchw_float(te.aerial))
    bits = ge.bits * len(te)
    agree_g = 1 - hamming(pack_signs(cg), pack_signs(zg_t)).sum() / bits
    agree_a = 1 - hamming(pack_signs(ca), pack_signs(za_t)).sum() / bits
    assert agree_g >= 0.995 and agree_a >= 0.995, (agree_g, agree_a)


def test_torch_backend_matches(trained):
    last, sidecar, te = trained
    ort_enc = load_encoder(sidecar, backend="onnxruntime")
    t_enc = load_encoder(sidecar, backend="torch", checkpoint=last)
    a = ort_enc.encode(te.ground[:16])
    b = t_enc.encode(te.ground[:16])
    assert (hamming(a, b).sum() / (16 * ort_enc.bits)) < 0.005


def test_fp16_and_int8_exports_agree(trained, tmp_path):
    from geoloc_node.model.export import export_model

    last, sidecar, te = trained
    ref = load_encoder(sidecar).encode(te.ground[:64])
    for prec, need in (("fp16-weights", 0.99), ("int8", 0.9)):
        sc = export_model(last, tmp_path / prec, "tiny", precision=prec)
        codes = load_encoder(sc).encode(te.ground[:64])
        agree = 1 - hamming(codes, ref).sum() / (64 * 64)
        assert agree >= need, (prec, agree)


def test_encoder_interface(trained):
    _, sidecar, te = trained
    enc = load_encoder(sidecar, backend="auto")
    assert enc.bits == 64 and enc.mode == "panorama" and enc.input_hw == (32, 128)
    assert enc.fingerprint != enc.aerial_fingerprint and len(enc.aerial_fingerprint) == 64
    one = enc.encode(te.ground[0])
    assert one.shape == (1, 8) and one.dtype == np.uint8
    big = np.repeat(np.repeat(te.ground[:2], 2, axis=1), 2, axis=2)  # other size: resized
    assert enc.encode(big).shape == (2, 8)
    gray = te.ground[0, :, :, 0]
    assert enc.encode(gray).shape == (1, 8)
    rgba = np.concatenate([te.ground[:1], np.full((1, 32, 128, 1), 255, np.uint8)], axis=-1)
    assert np.array_equal(enc.encode(rgba), enc.encode(te.ground[:1]))
    with pytest.raises(ImageInputError, match="uint8"):
        enc.encode(te.ground[:1].astype(np.float32))
    with pytest.raises(ImageInputError, match="channels"):
        enc.encode(np.zeros((1, 32, 128, 5), np.uint8))
    # a known heading rolls the panorama north-aligned: heading h with the left edge at h equals rolling by h
    rolled = enc.encode(te.ground[:1], headings_deg=90.0)
    assert rolled.shape == (1, 8)
    enc.close()


def test_sidecar_and_onnx_resolution(trained, tmp_path):
    _, sidecar, _ = trained
    spec = json.loads(sidecar.read_text())
    aerial_onnx = sidecar.parent / spec["aerial"]["onnx"]
    enc = load_encoder(aerial_onnx)
    assert enc.branch == "aerial" and enc.fingerprint == spec["aerial"]["sha256"]
    with pytest.raises(ModelFileError, match="no such file"):
        load_encoder(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelFileError, match="bad.json"):
        load_encoder(bad)


def test_tampered_onnx_is_refused(trained, tmp_path):
    import shutil

    _, sidecar, _ = trained
    d = tmp_path / "m"
    shutil.copytree(sidecar.parent, d)
    spec = json.loads((d / sidecar.name).read_text())
    g = d / spec["ground"]["onnx"]
    g.write_bytes(g.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="changed after export"):
        load_encoder(d / sidecar.name)


def test_loss_and_model_shapes():
    cfg = ModelConfig(backbone="vit_micro", bits=128, ground_hw=(32, 128), aerial_hw=(32, 128))
    m = CrossViewHasher(cfg)
    g, a = m(torch.rand(4, 3, 32, 128), torch.rand(4, 3, 32, 128))
    assert g.shape == (4, 128) and a.shape == (4, 128)
    loss, parts = hash_loss(g, a, torch.tensor(2.0))
    loss.backward()
    assert set(parts) == {"nce", "quant", "balance"}
    with pytest.raises(ValueError):
        ModelConfig(bits=100)
    with pytest.raises(ValueError, match="hfov"):
        ModelConfig(mode="pinhole")


def test_timm_backbone_by_name():
    cfg = ModelConfig(backbone="resnet18", bits=64, ground_hw=(64, 64), aerial_hw=(64, 64),
                      aerial_preprocess="raw", share_weights=True)
    m = CrossViewHasher(cfg)
    assert m.ground.backbone is m.aerial.backbone
    assert m.ground(torch.rand(2, 3, 64, 64)).shape == (2, 64)


def test_projective_model_exports_its_preprocessing(tmp_path):
    """A ground-plane-projection model: the runtime encoder draws exactly the aerial input training drew, and a
    region table must be cut at the model's tile size."""
    from geoloc_node.encoders.preprocess import to_nchw_float
    from geoloc_node.model.data import preprocess_aerial
    from geoloc_node.model.export import export_model
    from geoloc_node.table_builder import TableBuildError, build_table_from_tiles

    cfg = ModelConfig(backbone="vit_hybrid_pano", bits=64, ground_hw=(32, 128), aerial_hw=(32, 128),
                      aerial_preprocess="projective", share_weights=True, pool_maps=0, pool_dim=16, tile_size_m=40.0)
    model = CrossViewHasher(cfg)
    assert model.ground.backbone is model.aerial.backbone
    ck = tmp_path / "m.pt"
    torch.save({"model_config": cfg.to_dict(), "model": model.state_dict()}, ck)
    sidecar = export_model(ck, tmp_path, "proj", precision="fp32")
    enc = load_encoder(sidecar, "onnxruntime", branch="aerial")
    assert enc.aerial_view == cfg.aerial_view()
    tiles = np.random.default_rng(0).integers(0, 256, (3, 80, 80, 3), dtype=np.uint8)
    assert np.array_equal(enc.preprocess(tiles), to_nchw_float(preprocess_aerial(tiles, cfg)))
    import cv2

    (tmp_path / "tiles").mkdir()
    cv2.imwrite(str(tmp_path / "tiles" / "a.png"), tiles[0])
    (tmp_path / "tiles.csv").write_text("file,lat,lon\na.png,47.0,8.0\n")
    with pytest.raises(TableBuildError, match="40 m tiles"):
        build_table_from_tiles(tmp_path / "tiles", tmp_path / "tiles.csv", sidecar, tmp_path / "t.gltab",
                               tile_size_m=50.0, progress=False, backend="onnxruntime")
    out = build_table_from_tiles(tmp_path / "tiles", tmp_path / "tiles.csv", sidecar, tmp_path / "t.gltab",
                                 tile_size_m=40.0, progress=False, backend="onnxruntime")
    assert out.exists()


def test_flatten_head_keeps_every_position():
    from geoloc_node.model.net import SpatialHashHead

    head = SpatialHashHead(tokens=6, dim=8, bits=64, maps=0, proj_dim=4)
    assert head.pos_weights is None and head.fc.in_features == 6 * 4
    x = torch.rand(2, 6, 8)
    y = x.clone()
    y[:, [0, 1]] = y[:, [1, 0]]  # the same features at other positions give another code
    assert not torch.allclose(head(x), head(y))
