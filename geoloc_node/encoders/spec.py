"""The model sidecar: a JSON file next to the two ONNX branches that says how to feed them and what they produce.

Example (``geoloc_node/models/synth_pano256.json``)::

    {"format": "geoloc-model", "format_version": 1, "name": "synth_pano256", "bits": 256, "mode": "panorama",
     "hfov_deg": null, "heading_bins": 1,
     "ground": {"onnx": "synth_pano256.ground.onnx", "sha256": "...", "input_hw": [64, 256]},
     "aerial": {"onnx": "synth_pano256.aerial.onnx", "sha256": "...", "input_hw": [64, 256],
                "preprocess": "polar", "polar_src_px": 128, "polar_hw": [64, 256]},
     (a "projective" aerial branch has "tile_size_m", "camera_height_m" and "ceiling_m" instead of the polar keys)
     "ground_col0_offset_deg": 0.0, "precision": "fp16-weights", "checkpoint": null, "metrics": {...}}

Both ONNX graphs take ``image``: float32 ``B x 3 x H x W`` RGB in [0, 1] (normalised inside the graph) and give
``embedding``: float32 ``B x bits``; the code is its sign. A branch's *fingerprint* is the sha256 of its
ONNX file; a region table stores the aerial branch's fingerprint and refuses a ground branch from another model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..codes import check_bits
from ..errors import GeolocError

FORMAT = "geoloc-model"
FORMAT_VERSION = 1
MODES = ("panorama", "pinhole")
BRANCHES = ("ground", "aerial")


class ModelFileError(GeolocError):
    """A model file (sidecar, ONNX, engine, checkpoint) is missing, corrupt or does not match its sidecar."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"model file {self.path}: {problem}")


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


@dataclass(frozen=True)
class BranchSpec:
    """How to feed one branch."""

    onnx: str  # file name, relative to the sidecar
    sha256: str
    input_hw: tuple[int, int]
    preprocess: str = "resize"  # "resize" (ground, raw aerial) | "polar" | "projective" (aerial)
    polar_src_px: int = 128  # aerial tile resized to this square before the polar transform
    polar_hw: tuple[int, int] | None = None  # full 360-degree polar image (pinhole crops a sector of it)
    tile_size_m: float = 50.0  # projective: the ground size of an aerial tile (a region table must use the same)
    camera_height_m: float = 2.0  # projective: the ground camera's height above the road
    ceiling_m: float = 6.0  # projective: height above the camera of the plane rows above the horizon are drawn on


