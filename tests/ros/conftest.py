"""Real rclpy for the node's tests: each test gets its own ROS domain (localhost discovery only), its own context
and executor, and shuts them down cleanly. Skipped where rclpy is not installed (``pip install -e .[ros]``)."""

from __future__ import annotations

import itertools
import os
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from geoloc_node.ros.node import make_executor  # noqa: E402

# Domains 1..100 (inside the range whose ports never collide); start from the pid so that parallel runs differ.
_DOMAINS = itertools.count(1 + os.getpid() % 50)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/ros/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.ros)


class RosHarness:
    """A context, the node's own executor (``make_executor``) spinning in a background thread, and a helper node for
    the test side."""

    def __init__(self, domain_id: int):
        self.domain_id = domain_id
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.executor = make_executor(context=self.context)
        self.nodes = []
        self.tester = self.add(rclpy.create_node("tester", context=self.context))
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - executor shut down under it at the end of a test
            pass

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    @staticmethod
    def wait_for(predicate, timeout: float = 5.0, period: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(period)
        return bool(predicate())

    def collect(self, msg_type, topic: str, qos=10) -> list:
        """Subscribe the tester node; returns the list the messages arrive in."""
        got: list = []
        self.tester.create_subscription(msg_type, topic, got.append, qos)
        return got

    def close(self):
        for node in self.nodes:
            shutdown = getattr(node, "shutdown", None)
            if callable(shutdown):
                shutdown()
        self.executor.shutdown(timeout_sec=2.0)
        for node in self.nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


@pytest.fixture
def ros(monkeypatch):
    domain = next(_DOMAINS)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    harness = RosHarness(domain)
    try:
        yield harness
    finally:
        harness.close()
