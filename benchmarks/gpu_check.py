"""The GPU check (``scripts/gpu_check.sh``): what only a machine with an NVIDIA GPU can tell us, in one run.

    scripts/gpu_check.sh [--frames 1000] [--budget-s 420] [--cache-dir DIR]    # prints one JSON object

For every shipped model (``geoloc_node/models/*.json``) and branch (ground, aerial):

* builds the FP16 TensorRT engine through the runtime's own TensorRT encoder (``geoloc_node.encoders.trt``: the same
  build and the same cache key as on the vehicle; a fresh cache folder unless ``--cache-dir``, so the build is timed);
* encodes the same inputs with TensorRT and with ONNX Runtime on the CPU (synthetic test-world views, seed 99, made
  exactly as training and evaluation make them) and reports the share of code bits that agree (target >= 99.5 %);
* times batch-1 latency over ``--frames`` frames (median and p99, host arrays in and out, as the node calls it) for
  TensorRT FP16, ONNX Runtime CUDA (when the installed onnxruntime has that provider) and ONNX Runtime CPU;

then runs 50 training steps of the shipped panorama network on the GPU (``geoloc_node.model.train``, AMP as
``geoloc train`` uses it). Without tensorrt, torch with CUDA or a GPU it exits with status 2 and one line saying
which is missing. Exit status 1 when a branch's bit agreement is below 99.5 % or a stage failed; 0 otherwise.
Everything but the JSON goes to stderr. ``--budget-s`` skips what would run past it (the script must stay under 8
minutes; each skip is named in the JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARITY_TARGET = 0.995
TRAIN_STEPS = 50


def log(msg: str) -> None:
    print(f"gpu_check: {msg}", file=sys.stderr, flush=True)


def missing_requirement() -> str | None:
    """Why this machine cannot run the check (one line), or None."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt Python package is not installed (pip install tensorrt, or JetPack on a Jetson)"
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install -e '.[train]'): TensorRT buffers and the training steps need it"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
    return None


def latency_ms(run, x: np.ndarray, frames: int) -> dict:
    """Batch-1 latency of ``run`` over ``frames`` calls, after 20 warm-up calls."""
    for i in range(20):
        run(x[i % len(x):i % len(x) + 1])
    times = []
    for i in range(frames):
        one = x[i % len(x):i % len(x) + 1]
        t = time.perf_counter()
        run(one)
        times.append((time.perf_counter() - t) * 1000.0)
    return {"median_ms": round(statistics.median(times), 3), "p99_ms": round(float(np.percentile(times, 99)), 3),
            "frames": frames}


def test_inputs(sidecar: Path, n: int):
    """(model config, {'ground': float NCHW, 'aerial': float NCHW}) from the unseen test world, as evaluation does."""
    from geoloc_node.encoders import read_spec
    from geoloc_node.encoders.preprocess import to_nchw_float
    from geoloc_node.model.data import synth_pairs
    from geoloc_node.model.net import ModelConfig

    cfg = ModelConfig.from_dict(read_spec(sidecar).extra["model_config"])
    pairs = synth_pairs(99, n, cfg, world_size_m=700.0)
    return cfg, pairs, {"ground": to_nchw_float(pairs.ground), "aerial": to_nchw_float(pairs.aerial)}


def check_branch(sidecar: Path, branch: str, x: np.ndarray, frames: int, cache_dir: Path, budget) -> dict:
    from geoloc_node.codes import pack_signs
    from geoloc_node.encoders import load_encoder

    out: dict = {}
    t = time.perf_counter()
    trt = load_encoder(sidecar, "tensorrt", branch=branch, precision="fp16", cache_dir=cache_dir)
    out["tensorrt_build_s"] = round(time.perf_counter() - t, 1)
    out["engine"] = str(trt.engine_path)
    cpu = load_encoder(sidecar, "onnxruntime", branch=branch, threads=2)
    ref, got = pack_signs(cpu.embed_preprocessed(x)), pack_signs(trt.embed_preprocessed(x))
    agree = 1.0 - float(np.unpackbits(ref ^ got).mean())
    out["bit_agreement_tensorrt_fp16_vs_onnxruntime_cpu"] = round(agree, 5)
    out["codes_compared"] = len(x)
    out["parity_ok"] = agree >= PARITY_TARGET
    latency = {}
    for name, enc in (("tensorrt_fp16", trt), ("onnxruntime_cpu", cpu)):
        if budget() < 20:
            latency[name] = "skipped: time budget spent"
            continue
        latency[name] = latency_ms(enc.embed_preprocessed, x, frames)
    if budget() < 20:
        latency["onnxruntime_cuda"] = "skipped: time budget spent"
    else:
        try:
            cuda = load_encoder(sidecar, "onnxruntime", branch=branch, device="cuda")
            latency["onnxruntime_cuda"] = latency_ms(cuda.embed_preprocessed, x, frames)
            cuda.close()
        except RuntimeError as exc:  # an onnxruntime without the CUDA provider (pip onnxruntime, not -gpu)
            latency["onnxruntime_cuda"] = f"unavailable: {exc}"
    out["latency_batch1"] = latency
    trt.close()
    cpu.close()
    return out


