import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from geoloc_node.cli import main
from geoloc_node.progress import NullBar, progress_bar


def test_table_info_validates_and_reports(small_table, capsys):
    path = small_table[0]
    assert main(["table-info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_tiles"] == 61 * 61 and info["bits"] == 256 and info["heading_bins"] == 4
    assert main(["table-info", str(path), "--fingerprint", "0" * 64]) == 2
    assert "another encoder" in capsys.readouterr().err


def test_corrupt_table_exits_2_with_the_file_named(tmp_path, capsys):
    bad = tmp_path / "bad.gltab"
    bad.write_bytes(b"GEOLOCRT" + b"\0" * 10)
    assert main(["table-info", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "table-info" in capsys.readouterr().out


# -- a runtime-only install (no torch): every --help works, the train commands name their extra -----------------------
ROOT = Path(__file__).resolve().parents[2]
TRAIN_EXTRA = ("torch", "torchvision", "timm", "onnx", "onnxscript")
WITHOUT_TRAIN_EXTRA = f"""
import contextlib, io, json, sys, traceback
for name in {TRAIN_EXTRA!r}:
    sys.modules[name] = None  # as if not installed: importing it raises ModuleNotFoundError
from geoloc_node.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        except BaseException:
            rc = "exception"
            traceback.print_exc()
    results.append([argv, rc, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def run_without_train_extra(*argvs):
    """Run several ``geoloc`` command lines in one subprocess where torch & co. cannot be imported."""
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TRAIN_EXTRA, json.dumps(argvs)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout and json.loads(proc.stdout.splitlines()[-1])


def test_every_help_works_without_torch():
    from geoloc_node.cli import COMMANDS

    results = run_without_train_extra(["--help"], *[[name, "--help"] for name in COMMANDS])
    for argv, rc, out, err in results:
        assert rc == 0 and "Traceback" not in err and out.startswith("usage: geoloc"), (argv, rc, err)
    overview = results[0][2]
    assert all(name in overview for name in COMMANDS) and "unavailable" not in overview
    train_help = dict((tuple(a), o) for a, _, o, _ in results)[("train", "--help")]
    assert "--bits {64,128,256,512}" in train_help and "(default: vit_hybrid_pano)" in train_help


def test_train_commands_without_torch_name_the_extra_in_one_line():
    for argv, rc, out, err in run_without_train_extra(["train"], ["eval", "model.json"], ["export", "last.pt"]):
        assert rc == 2 and out == "", (argv, rc)
        assert err == f"geoloc {argv[0]}: needs the train extra (torch is not installed): pip install -e '.[train]'\n"


def test_help_defaults_read_without_torch_are_the_dataclasses_defaults():
    pytest.importorskip("torch")
    from geoloc_node.model import cli as model_cli
    from geoloc_node.model.net import AERIAL_PREPROCESSINGS, ModelConfig
    from geoloc_node.model.train import TrainConfig

    here = Path(model_cli.__file__).parent
    net, train = model_cli._literal_defaults(here / "net.py"), model_cli._literal_defaults(here / "train.py")
    assert net[""]["AERIAL_PREPROCESSINGS"] == AERIAL_PREPROCESSINGS
    for parsed, real in ((net["ModelConfig"], ModelConfig()), (train["TrainConfig"], TrainConfig())):
        assert len(parsed) > 10
        for name, value in parsed.items():
            assert getattr(real, name) == value, name


# -- progress bars only on a terminal ------------------------------------------------------------------------------
class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal():
    log = io.StringIO()
    bar = progress_bar(100, file=log, desc="x", unit="tile", initial=5)
    assert isinstance(bar, NullBar) and (bar.n, bar.total) == (5, 100)
    with bar:
        for _ in range(10):
            bar.update(3)
        bar.refresh()
        bar.set_description("y")
        bar.set_postfix(a=1)
    assert bar.n == 35 and log.getvalue() == ""
    assert list(progress_bar(iterable=range(4), file=log)) == [0, 1, 2, 3] and log.getvalue() == ""
    term = FakeTerminal()
    assert isinstance(progress_bar(10, file=term, enabled=False), NullBar)
    real = progress_bar(10, file=term, desc="build")
    real.update(10)
    real.close()
    assert not isinstance(real, NullBar) and "build" in term.getvalue() and "10/10" in term.getvalue()



def test_a_log_gets_a_rate_line_now_and_then(monkeypatch):
    """Off a terminal, long jobs (build-table) ask for a line every so often: count, rate of this run, ETA."""
    import geoloc_node.progress as progress

    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    log = io.StringIO()
    bar = progress_bar(1000, file=log, desc="build-table t.gltab", unit="tile", initial=100, log_every_s=30)
    assert isinstance(bar, progress.RateLog)
    now[0] += 10
    bar.update(50)
    assert log.getvalue() == ""  # not yet 30 s
    now[0] += 20
    bar.update(250)  # 300 tiles in 30 s: 10 tile/s; 600 left: 60 s
    assert log.getvalue().strip() == "build-table t.gltab: 400/1,000 tile (40.0 %), 10 tile/s, ETA 0:01:00"
    assert isinstance(progress_bar(10, file=log, log_every_s=30, enabled=False), NullBar)
    assert not isinstance(progress_bar(10, file=log), progress.RateLog)  # only when asked for


# -- bagplay stops quietly on SIGTERM --------------------------------------------------------------------------------
def test_bagplay_stops_quietly_on_sigterm(tmp_path):
    pytest.importorskip("rclpy")
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/gps/fix", "sensor_msgs/msg/NavSatFix", typestore=ts)
        for i in range(20):
            fix = ts.types["sensor_msgs/msg/NavSatFix"](
                header=ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=i, nanosec=0),
                                                       frame_id="gps"),
                status=ts.types["sensor_msgs/msg/NavSatStatus"](status=0, service=1), latitude=47.0, longitude=8.0,
                altitude=0.0, position_covariance=np.zeros(9), position_covariance_type=0)
            w.write(conn, i * 10**9, ts.serialize_cdr(fix, "sensor_msgs/msg/NavSatFix"))
    ready = tmp_path / "ready"
    # the signal must arrive while the player plays (not during the imports): the child says when it starts playing
    script = f"""
import pathlib, sys
from geoloc_node.ros import bagplay
play = bagplay.BagPlayer.play
def announced_play(self, **kw):
    pathlib.Path({str(ready)!r}).touch()
    return play(self, **kw)
bagplay.BagPlayer.play = announced_play
sys.exit(bagplay.main([{str(tmp_path / "bag")!r}, "--rate", "0.2"]))
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # a few messages into the bag
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopped by SIGTERM" in err
