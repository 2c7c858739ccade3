"""The session (node and replay alike): camera diagnostics, problem counts, the publish policy."""

from __future__ import annotations

import math

from bagtools import TS, camera_info, image, navsat
from fakes import FakeOracleEncoder, fake_frame, gps_fix

from geoloc_node.config import GeolocConfig
from geoloc_node.pipeline import Pipeline
from geoloc_node.session import Session

CFG = GeolocConfig.from_flat({"tracking.n_particles": 300})


def _session(world, table, cfg=CFG):
    s = Session(cfg, TS.types.__getitem__)
    s.attach(Pipeline(cfg, FakeOracleEncoder(world), table))
    return s


def _camera_status(session, stamp):
    msg = session.diagnostics(stamp).message
    return next(st for st in msg.status if st.name == "geoloc_node: camera")


def test_camera_info_without_images_is_reported_with_the_likely_cause(world, table):
    s = _session(world, table)
    for i in range(30):  # a 4096x1024 panorama camera: 12 MB frames, far over what shared memory delivers at 10 Hz
        s.on_camera_info(camera_info(100.0 + 0.1 * i, 4096, 1024))
    st = _camera_status(s, 103.0)
    assert st.level == 1 and "CameraInfo arrives but images do not (never)" in st.message
    assert "12288 KB" in st.message and "compressed" in st.message
    small = _session(world, table)
    for i in range(30):
        small.on_camera_info(camera_info(100.0 + 0.1 * i, 8, 1))
    assert "QoS" in _camera_status(small, 103.0).message  # small frames: the topic or its QoS
    small.on_frame(image(fake_frame(103.0, 0.0, 0.0)))
    assert _camera_status(small, 103.0).level == 0  # images flow: no warning


def test_a_camera_that_is_not_the_models_is_an_error_and_never_trusted(world, table):
    s = _session(world, table)
    s.on_camera_info(camera_info(100.0, 320, 240, panorama=False, hfov_deg=90.0))  # the model is a panorama's
    st = _camera_status(s, 100.5)
    assert st.level == 2 and "camera does not match the model" in st.message
    assert s.problems["camera_model_mismatch"] == 1
    assert not s.pipeline.integrity.camera.ok


def test_the_publish_policy_applies_to_fix_and_pose(world, table):
    f = table.frame
    for policy, expect_fix in (("fallback_only", False), ("always", True)):
        cfg = GeolocConfig.from_flat({"output.publish_policy": policy}, base=CFG)
        s = _session(world, table, cfg)
        topics = set()
        for i in range(60):  # healthy GPS: estimates from GPS only
            topics |= {p.topic for p in s.on_gps(navsat(gps_fix(f, 100.0 + 0.1 * i, 0.0, 0.0))).publications}
        assert ("fix" in topics) == expect_fix and ("pose" in topics) == expect_fix, policy
        assert "markers" in topics


def test_messages_that_cannot_be_converted_are_counted_by_kind(world, table):
    s = _session(world, table)
    bad = image(fake_frame(1.0, 0.0, 0.0))
    bad.encoding = "yuv422_weird"
    assert s.on_frame(bad).record is None
    fix = navsat(gps_fix(table.frame, 1.0, 0.0, 0.0))
    fix.latitude = math.nan
    s.on_gps(fix)
    assert s.problems["image_bad"] == 1 and s.problems["gps_invalid_position"] == 1
    inputs = next(st for st in s.diagnostics(2.0).message.status if st.name == "geoloc_node: inputs")
    assert inputs.level == 1 and {v.key for v in inputs.values} >= {"problems.image_bad",
                                                                    "problems.gps_invalid_position"}