def training_steps(cfg, pairs, out_dir: Path) -> dict:
    """``TRAIN_STEPS`` optimiser steps of the shipped network on the GPU through the real training loop."""
    import torch

    from geoloc_node.model.train import TrainConfig, _amp_dtype, train

    batch = max(2, len(pairs) // 5)  # 5 steps an epoch, 10 epochs: exactly TRAIN_STEPS
    tcfg = TrainConfig(epochs=TRAIN_STEPS // 5, batch=batch, out_dir=str(out_dir), progress=False, log_every=1,
                       eval_every=10_000, threads=2)
    torch.cuda.synchronize()
    t = time.perf_counter()
    train(cfg, tcfg, pairs, None, resume=False, log=lambda s: None)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    losses = [json.loads(line)["loss"] for line in (out_dir / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    dtype = _amp_dtype(tcfg.amp, "cuda")
    return {"steps": len(losses), "batch": batch, "seconds_incl_checkpoints": round(seconds, 1),
            "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
            "losses_finite": bool(np.isfinite(losses).all()),
            "amp": str(dtype).replace("torch.", "") if dtype else "off",
            "gpu": torch.cuda.get_device_name(0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1000, help="batch-1 frames per latency measurement")
    ap.add_argument("--pairs", type=int, default=128, help="test-world views compared per branch")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip what would run past this many seconds")
    ap.add_argument("--cache-dir", default=None, help="TensorRT engine cache (default: a fresh temporary folder)")
    ap.add_argument("--models", nargs="*", default=None, help="sidecars (default: every shipped model)")
    args = ap.parse_args(argv)
    reason = missing_requirement()
    if reason:
        print(f"gpu_check: cannot run: {reason}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()

    def budget() -> float:
        return args.budget_s - (time.perf_counter() - t0)

    import tensorrt
    import torch

    from geoloc_node.encoders.trt import gpu_name

    shipped = sorted((ROOT / "geoloc_node" / "models").glob("*.json"))
    sidecars = [Path(m) for m in args.models] if args.models else shipped
    report: dict = {"gpu": gpu_name(), "tensorrt": tensorrt.__version__, "torch": torch.__version__,
                    "cuda": torch.version.cuda, "parity_target": PARITY_TARGET, "models": {}}
    try:
        import onnxruntime

        report["onnxruntime"] = onnxruntime.__version__
        report["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        report["onnxruntime"] = None
    failed = False
    train_input = None
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache_dir) if args.cache_dir else Path(tmp) / "engines"
        for sidecar in sidecars:
            name = sidecar.stem
            if budget() < 60:
                report["models"][name] = "skipped: time budget spent"
                continue
            log(f"{name}: rendering {args.pairs} test-world views")
            try:
                cfg, pairs, inputs = test_inputs(sidecar, args.pairs)
                if train_input is None and cfg.mode == "panorama":
                    train_input = (cfg, pairs)
                report["models"][name] = {}
                for branch in ("ground", "aerial"):
                    if budget() < 45:
                        report["models"][name][branch] = "skipped: time budget spent"
                        continue
                    log(f"{name} {branch}: TensorRT FP16 engine, parity, latency")
                    res = check_branch(sidecar, branch, inputs[branch], args.frames, cache, budget)
                    failed |= not res["parity_ok"]
                    report["models"][name][branch] = res
            except Exception as exc:  # noqa: BLE001 - one model's failure is reported, the rest still run
                failed = True
                report["models"][name] = f"failed: {type(exc).__name__}: {exc}"
        if train_input is None:
            report["training"] = "skipped: no panorama model among the sidecars"
        elif budget() < 30:
            report["training"] = "skipped: time budget spent"
        else:
            log(f"{TRAIN_STEPS} training steps on the GPU")
            try:
                report["training"] = training_steps(*train_input, Path(tmp) / "train")
                failed |= not report["training"]["losses_finite"]
            except Exception as exc:  # noqa: BLE001
                failed = True
                report["training"] = f"failed: {type(exc).__name__}: {exc}"
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["ok"] = not failed
    print(json.dumps(report, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
