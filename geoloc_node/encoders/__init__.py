"""Encoder backends: one interface (uint8 images in, packed codes out) over TensorRT, ONNX Runtime and torch.

    from geoloc_node.encoders import load_encoder
    enc = load_encoder("geoloc_node/models/synth_pano256.json")        # ground branch, best backend available
    codes = enc.encode(frames)                                          # uint8 [B, bits/8]
    aerial = load_encoder(path, branch="aerial", backend="onnxruntime")  # what build-table uses

Runtimes are imported lazily inside their backend: importing this package costs numpy and OpenCV only.
"""

from __future__ import annotations

import importlib.util

from ..config import ENCODER_BACKENDS as BACKENDS
from ..config import backend_name
from .base import Encoder
from .preprocess import ImageInputError, align_panorama, polar_transform
from .spec import ModelFileError, ModelSpec, find_spec, read_spec

__all__ = ["BACKENDS", "Encoder", "ImageInputError", "ModelFileError", "ModelSpec", "align_panorama",
           "available_backends", "find_spec", "load_encoder", "polar_transform", "read_spec"]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    """An NVIDIA GPU usable by TensorRT (checked through the CUDA driver, without importing torch)."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if lib.cuInit(0) != 0:
            return False
        count = ctypes.c_int(0)
        return lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    return False


def available_backends() -> list[str]:
    """Backends that can run on this machine, best first."""
    out = []
    if _has("tensorrt") and _cuda_available():
        out.append("tensorrt")
    if _has("onnxruntime"):
        out.append("onnxruntime")
    if _has("torch") and _has("timm"):
        out.append("torch")
    return out


def load_encoder(path, backend: str = "auto", branch: str | None = None, threads: int = 2, **kwargs) -> Encoder:
    """Open one branch of a model: ``path`` is its sidecar JSON (ground branch unless ``branch``) or a branch ONNX.

    ``backend``: 'auto' (TensorRT on an NVIDIA GPU, else ONNX Runtime, else torch), 'tensorrt', 'onnxruntime' (or
    'onnx') or 'torch'. ``threads``: CPU threads of ONNX Runtime / torch. Other keyword arguments go to the backend
    (e.g. ``device='cuda'`` for ONNX Runtime, ``cache_dir``/``precision`` for TensorRT).
    """
    backend = backend_name(backend)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    spec, found_branch = find_spec(path)
    branch = branch or found_branch
    if backend == "auto":
        avail = available_backends()
        if not avail:
            raise RuntimeError("no encoder backend available: install onnxruntime (pip install onnxruntime)")
        backend = avail[0]
    if backend == "onnxruntime":
        from .ort import OrtEncoder

        return OrtEncoder(spec, branch, threads=threads, **kwargs)
    if backend == "tensorrt":
        from .trt import TensorRTEncoder

        return TensorRTEncoder(spec, branch, **kwargs)
    from .torch_backend import TorchEncoder

    return TorchEncoder(spec, branch, threads=threads, **kwargs)
