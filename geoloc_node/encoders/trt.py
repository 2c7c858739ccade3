"""TensorRT backend (Jetson and other NVIDIA GPUs): builds an engine from the branch's ONNX once and caches it.

The cache key is TensorRT version + GPU name + ONNX sha256 + precision + batch profile: an engine is only valid for the
TensorRT build and GPU it was made on, so any difference rebuilds it. ``tensorrt`` is imported only here, and lazily;
device buffers come from torch (CUDA) when it is installed, else from cuda-python.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .base import Encoder
from .spec import ModelFileError, ModelSpec

PRECISIONS = ("fp16", "fp32", "int8")


def default_cache_dir() -> Path:
    return Path(os.environ.get("GEOLOC_ENGINE_CACHE", Path.home() / ".cache" / "geoloc_node" / "engines"))


def _trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError("the TensorRT backend needs the tensorrt Python package (JetPack, or pip install "
                           "tensorrt on an x86 machine with an NVIDIA GPU)") from exc
    return trt


def gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime as cudart  # cuda-python

        err, prop = cudart.cudaGetDeviceProperties(0)
        return prop.name.decode().strip("\0")
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable GPU
        raise RuntimeError(f"no CUDA GPU found for TensorRT ({exc})") from None


def cache_key(onnx_sha256: str, precision: str, max_batch: int, trt_version: str, gpu: str) -> str:
    raw = json.dumps({"trt": trt_version, "gpu": gpu, "onnx": onnx_sha256, "precision": precision,
                      "max_batch": max_batch}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def build_engine(onnx_path, precision: str = "fp16", max_batch: int = 64, opt_batch: int = 1,
                 calibration: np.ndarray | None = None, workspace_mb: int = 1024, onnx_sha256: str | None = None,
                 cache_dir=None, force: bool = False, log=print) -> Path:
    """Build (or find in the cache) a serialized engine for ``onnx_path``; returns the engine file.

    ``calibration``: float32 [N, 3, H, W] preprocessed inputs for INT8 entropy calibration (needed for int8).
    """
    trt = _trt()
    from .spec import sha256_file

    onnx_path = Path(onnx_path)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    sha = onnx_sha256 or sha256_file(onnx_path)
    gpu = gpu_name()
    key = cache_key(sha, precision, max_batch, trt.__version__, gpu)
    cache = Path(cache_dir or default_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    engine_path = cache / f"{onnx_path.stem}.{precision}.{key}.engine"
    meta_path = engine_path.with_suffix(".json")
    if engine_path.exists() and meta_path.exists() and not force:
        return engine_path
    log(f"building TensorRT {trt.__version__} {precision} engine for {onnx_path.name} on {gpu} (minutes) ...")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # explicit batch: the only mode (flag 0) in TensorRT 10, a flag in TensorRT 8 (JetPack 5)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(onnx_path, f"TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    inp = network.get_input(0)
    c, h, w = inp.shape[1], inp.shape[2], inp.shape[3]
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1, c, h, w), (opt_batch, c, h, w), (max_batch, c, h, w))
    config.add_optimization_profile(profile)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 needs calibration images (preprocessed float32 [N,3,H,W])")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers that int8 cannot take fall back to fp16
        config.set_calibration_profile(profile)
        config.int8_calibrator = _calibrator(trt, calibration, cache / f"{engine_path.stem}.calib")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path}")
    tmp = engine_path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(serialized)
    tmp.replace(engine_path)
    meta_path.write_text(json.dumps({"onnx": str(onnx_path), "onnx_sha256": sha, "trt_version": trt.__version__,
                                     "gpu": gpu, "precision": precision, "max_batch": max_batch}, indent=1))
    return engine_path


def _calibrator(trt, data: np.ndarray, cache_file: Path):
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.data = np.ascontiguousarray(data, dtype=np.float32)
            self.batch = min(16, len(self.data))
            self.i = 0
            self.buf = torch.empty((self.batch, *self.data.shape[1:]), dtype=torch.float32, device="cuda")

        def get_batch_size(self):
            return self.batch

        def get_batch(self, names):
            if self.i + self.batch > len(self.data):
                return None
            self.buf.copy_(torch.from_numpy(self.data[self.i:self.i + self.batch]))
            self.i += self.batch
            return [int(self.buf.data_ptr())]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.exists() else None

        def write_calibration_cache(self, cache):
            cache_file.write_bytes(bytes(cache))

    return Calibrator()


class TensorRTEncoder(Encoder):
    backend = "tensorrt"

    def __init__(self, spec: ModelSpec, branch: str = "ground", precision: str = "fp16", max_batch: int = 64,
                 cache_dir=None, engine_path=None, verify: bool = True, **_ignored):
        super().__init__(spec, branch, verify=verify)
        trt = _trt()
        import torch  # device buffers and the CUDA stream

        self._torch = torch
        if engine_path is None:
            engine_path = build_engine(spec.onnx_path(branch), precision=precision, max_batch=max_batch,
                                       onnx_sha256=spec.branch(branch).sha256, cache_dir=cache_dir)
        self.engine_path = Path(engine_path)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise ModelFileError(self.engine_path, "TensorRT cannot deserialize it (other TensorRT version or GPU?)")
        self._ctx = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._in = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._out = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.max_batch = max_batch
        self._stream = torch.cuda.Stream()
        self.precision = precision

    def _run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        xin = torch.from_numpy(x).cuda(non_blocking=False)
        self._ctx.set_input_shape(self._in, tuple(x.shape))
        out = torch.empty((x.shape[0], self.bits), dtype=torch.float32, device="cuda")
        self._ctx.set_tensor_address(self._in, int(xin.data_ptr()))
        self._ctx.set_tensor_address(self._out, int(out.data_ptr()))
        if not self._ctx.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        self._stream.synchronize()
        return out.cpu().numpy()

    def close(self) -> None:
        self._ctx = None
        self._engine = None
        self._runtime = None
