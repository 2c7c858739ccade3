#!/usr/bin/env bash
# Reproduce the shipped models in geoloc_node/models from scratch: `scripts/train_shipped_models.sh [panorama|pinhole|all]`.
# Each model is two `geoloc train` runs (stage 2 starts from stage 1's best at half the learning rate; see
# docs/model.md for why and for the measured numbers); the second exports into geoloc_node/models. Needs the `train`
# extra (`pip install -e '.[train]'`). Idle 2-core VM, THREADS=2, empty cache: panorama 25.5 min, pinhole 31.1 min
# (measured, see docs/model.md).
# Rendered training pairs are cached in runs/cache; checkpoints resume from last.pt when a run is interrupted.
# Environment: THREADS (torch threads and rendering processes, default 1), GEOLOC (the CLI), and, to reproduce
# beside the shipped files instead of over them, RUNS (run folders, default runs), CACHE (default runs/cache) and
# EXPORT_DIR (default geoloc_node/models).
set -euo pipefail
cd "$(dirname "$0")/.."
GEOLOC=${GEOLOC:-.venv/bin/geoloc}
THREADS=${THREADS:-1}
RUNS=${RUNS:-runs}
CACHE=${CACHE:-runs/cache}
EXPORT_DIR=${EXPORT_DIR:-geoloc_node/models}
which=${1:-all}
net=(--backbone vit_hybrid_slim_pano)  # the 32-channel stem's default network trains 1.2-2x slower (docs/model.md)
data=(--data synth --seeds 1-8 --pairs-per-world 2000 --val-seed 98 --val-pairs 500 --tile-jitter-m 5
      --batch 64 --threads "$THREADS" --cache-dir "$CACHE")
pinhole=(--mode pinhole --hfov-deg 90 --ground-hw 96x128 --aerial-hw 96x128 --heading-bins 24)

case "$which" in panorama|pinhole|all) ;; *) echo "usage: $0 [panorama|pinhole|all]" >&2; exit 2 ;; esac

if [[ $which == panorama || $which == all ]]; then
  "$GEOLOC" train "${data[@]}" "${net[@]}" --epochs 6 --lr 1e-3 --out-dir "$RUNS/pano_final"
  "$GEOLOC" train "${data[@]}" "${net[@]}" --epochs 6 --lr 5e-4 --seed 1 --init "$RUNS/pano_final/best.pt" \
    --out-dir "$RUNS/pano_cont" --export-name synth_pano256 --export-dir "$EXPORT_DIR"
fi
if [[ $which == pinhole || $which == all ]]; then
  "$GEOLOC" train "${data[@]}" "${net[@]}" "${pinhole[@]}" --epochs 7 --lr 1e-3 --out-dir "$RUNS/pin43"
  "$GEOLOC" train "${data[@]}" "${net[@]}" "${pinhole[@]}" --epochs 12 --lr 5e-4 --seed 1 --init "$RUNS/pin43/best.pt" \
    --out-dir "$RUNS/pin_cont" --export-name synth_pin90_256 --export-dir "$EXPORT_DIR"
fi
