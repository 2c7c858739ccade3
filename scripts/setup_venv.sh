#!/usr/bin/env bash
# Create (or reuse) the project-local virtual environment .venv and install geoloc_node into it.
# Usage: scripts/setup_venv.sh [EXTRAS]     e.g. scripts/setup_venv.sh dev,train,ros
# Needs only Python >= 3.10 and the package registries. Re-running is cheap: nothing is reinstalled while setup.py and
# the extras are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "geoloc_node needs Python >= 3.10 ($python is $("$python" --version 2>&1 || echo missing))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$python" -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    # Debian/Ubuntu ship venv separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      "$python" -m venv .venv
    else
      echo "python3 -m venv failed: install the venv module first (sudo apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
fi

stamp=".venv/.geoloc-installed"
want="$(cat setup.py | sha256sum | cut -c1-16) extras=[$extras]"
if [ ! -f "$stamp" ] || ! grep -qxF -- "$want" "$stamp"; then
  .venv/bin/python -m pip install -q --upgrade pip
  if [ -n "$extras" ]; then spec=".[$extras]"; else spec="."; fi
  .venv/bin/python -m pip install -q -e "$spec"
  echo "$want" >> "$stamp"
fi
