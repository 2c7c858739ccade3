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

import dataclasses
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

from geoloc_node.config import BACKEND_ALIASES, ENCODER_BACKENDS, PUBLISH_POLICIES

IMAGE_TRANSPORTS = ("raw", "compressed")


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
        for name in ("image_topic", "camera_info_topic", "gps_topic", "odom_topic"):
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


#: When core parameters take effect (default: on configure): the output session reads its section live; the
#: diagnostics timer is made at start-up.
CORE_WHEN = {"output": "live", "output.diagnostics_period_s": "read_only"}
#: Core parameters with a fixed set of values.
CORE_CHOICES = {"output.publish_policy": PUBLISH_POLICIES, "model.backend": (*ENCODER_BACKENDS, *BACKEND_ALIASES)}


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
        section, field_name = name.split(".", 1)
        ranges = getattr(cls.__dataclass_fields__[section].default_factory, "RANGES", {})
        if field_name in ranges:
            lo, hi = ranges[field_name]
        elif isinstance(value, float):
            lo, hi = 0.0, 1.0e9
        elif isinstance(value, int) and not isinstance(value, bool):
            lo, hi = 0, 2**31 - 1
        specs.append(ParamSpec(name=name, default=value, doc=docs.get(name, f"GeolocConfig.{name}"),
                               when=CORE_WHEN.get(name, CORE_WHEN.get(name.split(".")[0], "configure")), lo=lo, hi=hi,
                               choices=CORE_CHOICES.get(name), core=True))
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
           "# The sections are the core's GeolocConfig, shared with `geoloc replay --config`: applied on configure",
           "# (change while unconfigured: cleanup, set, configure), except output.* (applied to the next message).",
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
