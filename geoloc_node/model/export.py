"""Export a trained checkpoint to two ONNX branches (opset 17, dynamic batch) plus the sidecar JSON.

Precisions (``--precision``):

* ``fp32``: as trained;
* ``fp16-weights`` (default for shipping): weights stored as float16 and cast to float32 by a ``Cast`` node that ONNX
  Runtime folds at load time: half the file, fp32 arithmetic (ONNX Runtime's CPU kernels are fp32), codes unchanged
  within rounding;
* ``int8``: ONNX Runtime dynamic quantisation of the MatMul/Gemm weights (about a quarter of the file, faster on CPU;
  the benchmark measures how many bits it flips).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..encoders.spec import sha256_file, write_spec
from .net import CrossViewHasher, ModelConfig

OPSET = 17
PRECISIONS = ("fp32", "fp16-weights", "int8")


def load_checkpoint(path, map_location="cpu") -> tuple[CrossViewHasher, dict]:
    """Model (eval mode) and the checkpoint dict from a file written by training."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    ck = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ck, dict) or "model_config" not in ck or "model" not in ck:
        raise ValueError(f"checkpoint {path}: not a geoloc training checkpoint (no model_config/model)")
    cfg = ModelConfig.from_dict(ck["model_config"])
    cfg.pretrained_path = None
    model = CrossViewHasher(cfg)
    model.load_state_dict(ck["model"])
    return model.eval(), ck


def export_branch(module: torch.nn.Module, hw: tuple[int, int], out: Path, precision: str = "fp32") -> Path:
    """One branch -> ONNX file (input ``image`` float32 [B,3,H,W] in [0,1], output ``embedding`` [B,bits])."""
    import warnings

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp.onnx")
    x = torch.rand(2, 3, *hw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), str(tmp), input_names=["image"], output_names=["embedding"],
                          opset_version=OPSET, dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
                          dynamo=False, do_constant_folding=True)
    if precision == "fp16-weights":
        _fp16_weights(tmp)
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = out.with_name(out.name + ".q.onnx")
        quantize_dynamic(str(tmp), str(q), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        q.replace(tmp)
    elif precision != "fp32":
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    tmp.replace(out)
    return out


def _fp16_weights(path: Path, min_elements: int = 256) -> None:
    """Store large float32 initialisers as float16 with a Cast back to float32 (folded by ONNX Runtime at load)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    new_inits, casts = [], []
    for init in g.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and int(np.prod(init.dims)) >= min_elements:
            arr = numpy_helper.to_array(init).astype(np.float16)
            half = numpy_helper.from_array(arr, init.name + "__fp16")
            new_inits.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                          name=init.name + "__cast"))
        else:
            new_inits.append(init)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def export_model(checkpoint, out_dir, name: str | None = None, precision: str = "fp16-weights",
                 metrics: dict | None = None, keep_checkpoint: bool = False) -> Path:
    """Checkpoint -> `<name>.ground.onnx`, `<name>.aerial.onnx`, `<name>.json` in `out_dir`; returns the JSON."""
    model, ck = load_checkpoint(checkpoint)
    cfg: ModelConfig = model.cfg
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or Path(checkpoint).stem
    paths = {}
    for branch, hw in (("ground", cfg.ground_hw), ("aerial", cfg.aerial_hw)):
        paths[branch] = export_branch(getattr(model, branch), hw, out_dir / f"{name}.{branch}.onnx", precision)
    view = cfg.aerial_view()
    aerial = {"onnx": paths["aerial"].name, "sha256": sha256_file(paths["aerial"]), "input_hw": list(cfg.aerial_hw),
              "preprocess": view.kind}
    if view.kind == "polar":
        aerial.update(polar_src_px=cfg.polar_src_px, polar_hw=list(cfg.polar_hw or cfg.aerial_hw))
    elif view.kind == "projective":
        aerial.update(tile_size_m=cfg.tile_size_m, camera_height_m=cfg.camera_height_m, ceiling_m=cfg.ceiling_m)
    ground = {"onnx": paths["ground"].name, "sha256": sha256_file(paths["ground"]), "input_hw": list(cfg.ground_hw)}
    ckpt_rel = None
    if keep_checkpoint:
        ckpt_rel = Path(checkpoint).name
    d = {"name": name, "bits": cfg.bits, "mode": cfg.mode, "hfov_deg": cfg.hfov_deg,
         "heading_bins": cfg.table_heading_bins,
         "ground": ground, "aerial": aerial, "ground_col0_offset_deg": 0.0, "precision": precision,
         "checkpoint": ckpt_rel,
         "input": "image: float32 [B,3,H,W] RGB in [0,1] (normalised inside the graph); output embedding [B,bits], "
                  "code = sign; " + _ground_input_note(cfg),
         "model_config": cfg.to_dict(), "params": {"ground": model.n_params("ground"),
                                                    "aerial": model.n_params("aerial")},
         "training": ck.get("train_config", {}), "trained_steps": ck.get("step"),
         "metrics": metrics or ck.get("metrics") or {}}
    return write_spec(out_dir / f"{name}.json", json.loads(json.dumps(d, default=str)))


def _ground_input_note(cfg) -> str:
    if cfg.mode == "pinhole":
        return (f"ground: a pinhole image, {cfg.hfov_deg:g} degrees horizontal field of view, at a known heading; "
                f"aerial: the tile seen from each of the table's {cfg.table_heading_bins} heading bins")
    return "ground panoramas north-aligned (column j at azimuth 360*(j+0.5)/W)"
