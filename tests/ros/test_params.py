"""Parameters: declared from GeolocConfig + NodeConfig with descriptors, config/geoloc.yaml in sync, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from rclpy.parameter import Parameter

from geoloc_node.ros import params

from .fakes import FakeFactory
from .helpers import make_node

YAML = Path(__file__).resolve().parents[2] / "config" / "geoloc.yaml"


def test_yaml_declares_every_parameter_with_a_comment():
    """config/geoloc.yaml is render_yaml(): regenerate it with
    ``python -c "from geoloc_node.ros.params import render_yaml; print(render_yaml(), end='')" > config/geoloc.yaml``"""
    assert YAML.read_text() == params.render_yaml(), "config/geoloc.yaml is stale: regenerate it (see docstring)"
    import yaml

    data = yaml.safe_load(YAML.read_text())["/**"]["ros__parameters"]

    def flat(d, prefix=""):
        for k, v in d.items():
            yield from (flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)])

    assert dict(flat(data)) == {s.name: s.default for s in params.param_specs()}
    core = {s.name for s in params.param_specs() if s.core}
    from geoloc_node.config import GeolocConfig

    assert core == set(GeolocConfig().to_flat())  # the node never drifts from the core


def test_descriptors_and_validation(ros):
    node = make_node(ros, FakeFactory())
    d = node.describe_parameters(["health.max_horizontal_std_m", "image_topic", "output.publish_policy",
                                  "output.diagnostics_period_s"])
    assert "DEGRADED" in d[0].description and d[0].floating_point_range[0].from_value == 0.0
    assert d[1].read_only and not d[2].read_only
    assert "fallback_only" in d[2].additional_constraints
    assert d[3].floating_point_range[0].to_value == 60.0 and d[3].read_only

    def ok(name, value):
        try:
            return node.set_parameters([Parameter(name, value=value)])[0]
        except Exception as e:  # noqa: BLE001 - some rclpy versions raise on a type change instead of refusing
            return type("Refused", (), {"successful": False, "reason": str(e)})()

    assert ok("output.publish_policy", "always").successful and node.core_cfg.output.publish_policy == "always"
    assert node.session.config.output.publish_policy == "always"  # the session applies it to the next message
    r = ok("output.publish_policy", "sometimes")
    assert not r.successful and "fallback_only" in r.reason
    assert not ok("image_topic", "/other").successful                      # read-only
    assert not ok("output.trail_length", 1).successful                     # below the range
    assert not ok("health.max_horizontal_std_m", -1.0).successful          # core range
    assert not ok("health.max_horizontal_std_m", "eight").successful       # the type is fixed
    assert ok("health.max_horizontal_std_m", 5.0).successful               # unconfigured: accepted
    assert node.core_cfg.health.max_horizontal_std_m == 5.0

    node.trigger_configure()
    r = ok("health.max_horizontal_std_m", 6.0)                             # applied on configure: refused now
    assert not r.successful and "cleanup" in r.reason
    assert node.core_cfg.health.max_horizontal_std_m == 5.0
    assert ok("output.map_frame_id", "world").successful                   # live
    assert not ok("output.map_frame_id", "").successful                    # validated by OutputConfig


def test_invalid_start_up_parameters_refuse_to_start(ros):
    with pytest.raises(ValueError, match="image_transport"):
        make_node(ros, FakeFactory(), image_transport="h264")


def test_the_yaml_loads_through_the_ros_parameter_parser(ros):
    """rcl's own YAML parser (as `--params-file` uses it) reads every value with the declared type."""
    from geoloc_node.ros.node import GeolocNode

    node = ros.add(GeolocNode(pipeline_factory=FakeFactory(), context=ros.context,
                              cli_args=["--ros-args", "--params-file", str(YAML)]))
    overrides = getattr(node, "_parameter_overrides", {})
    assert {s.name for s in params.param_specs()} <= set(overrides)  # every parameter came from the file
    for spec in params.param_specs():
        assert node.get_parameter(spec.name).value == spec.default, spec.name
