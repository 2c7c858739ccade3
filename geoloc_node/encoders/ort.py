"""ONNX Runtime backend: CPU everywhere, CUDA where the installed onnxruntime has it."""

from __future__ import annotations

import numpy as np

from .base import Encoder
from .spec import ModelFileError, ModelSpec


class OrtEncoder(Encoder):
    backend = "onnxruntime"

    def __init__(self, spec: ModelSpec, branch: str = "ground", threads: int = 2, device: str = "cpu",
                 verify: bool = True, spin: bool = False):
        super().__init__(spec, branch, verify=verify)
        import onnxruntime as ort

        path = spec.onnx_path(branch)
        if not path.exists():
            raise ModelFileError(path, "no such file (named by the sidecar)")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:  # busy-waiting threads hurt when the CPU is shared with the rest of the vehicle's stack
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("device='cuda' asked but this onnxruntime has no CUDAExecutionProvider")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._sess = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelFileError(path, f"onnxruntime cannot load it ({exc})") from None
        self._in = self._sess.get_inputs()[0].name
        self._out = self._sess.get_outputs()[0].name
        self.device = device

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run([self._out], {self._in: x})[0]

    def close(self) -> None:
        self._sess = None
