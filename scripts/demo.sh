#!/usr/bin/env bash
# The main job: set up .venv (runtime only: no torch, no ROS) and run the end-to-end demo. Extra arguments go to
# `geoloc demo` (see `geoloc demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
exec .venv/bin/geoloc demo "$@"
