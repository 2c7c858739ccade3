"""torch backend: runs the training checkpoint directly (for evaluation and debugging; deployment uses ONNX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Encoder
from .spec import ModelFileError, ModelSpec


class TorchEncoder(Encoder):
    backend = "torch"

    def __init__(self, spec: ModelSpec, branch: str = "ground", threads: int = 2, device: str = "cpu",
                 checkpoint=None, model=None, verify: bool = True):
        super().__init__(spec, branch, verify=verify)
        import torch

        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        if model is None:
            ck = Path(checkpoint) if checkpoint else spec.checkpoint_path()
            if ck is None:
                raise ModelFileError(spec.path, "the torch backend needs the training checkpoint: the sidecar names "
                                                "none; pass checkpoint=PATH or use backend='onnxruntime'")
            from ..model.export import load_checkpoint

            model, _ = load_checkpoint(ck)
        self._net = getattr(model, branch).to(device).eval()
        self.device = device

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self._net(self._torch.from_numpy(x).to(self.device)).float().cpu().numpy()

    def close(self) -> None:
        self._net = None
