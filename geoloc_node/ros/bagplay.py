"""A minimal ``ros2 bag play --clock`` for machines without rosbag2 (a venv with the ROS 2 community wheels, the x86
docker image): reads any rosbag2 (sqlite3 or MCAP) with ``rosbags`` and publishes each message's serialized bytes on
its topic with rclpy, paced by the recorded time, together with ``/clock``.

    python -m geoloc_node.ros.bagplay BAG [--rate 2.0] [--topics /camera/image_raw /gps/fix ...] [--no-clock]
                                          [--gps-outage 60:180 ...] [--gps-topic /gps/fix]

``--gps-outage START:END`` (seconds from the bag's start, repeatable) drops the GPS messages in that span, as
``geoloc replay --gps-outage`` does offline: the live node then sees a real outage.

Used by the node's tests and benchmark. Message types are imported by name (``sensor_msgs/msg/Image`` ->
``sensor_msgs.msg.Image``): the bag's definitions must match the installed ones (true for the topics the node reads).
``/clock`` is published before a message whenever ``1/clock_hz`` s of bag time have passed (40 Hz, as ros2 bag play).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from geoloc_node.ros.interfaces import to_time_msg

PLAY_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10,
                      durability=DurabilityPolicy.VOLATILE)


def _reader(bag):
    """AnyReader with a default typestore for bags that carry no message definitions (Humble sqlite3)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    return AnyReader([Path(bag)], default_typestore=get_typestore(Stores.ROS2_HUMBLE))


def ros_type(msgtype: str):
    """``"sensor_msgs/msg/Image"`` -> the rclpy message class."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class BagPlayer:
    """Publish a bag's messages from ``node`` in recorded order and pace, with /clock."""

    def __init__(self, node, bag, *, topics: Iterable[str] | None = None, rate: float = 1.0, clock: bool = True,
                 clock_hz: float = 40.0, qos: QoSProfile = PLAY_QOS, settle_s: float = 1.0):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.node, self.bag, self.rate, self.clock = node, Path(bag), rate, clock
        self.topics = set(topics) if topics is not None else None
        self.qos = qos
        self.settle_s = settle_s
        self.published = 0
        self._clock_period_ns = int(1e9 / clock_hz) if clock_hz > 0 else 0
        self._pubs: dict = {}
        self._clock_pub = node.create_publisher(Clock, "/clock", 10) if clock else None

    def _publishers(self, connections) -> None:
        for c in connections:
            if c.topic not in self._pubs:
                self._pubs[c.topic] = self.node.create_publisher(ros_type(c.msgtype), c.topic, self.qos)

    def wait_for_subscribers(self, topics: Iterable[str], timeout_s: float = 10.0) -> bool:
        """Block until every listed topic we publish has a subscriber (call after :meth:`prepare`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(t in self._pubs and self._pubs[t].get_subscription_count() > 0 for t in topics):
                # Our side has matched; give the subscribers' side (and /clock) a moment to match us too, or the
                # first messages are lost to a reliable publisher that has nobody to deliver to yet.
                time.sleep(self.settle_s)
                return True
            time.sleep(0.02)
        return False

    def prepare(self) -> None:
        """Create the publishers now (so that discovery can run before :meth:`play`)."""
        with _reader(self.bag) as reader:
            self._publishers([c for c in reader.connections if self.topics is None or c.topic in self.topics])

    def play(self, *, transform: Callable[[str, int, bytes], bytes | None] | None = None,
             should_stop: Callable[[], bool] | None = None, start_s: float = 0.0, end_s: float | None = None) -> int:
        """Play [start_s, end_s) seconds of the bag (relative to its start). ``transform(topic, t_ns, raw)`` may
        return other bytes or None to drop a message. Returns the number of messages published."""
        with _reader(self.bag) as reader:
            conns = [c for c in reader.connections if self.topics is None or c.topic in self.topics]
            self._publishers(conns)
            t_begin = reader.start_time
            wall0 = None
            last_clock = None
            for conn, t_ns, raw in reader.messages(connections=conns):
                rel = (t_ns - t_begin) * 1e-9
                if rel < start_s:
                    continue
                if end_s is not None and rel >= end_s:
                    break
                if should_stop is not None and should_stop():
                    break
                if wall0 is None:
                    wall0 = time.monotonic() - (rel - start_s) / self.rate
                delay = wall0 + (rel - start_s) / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if self._clock_pub is not None and (last_clock is None or t_ns - last_clock >= self._clock_period_ns):
                    self._clock_pub.publish(Clock(clock=to_time_msg(t_ns * 1e-9)))
                    last_clock = t_ns
                if transform is not None:
                    raw = transform(conn.topic, t_ns, raw)
                    if raw is None:
                        continue
                self._pubs[conn.topic].publish(bytes(raw))
                self.published += 1
        return self.published


def _parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bag")
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--topics", nargs="*")
    ap.add_argument("--no-clock", action="store_true")
    ap.add_argument("--gps-outage", action="append", default=[], metavar="START:END",
                    help="drop GPS messages between these seconds from the start (repeatable)")
    ap.add_argument("--gps-topic", default="/gps/fix")
    args, ros_args = ap.parse_known_args(argv)
    try:
        args.outages = [(float(a), float(b)) for a, _, b in (t.partition(":") for t in args.gps_outage)]
    except ValueError:
        ap.error(f"--gps-outage expects START:END in seconds, got {args.gps_outage}")
    return args, ros_args


def main(argv=None) -> int:
    """Play the bag; Ctrl-C, SIGTERM and SIGHUP stop it quietly (exit code 130), finished: 0."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from geoloc_node.signals import stop_signals_interrupt

    args, ros_args = _parse_args(argv)
    outages = args.outages
    # rclpy's own SIGINT/SIGTERM handlers shut the context down under the player, whose next publish then fails with
    # a traceback; ours raise KeyboardInterrupt instead, so that every stop ends the same quiet way
    with stop_signals_interrupt():
        rclpy.init(args=ros_args, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("geoloc_bagplay")
        player = None
        try:
            player = BagPlayer(node, args.bag, topics=args.topics, rate=args.rate, clock=not args.no_clock)
            start = [None]

            def drop_gps(topic, t_ns, raw):
                start[0] = t_ns if start[0] is None else start[0]
                rel = (t_ns - start[0]) * 1e-9
                if topic == args.gps_topic and any(a <= rel < b for a, b in outages):
                    return None
                return raw

            n = player.play(transform=drop_gps if outages else None)
            print(f"published {n} messages", file=sys.stderr)
            return 0
        except KeyboardInterrupt as exc:
            published = player.published if player else 0
            print(f"published {published} messages; {str(exc) or 'interrupted'}", file=sys.stderr)
            return 130
        finally:
            node.destroy_node()
            rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