@dataclass(frozen=True)
class ModelSpec:
    """A parsed sidecar. ``path`` is the sidecar's own path (file names inside are relative to its folder)."""

    path: Path
    name: str
    bits: int
    mode: str
    ground: BranchSpec
    aerial: BranchSpec
    hfov_deg: float | None = None
    heading_bins: int = 1  # codes per region-table tile the model was trained for (pinhole: bin b at b*360/bins)
    ground_col0_offset_deg: float = 0.0
    precision: str = "fp32"
    checkpoint: str | None = None
    extra: dict = field(default_factory=dict)

    def branch(self, name: str) -> BranchSpec:
        if name not in BRANCHES:
            raise ValueError(f"branch must be one of {BRANCHES}, got {name!r}")
        return getattr(self, name)

    def onnx_path(self, branch: str) -> Path:
        return self.path.parent / self.branch(branch).onnx

    def checkpoint_path(self) -> Path | None:
        return None if not self.checkpoint else self.path.parent / self.checkpoint

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the ground branch (as recorded at export)."""
        return self.ground.sha256

    @property
    def aerial_fingerprint(self) -> str:
        return self.aerial.sha256


PREPROCESSINGS = ("resize", "polar", "projective")


def _branch(d: dict, where: Path, name: str) -> BranchSpec:
    if d.get("preprocess", "resize") not in PREPROCESSINGS:
        raise ModelFileError(where, f"branch {name!r}: preprocess {d.get('preprocess')!r} is not one of "
                                    f"{PREPROCESSINGS} (a newer model format?)")
    try:
        polar_hw = d.get("polar_hw")
        return BranchSpec(onnx=str(d["onnx"]), sha256=str(d["sha256"]), input_hw=tuple(int(v) for v in d["input_hw"]),
                          preprocess=str(d.get("preprocess", "resize")), polar_src_px=int(d.get("polar_src_px", 128)),
                          polar_hw=None if polar_hw is None else tuple(int(v) for v in polar_hw),
                          tile_size_m=float(d.get("tile_size_m", 50.0)),
                          camera_height_m=float(d.get("camera_height_m", 2.0)),
                          ceiling_m=float(d.get("ceiling_m", 6.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(where, f"branch {name!r} is incomplete or invalid ({exc!r})") from None


def read_spec(path) -> ModelSpec:
    """Read and validate a sidecar JSON (raises :class:`ModelFileError` naming the file)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(path, f"not a readable JSON sidecar ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ModelFileError(path, f"not a geoloc model sidecar (expected \"format\": \"{FORMAT}\")")
    if int(d.get("format_version", -1)) != FORMAT_VERSION:
        raise ModelFileError(path, f"sidecar format version {d.get('format_version')}, this build reads "
                                   f"{FORMAT_VERSION}")
    try:
        bits = check_bits(int(d["bits"]))
        mode = str(d["mode"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(path, f"invalid bits/mode ({exc})") from None
    if mode not in MODES:
        raise ModelFileError(path, f"mode {mode!r} is not one of {MODES}")
    hfov = d.get("hfov_deg")
    if mode == "pinhole" and not hfov:
        raise ModelFileError(path, "a pinhole model needs hfov_deg")
    try:  # sidecars older than the key: a panorama has 1 bin, a pinhole model 8 (the default then)
        bins = int(d.get("heading_bins", 1 if mode == "panorama" else 8))
    except (TypeError, ValueError):
        bins = 0
    if bins < 1 or (mode == "panorama" and bins != 1):
        raise ModelFileError(path, f"heading_bins {d.get('heading_bins')!r} is invalid for a {mode} model")
    known = {"format", "format_version", "name", "bits", "mode", "hfov_deg", "heading_bins", "ground", "aerial",
             "ground_col0_offset_deg", "precision", "checkpoint"}
    return ModelSpec(path=path, name=str(d.get("name", path.stem)), bits=bits, mode=mode,
                     ground=_branch(d.get("ground") or {}, path, "ground"),
                     aerial=_branch(d.get("aerial") or {}, path, "aerial"),
                     hfov_deg=None if hfov is None else float(hfov), heading_bins=bins,
                     ground_col0_offset_deg=float(d.get("ground_col0_offset_deg", 0.0)),
                     precision=str(d.get("precision", "fp32")), checkpoint=d.get("checkpoint"),
                     extra={k: v for k, v in d.items() if k not in known})


def find_spec(path) -> tuple[ModelSpec, str]:
    """Resolve a sidecar JSON or one branch's ONNX file to (spec, branch).

    An ONNX file is matched to the sidecar in its folder that names it; a JSON resolves to its ground branch.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "no such file")
    if path.suffix == ".json":
        return read_spec(path), "ground"
    if path.suffix != ".onnx":
        raise ModelFileError(path, "expected a model sidecar (.json) or a branch ONNX file (.onnx)")
    for cand in sorted(path.parent.glob("*.json")):
        try:
            spec = read_spec(cand)
        except ModelFileError:
            continue
        for b in BRANCHES:
            if spec.branch(b).onnx == path.name:
                return spec, b
    raise ModelFileError(path, "no sidecar JSON in its folder names this ONNX file; export writes one next to it")


def write_spec(path, d: dict) -> Path:
    """Write a sidecar dict atomically."""
    path = Path(path)
    d = {"format": FORMAT, "format_version": FORMAT_VERSION, **d}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(d, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
