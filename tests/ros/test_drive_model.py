"""End to end with the product's own parts: a synthetic world (geoloc_node.synth), its region table built with the
shipped model, a recorded drive with a GPS outage, played in real time and sim time onto live topics through the node
with its real pipeline factory (ONNX Runtime encoder); the same bag replayed offline by ``geoloc replay`` gives the
pipeline's own accuracy, which the node must match.

Skipped while no model is shipped in geoloc_node/models (``GEOLOC_TEST_MODEL`` points it at another sidecar; with an
untrained model only the timing assertions make sense: set ``GEOLOC_TEST_MODEL_UNTRAINED=1``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import NavSatFix, NavSatStatus

from geoloc_node.ros.bagplay import BagPlayer

from .helpers import make_node

SEED = 9002  # held out from training, and not the demo's
OUTAGE = (12.0, 24.0)
DURATION = 32.0
SETTLE = 8.0


def _model() -> Path:
    if os.environ.get("GEOLOC_TEST_MODEL"):
        return Path(os.environ["GEOLOC_TEST_MODEL"])
    from geoloc_node.demo import default_model
    from geoloc_node.errors import GeolocError

    try:
        return default_model()
    except GeolocError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def synth_drive(tmp_path_factory):
    model = _model()
    pytest.importorskip("rasterio")
    from geoloc_node.synth.drive import DriveConfig, record_drive
    from geoloc_node.synth.world import WorldConfig, make_world
    from geoloc_node.table_builder import build_table_from_geotiff

    tmp = tmp_path_factory.mktemp("synth")
    world = make_world(WorldConfig(size_m=400.0, seed=SEED))
    tif = world.write_geotiff(tmp / "aerial.tif")
    table = build_table_from_geotiff(tif, model, tmp / "table.gltab", tile_size_m=50.0, stride_m=10.0,
                                     progress=False, backend="onnxruntime")
    bag = tmp / "drive"
    record_drive(world, bag, DriveConfig(duration_s=DURATION, seed=SEED, image_rate_hz=5.0,
                                         gps_faults=[("outage", OUTAGE[0], OUTAGE[1])]))
    return model, table, bag


def _truth(bag):
    """Interpolator of the ground-truth position (lat, lon) by stamp, from /ground_truth/fix."""
    from rosbags.highlevel import AnyReader

    t, lat, lon = [], [], []
    with AnyReader([bag]) as r:
        conns = [c for c in r.connections if c.topic == "/ground_truth/fix"]
        for c, _, raw in r.messages(connections=conns):
            m = r.deserialize(raw, c.msgtype)
            t.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)
            lat.append(m.latitude)
            lon.append(m.longitude)
    t0 = t[0]
    return t0, (lambda s: (np.interp(s, t, lat), np.interp(s, t, lon)))


@pytest.mark.slow
def test_shipped_model_drive_through_the_node(ros, synth_drive, tmp_path):
    model, table_path, bag = synth_drive
    from geoloc_node.table import open_table

    frame = open_table(table_path).frame
    # without GEOLOC_TEST_MODEL, model.path stays '' and the node loads the shipped model by itself
    chosen = {"model.path": str(model)} if os.environ.get("GEOLOC_TEST_MODEL") else {}
    node = make_node(ros, None, **{"table.path": str(table_path), "model.backend": "onnxruntime",
                                   "use_sim_time": True, **chosen})
    fixes = ros.collect(NavSatFix, "/geoloc_node/fix", 100)
    node.trigger_configure()
    assert node.lifecycle_state == "inactive", node._last_error
    node.trigger_activate()
    topics = ["/camera/image_raw", "/gps/fix", "/odom", "/camera/camera_info"]
    player = BagPlayer(ros.tester, bag, topics=topics, rate=1.0)
    player.prepare()
    assert player.wait_for_subscribers(topics[:3])
    player.play()
    ros.wait_for(lambda: False, timeout=1.0)

    t0, truth = _truth(bag)
    stamps = np.array([f.header.stamp.sec + f.header.stamp.nanosec * 1e-9 for f in fixes]) - t0
    late = stamps[stamps >= SETTLE]
    assert len(late) > 10, np.round(stamps, 1).tolist()
    assert OUTAGE[0] <= late.min() <= OUTAGE[0] + 1.0, np.round(stamps, 1).tolist()
    assert late.max() <= OUTAGE[1] + node.core_cfg.health.recover_s + 1.0, np.round(stamps, 1).tolist()
    if os.environ.get("GEOLOC_TEST_MODEL_UNTRAINED"):
        return

    errs = []
    for f, s in zip(fixes, stamps, strict=True):
        if s >= SETTLE and f.status.status == NavSatStatus.STATUS_FIX:
            lat, lon = truth(s + t0)
            e, n = frame.to_en(f.latitude, f.longitude)
            te, tn = frame.to_en(lat, lon)
            errs.append(math.hypot(float(e - te), float(n - tn)))
    assert len(errs) >= 0.8 * len(late)

    # the pipeline's own accuracy on the same bag, offline
    from geoloc_node.config import GeolocConfig
    from geoloc_node.encoders import load_encoder
    from geoloc_node.replay import replay
    from geoloc_node.report import compute_metrics

    res = replay(bag, tmp_path / "replay", GeolocConfig(), load_encoder(model, "onnxruntime"), open_table(table_path),
                 progress=False)
    offline = compute_metrics(res)["inside_outage"]["filter"]
    print(f"node: {len(errs)} fixes, median {np.median(errs):.1f} m, p95 {np.percentile(errs, 95):.1f} m; "
          f"offline replay: median {offline['median_m']:.1f} m, p95 {offline['p95_m']:.1f} m")
    assert np.median(errs) <= offline["median_m"] + 3.0, (np.median(errs), offline)
    assert np.percentile(errs, 95) <= max(offline["p95_m"] * 1.5, offline["p95_m"] + 5.0), (errs, offline)
