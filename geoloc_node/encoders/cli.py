"""``geoloc build-engine``: build (or find cached) TensorRT engines for a model's branches."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("build-engine", help="build a TensorRT engine from an ONNX model (cached)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="model sidecar JSON (both branches) or one branch's ONNX file")
    p.add_argument("--branch", choices=["ground", "aerial", "both"], default="both")
    p.add_argument("--precision", choices=["fp16", "fp32", "int8"], default="fp16")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--cache-dir", default=None, help="engine cache (default ~/.cache/geoloc_node/engines or "
                                                     "$GEOLOC_ENGINE_CACHE)")
    p.add_argument("--calib-images", default=None,
                   help="int8: folder of images of this branch's view (jpg/png) for calibration")
    p.add_argument("--force", action="store_true", help="rebuild even when a cached engine matches")
    p.set_defaults(func=run)


def _calibration(enc, folder: Path):
    import cv2
    import numpy as np

    files = sorted([*folder.glob("*.jpg"), *folder.glob("*.png")])[:512]
    if not files:
        raise SystemExit(f"geoloc build-engine: no .jpg/.png images in {folder}")
    ims = [cv2.imread(str(f), cv2.IMREAD_COLOR)[:, :, ::-1] for f in files]
    return np.concatenate([enc.preprocess(im) for im in ims])


def run(args) -> int:
    from .spec import ModelFileError, find_spec
    from .trt import build_engine

    try:
        spec, branch = find_spec(args.model)
    except ModelFileError as exc:
        print(f"geoloc build-engine: {exc}", file=sys.stderr)
        return 2
    if args.precision == "int8" and not args.calib_images:
        print("geoloc build-engine: --precision int8 needs --calib-images FOLDER", file=sys.stderr)
        return 2
    branches = ["ground", "aerial"] if args.branch == "both" and Path(args.model).suffix == ".json" else \
        [branch if args.branch == "both" else args.branch]
    try:
        for b in branches:
            calib = None
            if args.precision == "int8":
                from .ort import OrtEncoder

                calib = _calibration(OrtEncoder(spec, b), Path(args.calib_images))
            path = build_engine(spec.onnx_path(b), precision=args.precision, max_batch=args.max_batch,
                                calibration=calib, onnx_sha256=spec.branch(b).sha256, cache_dir=args.cache_dir,
                                force=args.force)
            print(f"{b}: {path}")
    except (RuntimeError, ModelFileError, ValueError) as exc:
        print(f"geoloc build-engine: {exc}", file=sys.stderr)
        return 2
    return 0
