"""The shipped models: ONNX branches plus their sidecar JSON, small enough to live in the repository.

``shipped_model_path()`` is the panorama model the demo and the node use by default; ``shipped_model_path("pinhole")``
the 90-degree pinhole variant when it is shipped. Reproduce them with the command in docs/model.md.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent

#: mode -> sidecar file name
SHIPPED = {"panorama": "synth_pano256.json", "pinhole": "synth_pin90_256.json"}


def shipped_model_path(mode: str = "panorama") -> Path:
    """Path of the shipped model's sidecar JSON (give it to ``load_encoder`` or ``build_table_from_geotiff``)."""
    if mode not in SHIPPED:
        raise ValueError(f"mode must be one of {tuple(SHIPPED)}, got {mode!r}")
    path = MODELS_DIR / SHIPPED[mode]
    if not path.exists():
        raise FileNotFoundError(f"no shipped {mode} model at {path}; train and export one (see docs/model.md)")
    return path
