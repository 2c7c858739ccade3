#!/usr/bin/env bash
# Install everything the tests need into .venv, lint, and run the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh dev,train,ros
.venv/bin/ruff check .
# pytest exits 5 when it collects no test: set -e turns that into a failure too.
.venv/bin/python -m pytest "$@"
