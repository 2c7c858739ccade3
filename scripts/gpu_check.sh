#!/usr/bin/env bash
# The GPU check: TensorRT FP16 engines of the shipped models (built by the runtime's own TensorRT encoder, cached as
# on the vehicle), bit agreement with ONNX Runtime CPU, batch-1 latency of TensorRT / ONNX Runtime CUDA / CPU, and 50
# training steps on the GPU. Prints one JSON object; details in benchmarks/gpu_check.py and docs/model.md.
#
#   scripts/gpu_check.sh [--frames 1000] [--cache-dir DIR] > gpu_check.json
#
# Needs an NVIDIA GPU, torch with CUDA and the tensorrt package (onnxruntime-gpu for the ONNX Runtime CUDA row);
# without them it exits with status 2 and one line saying what is missing. PYTHON picks the interpreter (default:
# the project's .venv, else python3). A hard limit of 8 minutes backs the script's own 7-minute budget.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec timeout --kill-after=10 480 "$PYTHON" benchmarks/gpu_check.py "$@"
