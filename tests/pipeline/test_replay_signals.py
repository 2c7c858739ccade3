"""SIGTERM and SIGHUP (``timeout``, systemd, ``docker stop``, a closed SSH session) sent to a real ``geoloc replay`` and
``geoloc demo`` process: they stop as on Ctrl-C, with exit code 130, a closed output bag that opens, and a report that
says it was interrupted. The replay is a health-only one (no --table: a fake encoder cannot cross into a subprocess)
of a GPS + odometry bag long enough to be still running when the signal arrives."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from bagtools import drive_items, write_bag
from fakes import ORIGIN, Drive
from rosbags.highlevel import AnyReader

from geoloc_node.geodesy import LocalFrame

DRIVE_S = 1000.0  # 60,000 messages (GPS 10 Hz, odometry 50 Hz): a health-only replay takes seconds here
SIGNALS = pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])


def geoloc_command() -> list[str]:
    exe = Path(sys.executable).with_name("geoloc")  # the console script of this venv, as a user runs it
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "geoloc_node.cli"]


class Child:
    """A subprocess whose stdout and stderr are read as they come (so that the test can wait for a line)."""

    def __init__(self, argv, cwd):
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(s, buf), daemon=True)
                         for s, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream, buf):
        for line in stream:
            buf.append(line)

    def wait_for(self, ready, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready() and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready(), f"not ready (exit code {self.proc.poll()}): {''.join(self.err)[-2000:]}"

    def stop(self, signum, timeout_s: float = 120) -> int:
        self.proc.send_signal(signum)
        try:
            rc = self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        for t in self._readers:
            t.join(timeout=10)
        return rc


def output_messages(bag: Path) -> dict:
    """topic -> number of messages, read back with rosbags' AnyReader (every message deserialised)."""
    counts: dict = {}
    with AnyReader([bag]) as r:
        for c, _, raw in r.messages():
            r.deserialize(raw, c.msgtype)
            counts[c.topic] = counts.get(c.topic, 0) + 1
    return counts


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory):
    frame = LocalFrame(*ORIGIN)
    drive = Drive(duration_s=DRIVE_S, seed=21)
    events = [e for e in drive.events(frame, odom_rate=50.0) if e[1] != "frame"]
    items = drive_items(events, frame, drive.truth, truth_rate=0.0)
    return write_bag(tmp_path_factory.mktemp("long") / "long_drive", items)


@SIGNALS
def test_stop_signal_mid_replay_closes_the_bag_and_marks_the_report(long_bag, tmp_path, signum):
    out = tmp_path / "out"
    child = Child([*geoloc_command(), "replay", str(long_bag), "--out", str(out)], cwd=tmp_path)
    # the output bag is created just before the replay loop starts (and its signal handlers with it)
    child.wait_for(lambda: any((out / "bag").glob("*.mcap")), timeout_s=120)
    time.sleep(0.5)

    rc = child.stop(signum)

    err = "".join(child.err)
    assert rc == 130, err
    assert "Traceback" not in err and f"stopped by {signal.Signals(signum).name}" in err
    counts = output_messages(out / "bag")
    assert counts.get("/diagnostics", 0) > 0 and counts.get("/geoloc_node/active", 0) >= 1
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True
    assert 0.0 < report["duration_s"] < DRIVE_S - 1.0  # stopped part way, the report covers what was processed
    assert report["counts"]["output_messages"] == sum(counts.values())


@pytest.mark.slow
def test_sigterm_during_the_demo_replay_leaves_readable_outputs(tmp_path):
    """The demo (a small world to keep it short) gets SIGTERM once its replay stage runs. Whatever the exit code (130,
    or 0 when the demo finishes with the interrupted replay), no traceback, and the replay's bag and report are
    there and readable."""
    out = tmp_path / "demo"
    child = Child([*geoloc_command(), "demo", "--out", str(out), "--json", "--size", "400"], cwd=tmp_path)
    child.wait_for(lambda: any(line.startswith("[4/4] replay") for line in child.err), timeout_s=240)
    time.sleep(1.0)

    rc = child.stop(signal.SIGTERM)

    err = "".join(child.err)
    assert rc in (0, 130), err
    assert "Traceback" not in err
    counts = output_messages(out / "replay" / "bag")
    assert counts.get("/diagnostics", 0) > 0
    report = json.loads((out / "replay" / "report.json").read_text())
    assert report["interrupted"] is True
    if rc == 0:  # the demo printed its metrics of the interrupted replay
        assert json.loads("".join(child.out))["report"] == str(out / "replay" / "report.json")
