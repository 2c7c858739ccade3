"""What the node exchanges with ROS: message classes by type name, QoS profiles, parameter descriptors.

Only the rclpy glue lives here: every message field and convention is decided by :mod:`geoloc_node.messages` and
:mod:`geoloc_node.session`, which ``geoloc replay`` uses with the rosbags typestore, so that a replayed bag carries
exactly what the node publishes.
"""

from __future__ import annotations

import functools
import importlib

from builtin_interfaces.msg import Time
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from .. import messages
from ..session import OUTPUT_TYPES
from . import params


@functools.cache
def rclpy_type(name: str):
    """``"sensor_msgs/msg/NavSatFix"`` -> the rclpy message class (the ``types`` callable of the session)."""
    pkg, sub, cls = name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), cls)


def to_time_msg(stamp: float) -> Time:
    """Float seconds -> builtin_interfaces/Time (rounded to the nanosecond, never negative)."""
    return messages.time_msg(rclpy_type, stamp)


#: Inputs: best effort, keep last. A best-effort subscription receives from reliable and best-effort publishers alike.
SENSOR_QOS = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=1,
                        durability=DurabilityPolicy.VOLATILE)
#: GPS and odometry: same compatibility, a deeper queue so that a burst is not lost while the pipeline runs.
STREAM_QOS = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=20,
                        durability=DurabilityPolicy.VOLATILE)
#: Outputs: reliable.
OUTPUT_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10,
                        durability=DurabilityPolicy.VOLATILE)
#: ~/active: reliable and latched, so a late subscriber learns the current state.
LATCHED_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: The node's output topics (``~/<name>``): message class and QoS.
OUTPUTS = {name: (rclpy_type(typ), LATCHED_QOS if name == "active" else OUTPUT_QOS)
           for name, typ in OUTPUT_TYPES.items()}


def descriptor(spec: params.ParamSpec) -> ParameterDescriptor:
    """The ROS parameter descriptor of a parameter: its documentation, range, choices and when it takes effect."""
    note = {"live": "applied to the next message", "configure": "applied on configure (change while unconfigured)",
            "read_only": "read-only: set at start-up"}[spec.when]
    extra = f"one of: {', '.join(spec.choices)}; " if spec.choices else ""
    d = ParameterDescriptor(name=spec.name, description=spec.doc, read_only=spec.when == "read_only",
                            additional_constraints=extra + note)
    if isinstance(spec.default, float) and spec.lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.lo), to_value=float(spec.hi), step=0.0)]
    elif isinstance(spec.default, int) and not isinstance(spec.default, bool) and spec.lo is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.lo), to_value=int(spec.hi), step=1)]
    return d
