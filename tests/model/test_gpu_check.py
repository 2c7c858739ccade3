"""scripts/gpu_check.sh on a machine without what it needs: a non-zero exit and one line that says what is missing.

The GPU stages themselves cannot run here (no GPU); the pieces that do not need one are checked below.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _run(env_extra: dict) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHON": sys.executable, **env_extra}
    return subprocess.run([str(SCRIPT), "--frames", "10"], capture_output=True, text=True, env=env, timeout=120)


def _has_gpu_stack() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(_has_gpu_stack(), reason="this machine can run the GPU check for real")
def test_without_tensorrt_it_says_so_in_one_line(tmp_path):
    # hide any tensorrt the interpreter might find, so the check fails on it first
    (tmp_path / "tensorrt.py").write_text("raise ImportError('hidden by the test')\n")
    res = _run({"PYTHONPATH": str(tmp_path)})
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "tensorrt Python package is not installed" in lines[0], res.stderr


@pytest.mark.skipif(_has_gpu_stack(), reason="this machine can run the GPU check for real")
def test_with_tensorrt_but_no_gpu_it_says_so_in_one_line(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "tensorrt.py").write_text("__version__ = '0.0-stand-in'\n")  # importable, so the GPU test comes next
    res = _run({"PYTHONPATH": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""})
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "sees no CUDA GPU" in lines[0], res.stderr


def test_inputs_and_latency_helpers():
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    cfg, pairs, inputs = gpu_check.test_inputs(ROOT / "geoloc_node" / "models" / "synth_pano256.json", 3)
    assert inputs["ground"].shape == (3, 3, *cfg.ground_hw) and inputs["aerial"].shape == (3, 3, *cfg.aerial_hw)
    assert inputs["ground"].dtype == np.float32 and 0.0 <= inputs["ground"].min() and inputs["ground"].max() <= 1.0
    calls = []
    stats = gpu_check.latency_ms(lambda x: calls.append(len(x)), inputs["ground"], frames=30)
    assert set(calls) == {1} and len(calls) == 50 and stats["frames"] == 30  # 20 warm-up + 30 timed, batch 1
    assert 0 <= stats["median_ms"] <= stats["p99_ms"]
