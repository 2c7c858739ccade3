"""FakePipeline: a stand-in with the Pipeline contract, for testing the node's WIRING fast and deterministically.

It knows nothing of images: GPS is "LOST" while the last fix has status < 0 or no finite coordinates, and every
processed frame yields one Estimate (the real record type) at a fixed place, stamped with the frame's time. The
behaviour of the real pipeline is tested in tests/ (pipeline, health, tracking) and end to end in
tests/ros/test_drive.py.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from geoloc_node.geodesy import LocalFrame
from geoloc_node.health import HealthChange
from geoloc_node.records import Estimate, InputRejected

ORIGIN = (47.3769, 8.5417)


@dataclass
class FakePipeline:
    east: float = 12.0
    north: float = -5.0
    frames: list = field(default_factory=list)
    gps: list = field(default_factory=list)
    odometry: list = field(default_factory=list)
    closed: bool = False
    build_thread: str = ""

    def __post_init__(self):
        self.build_thread = threading.current_thread().name
        frame = LocalFrame(*ORIGIN)
        self.table = SimpleNamespace(frame=frame, header=SimpleNamespace(stride_m=10.0))
        self.encoder = SimpleNamespace(backend="fake")
        self.lat, self.lon = (float(v) for v in frame.to_latlon(self.east, self.north))
        self._slot = None
        self._lock = threading.Lock()
        self.dropped = 0
        self.state = "HEALTHY"
        self.process_threads: set[str] = set()

    def submit_frame(self, frame) -> None:
        with self._lock:
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame

    def process_pending(self) -> list:
        with self._lock:
            frame, self._slot = self._slot, None
        if frame is None:
            return []
        self.process_threads.add(threading.current_thread().name)
        self.frames.append(frame)
        fallback = self.state != "HEALTHY"
        return [Estimate(stamp=frame.stamp, east=self.east, north=self.north, cov=np.diag([4.0, 9.0]),
                             lat=self.lat, lon=self.lon, yaw=0.5, source="visual", confidence=0.8,
                             fallback_active=fallback, trustworthy=True,
                             topk=((self.east, self.north, 10), (self.east + 10.0, self.north, 14)))]

    def on_gps(self, fix) -> list:
        self.gps.append(fix)
        finite = math.isfinite(fix.lat) and math.isfinite(fix.lon)
        out = [] if finite or fix.status < 0 else [
            InputRejected(fix.stamp, "gps", "gps_invalid_position", "fake: a fix without coordinates")]
        new = "HEALTHY" if fix.status >= 0 and finite else "LOST"
        if new != self.state:
            prev, self.state = self.state, new
            out.append(HealthChange(fix.stamp, new, prev, "fake: status/coordinates"))
        return out

    def on_odometry(self, odom) -> list:
        self.odometry.append(odom)
        return []

    @property
    def fallback_active(self) -> bool:
        return self.state != "HEALTHY"

    def note_decode_ms(self, ms: float) -> None:
        pass

    def note_rejected_frame(self, reason: str = "") -> None:
        pass

    def note_camera(self, check) -> None:
        self.camera = check

    def run_deferred(self) -> None:
        pass

    def status(self) -> dict:
        return {"health": {"state": self.state, "reason": "fake"}, "fallback_active": self.state != "HEALTHY",
                "counts": {"frames_dropped": self.dropped, "frames_processed": len(self.frames)},
                "backend": "fake"}

    def close(self) -> None:
        self.closed = True


class FakeFactory:
    """``pipeline_factory`` for GeolocNode: opens ``table.path`` for real when one is set (so that a bad path fails
    configure the way the real factory does), then returns a FakePipeline; remembers what it built."""

    def __init__(self):
        self.built: list[FakePipeline] = []

    def __call__(self, core_cfg, node_cfg):
        if core_cfg is not None and core_cfg.table.path:
            from geoloc_node.table import open_table

            open_table(core_cfg.table.path)
        p = FakePipeline()
        self.built.append(p)
        return p
