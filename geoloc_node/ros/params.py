"""The node's parameters: the core's ``GeolocConfig`` (dotted names, e.g. ``health.max_horizontal_std_m``) plus the
node-only settings of :class:`NodeConfig` (topics, QoS, frames, publish policy, rate, resources).

Both are declared from the dataclasses themselves, so the node can never drift from the core: a field added to a
component's config becomes a ROS parameter, with its documentation as the descriptor's description, and
``config/geoloc.yaml`` is checked against the declared set by a test.

When a parameter takes effect:

* ``live``      - applied to the next message (publish policy, frame ids, max rate);
* ``configure`` - the pipeline is built from it in ``on_configure``: a change is accepted only while the node is
  unconfigured (``cleanup``, set it, ``configure`` again), otherwise refused with that explanation;
* read-only     - the descriptor is ``read_only``: set it at start-up (YAML or ``--ros-args -p``) and restart.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

IMAGE_TRANSPORTS = ("raw", "compressed")
PUBLISH_POLICIES = ("fallback_only", "always")
ENCODER_BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


def _p(default, doc: str, *, when: str = "live", lo=None, hi=None, choices=None):
    """A NodeConfig field with its ROS descriptor data (doc, range, choices, when it takes effect)."""
    return field(default=default, metadata={"doc": doc, "when": when, "range": (lo, hi), "choices": choices})


@dataclass(frozen=True)
class NodeConfig:
    """Settings that only the ROS node has (the algorithm's settings live in ``geoloc_node.config.GeolocConfig``)."""

    # --- inputs
    image_topic: str = _p("/camera/image_raw", "camera image topic (base name: with image_transport 'compressed' the "
                          "node subscribes to <image_topic>/compressed)", when="read_only")
    image_transport: str = _p("raw", "'raw' (sensor_msgs/Image) or 'compressed' (sensor_msgs/CompressedImage: JPEG, "
                              "PNG)",
                              when="read_only", choices=IMAGE_TRANSPORTS)
    camera_info_topic: str = _p("/camera/camera_info", "sensor_msgs/CameraInfo of the camera (checked against the "
                                "image size, reported in diagnostics)", when="read_only")
    gps_topic: str = _p("/gps/fix", "GNSS receiver sensor_msgs/NavSatFix watched by the GPS health monitor",
                        when="read_only")
    odom_topic: str = _p("/odom", "nav_msgs/Odometry (wheel or visual-inertial) that the tracking filter predicts with",
                         when="read_only")
    odom_frame_id: str = _p("", "expected header.frame_id of the odometry ('': the frame of the first message); "
                            "messages in another frame (a second source on the topic) are dropped and counted")
    # --- outputs
    map_frame_id: str = _p("map", "frame of ~/pose and ~/markers: the ENU tangent plane at the region table's origin "
                           "(x east, y north, metres)")
    fix_frame_id: str = _p("base_link", "header.frame_id of ~/fix (the frame whose position is estimated; "
                           "navsat_transform uses it for the sensor offset)")
    publish_policy: str = _p("fallback_only", "'fallback_only': ~/fix and ~/pose only while the fallback is engaged "
                             "(GPS unhealthy); 'always': every estimate", choices=PUBLISH_POLICIES)
    altitude_variance_m2: float = _p(1.0e4, "variance (m^2) given to the altitude of ~/fix and z of ~/pose: the "
                                     "fallback estimates only east/north; the altitude is the last GPS one",
                                     lo=0.0, hi=1.0e12)
    unknown_variance: float = _p(1.0e6, "variance given to pose components that are not estimated (roll, pitch, and "
                                 "yaw when the estimate has none): large, never -1, so robot_localization accepts it",
                                 lo=1.0, hi=1.0e12)
    trail_length: int = _p(300, "points kept in the GPS and estimate trails of ~/markers", lo=2, hi=100000)
    markers_rate_hz: float = _p(2.0, "rate of ~/markers (the latest estimate's top-k tiles, ellipse and trails), "
                                "published by a timer off the inference thread: building a MarkerArray for every "
                                "estimate cost as much CPU as encoding the frame, and RViz needs no more",
                                lo=0.1, hi=50.0, when="read_only")
    diagnostics_period_s: float = _p(1.0, "period of /diagnostics, published in every lifecycle state", lo=0.05,
                                     hi=60.0, when="read_only")
    # --- resources (the model and table paths and the backend are the core's model.* and table.* parameters)
    encoder_threads: int = _p(2, "CPU threads of the ONNX Runtime / torch encoder (the vehicle's other nodes need the "
                              "rest)", when="configure", lo=1, hi=64)
    engine_cache_dir: str = _p("", "where TensorRT engines built from the ONNX are cached (a volume in docker; '' = "
                               "$GEOLOC_ENGINE_CACHE, else the backend's default)", when="configure")
    autostart: bool = _p(False, "configure and activate right after start-up (the launch file's autostart argument)",
                         when="read_only")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            lo, hi = f.metadata.get("range", (None, None))
            choices = f.metadata.get("choices")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
            if lo is not None and value < lo or hi is not None and value > hi:
                raise ValueError(f"{f.name}={value!r} is outside [{lo}, {hi}]")
            if choices and value not in choices:
                raise ValueError(f"{f.name}={value!r}: expected one of {', '.join(choices)}")
        for name in ("image_topic", "camera_info_topic", "gps_topic", "odom_topic", "map_frame_id", "fix_frame_id"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")

    @property
    def subscribed_image_topic(self) -> str:
        return self.image_topic + ("/compressed" if self.image_transport == "compressed" else "")


# ----------------------------------------------------------------------------------------------- parameter specs


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: name, default, documentation and constraints."""

    name: str
    default: Any
    doc: str
    when: str = "live"  # live | configure | read_only
    lo: float | int | None = None
    hi: float | int | None = None
    choices: tuple | None = None
    core: bool = False  # a GeolocConfig field


def _field_docs(cls) -> dict[str, str]:
    """``#:`` comments above the fields of a dataclass (the Sphinx convention the core uses), or metadata['doc']."""
    docs = {}
    for f in dataclasses.fields(cls):
        for key in ("doc", "help", "description"):
            if key in f.metadata:
                docs[f.name] = str(f.metadata[key])
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return docs
    lines = src.splitlines()
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return docs
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id not in docs:
            comments, i = [], node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#:"):
                comments.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            if not comments:  # a trailing comment on the same line
                line = lines[node.lineno - 1]
                if "#" in line:
                    comments = [line.split("#", 1)[1].strip()]
            if comments:
                docs[node.target.id] = " ".join(comments)
    return docs


def _core_config_class():
    try:
        from geoloc_node.config import GeolocConfig
    except ImportError:  # the core config has not landed in this checkout: only the node's own parameters
        return None
    return GeolocConfig


def _core_specs() -> list[ParamSpec]:
    """A spec per GeolocConfig field, named as in ``GeolocConfig.to_flat()``, documented from the ``#:`` comments.

    Every core number is a duration, distance, fraction, count or seed: its range is [0, large]."""
    cls = _core_config_class()
    if cls is None:
        return []
    from geoloc_node import config as core

    flat = cls().to_flat()
    docs = core.parameter_docs() if hasattr(core, "parameter_docs") else {}
    specs = []
    for name, value in flat.items():
        if value is None:
            continue  # no ROS parameter type for None: the core's default stays
        if isinstance(value, tuple):
            value = list(value)
        lo, hi = None, None
        if isinstance(value, float):
            lo, hi = 0.0, 1.0e9
        elif isinstance(value, int) and not isinstance(value, bool):
            lo, hi = 0, 2**31 - 1
        specs.append(ParamSpec(name=name, default=value, doc=docs.get(name, f"GeolocConfig.{name}"),
                               when="configure", lo=lo, hi=hi, core=True))
    return specs


def _node_specs() -> list[ParamSpec]:
    specs = []
    for f in dataclasses.fields(NodeConfig):
        lo, hi = f.metadata["range"]
        specs.append(ParamSpec(name=f.name, default=f.default, doc=f.metadata["doc"], when=f.metadata["when"],
                               lo=lo, hi=hi, choices=f.metadata["choices"]))
    return specs


def param_specs() -> list[ParamSpec]:
    """Every parameter the node declares: the core's first, then the node's; names are unique."""
    specs = _core_specs()
    core_names = {s.name for s in specs}
    return specs + [s for s in _node_specs() if s.name not in core_names]


def build_configs(values: dict[str, Any]):
    """(GeolocConfig or None, NodeConfig) from flat parameter values; raises ValueError/TypeError if invalid."""
    node_names = {f.name for f in dataclasses.fields(NodeConfig)}
    node_cfg = NodeConfig(**{k: v for k, v in values.items() if k in node_names})
    cls = _core_config_class()
    core_cfg = None
    if cls is not None:
        core_cfg = cls.from_flat({k: (tuple(v) if isinstance(v, list) else v)
                                  for k, v in values.items() if k not in node_names})
    return core_cfg, node_cfg


# ---------------------------------------------------------------------------------------------------- YAML file


def _yaml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        # YAML 1.1 (PyYAML, and libyaml as ROS reads parameter files) needs a dot in the mantissa: 5.0e-05, not 5e-05
        mantissa, e, exponent = repr(v).partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        return mantissa + (f"e{exponent}" if e else "")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '""' if v == "" else '"' + v.replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_value(x) for x in v) + "]"
    raise TypeError(f"no YAML form for {v!r}")


_WHEN_NOTE = {"live": "", "configure": " [applied on configure]", "read_only": " [read-only: restart to change]"}


def render_yaml(values: dict[str, Any] | None = None) -> str:
    """``config/geoloc.yaml``: every parameter with its documentation, grouped by component (nested keys)."""
    values = values or {}
    out = ["# geoloc_node parameters. Load with: ros2 launch geoloc_node geoloc.launch.py params_file:=<this file>",
           "# or: ros2 run geoloc_node geoloc_node --ros-args --params-file <this file>",
           "# Types are strict: write floats with a decimal point (10.0, not 10).",
           "# The sections (health, tracking, pipeline, model, table) are the core's GeolocConfig: applied on",
           "# configure, never negative. [applied on configure]: change while unconfigured (cleanup, set, configure).",
           "# [read-only: restart to change]: set here or with -p at start-up.",
           "/**:", "  ros__parameters:"]
    current_group: tuple[str, ...] = ()
    for spec in param_specs():
        parts = spec.name.split(".")
        group, leaf = tuple(parts[:-1]), parts[-1]
        if group != current_group:
            common = 0
            while common < min(len(group), len(current_group)) and group[common] == current_group[common]:
                common += 1
            for depth in range(common, len(group)):
                out.append("")
                out.append("    " + "  " * depth + f"{group[depth]}:")
            current_group = group
        indent = "    " + "  " * len(group)
        doc = spec.doc + ("" if spec.core else _WHEN_NOTE[spec.when])
        if spec.choices:
            doc += f" (one of: {', '.join(spec.choices)})"
        elif not spec.core and (spec.lo is not None or spec.hi is not None):
            doc += f" (range {spec.lo} .. {spec.hi})"
        if not group:
            out.append("")
        for line in textwrap.wrap(doc, width=116 - len(indent)):
            out.append(f"{indent}# {line}")
        out.append(f"{indent}{leaf}: {_yaml_value(values.get(spec.name, spec.default))}")
    return "\n".join(out) + "\n"
