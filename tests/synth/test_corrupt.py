import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from ruamel.yaml import YAML

from geoloc_node.cli import main
from geoloc_node.synth.corrupt import CorruptError, replace_frames
from geoloc_node.synth.drive import METADATA_KEY, SIDECAR, DriveConfig, record_drive

MOSAIC = Path("/work/shared/fixtures/university1652_sample/sample_drone.jpg")
SPAN = (1.0, 2.5)
SIZE = (32, 128)
CAMERA = ("/camera/image_raw", "/camera/image_raw/compressed")
STORE = get_typestore(Stores.ROS2_JAZZY)


@pytest.fixture(scope="module")
def drives(small_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    record_drive(small_world, root / "a", DriveConfig(duration_s=4.0, seed=1, image_size=SIZE,
                                                      compressed_images=True))
    record_drive(small_world, root / "b", DriveConfig(duration_s=2.0, seed=2, image_size=SIZE, storage="sqlite3",
                                                      distro="humble"))
    return root


def _raw(bag):
    with Reader(bag) as reader:
        start = reader.start_time
        return start, [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]


def _in_span(t_ns, start_ns) -> bool:
    return SPAN[0] <= round((t_ns - start_ns) * 1e-3) * 1e-6 < SPAN[1]


def _pixels(msgtype, raw):
    message = STORE.deserialize_cdr(raw, msgtype)
    if msgtype.endswith("CompressedImage"):
        return message, cv2.cvtColor(cv2.imdecode(np.frombuffer(bytes(message.data), np.uint8), cv2.IMREAD_COLOR),
                                     cv2.COLOR_BGR2RGB).astype(int)
    return message, np.frombuffer(bytes(message.data), np.uint8).reshape(message.height, message.width, 3).astype(int)


def _replaced_pairs(src, dst):
    """Check every message outside the span (and every non-camera one) is byte-identical; return the replaced ones
    as (original, replaced) pairs of (topic, msgtype, raw)."""
    start, before = _raw(src)
    start_dst, after = _raw(dst)
    assert start == start_dst and len(before) == len(after)
    pairs = []
    for (topic, msgtype, t, raw), (topic2, msgtype2, t2, raw2) in zip(before, after, strict=True):
        assert (topic, msgtype, t) == (topic2, msgtype2, t2)
        if topic in CAMERA and _in_span(t, start):
            assert raw != raw2
            pairs.append(((topic, msgtype, raw), (topic2, msgtype2, raw2)))
        else:
            assert raw == raw2, (topic, t)
    return pairs


@pytest.mark.parametrize("kind", ["black", "noise", "other_world", "u1652"])
def test_frames_in_the_span_are_replaced_and_nothing_else(drives, tmp_path, kind):
    if kind == "u1652" and not MOSAIC.is_file():
        pytest.skip(f"the University-1652 sample mosaic is not at {MOSAIC}")
    dst = tmp_path / "bag"
    summary = replace_frames(drives / "a", dst, *SPAN, kind, seed=3, source_bag=drives / "b", u1652_mosaic=MOSAIC)
    pairs = _replaced_pairs(drives / "a", dst)
    assert summary["replaced"] == {CAMERA[0]: 15, CAMERA[1]: 15} and len(pairs) == 30
    source_frames = [_pixels(m, raw)[1] for topic, m, _, raw in _raw(drives / "b")[1] if topic == CAMERA[0]]
    raw_replacements = []
    for (_, msgtype, raw), (_, _, raw2) in pairs:
        old, _ = _pixels(msgtype, raw)
        new, pixels = _pixels(msgtype, raw2)
        assert (new.header.stamp, new.header.frame_id) == (old.header.stamp, old.header.frame_id)
        if msgtype.endswith("/Image"):
            assert (new.height, new.width, new.encoding, new.step) == (old.height, old.width, old.encoding, old.step)
            raw_replacements.append(pixels)
        else:
            assert new.format == old.format and pixels.shape == (*SIZE, 3)
            same = raw_replacements[-1]  # the raw image of this stamp, the compressed one being lossy
            assert pixels.max() <= 3 if kind == "black" else np.corrcoef(pixels.ravel(), same.ravel())[0, 1] > 0.5
    frames = np.stack(raw_replacements)
    if kind == "black":
        assert frames.max() == 0
    elif kind == "noise":
        assert abs(frames.mean() - 127.5) < 3 and abs(frames.std() - 73.9) < 3
    elif kind == "other_world":
        assert all(np.array_equal(f, source_frames[i % len(source_frames)]) for i, f in enumerate(frames))
    else:
        _assert_mosaic_views(frames)
    sidecar = json.loads((dst / SIDECAR).read_text())
    assert sidecar["frame_replacements"] == [[kind, *SPAN]]
    metadata = YAML(typ="safe").load((dst / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert json.loads(metadata["custom_data"][METADATA_KEY])["frame_replacements"] == [[kind, *SPAN]]


def _assert_mosaic_views(frames):
    """Each quarter of a 32x128 frame is one drone view of the mosaic, shrunk to 32x32."""
    mosaic = cv2.cvtColor(cv2.imread(str(MOSAIC)), cv2.COLOR_BGR2RGB)
    views = np.stack([cv2.resize(mosaic[r * 158 + 4:r * 158 + 130, c * 158 + 4:c * 158 + 130], (32, 32),
                                 interpolation=cv2.INTER_AREA) for r in range(25) for c in range(20)]).astype(int)
    used = set()
    for frame in frames[:3]:
        for slot in range(4):
            errors = np.abs(views - frame[:, slot * 32:(slot + 1) * 32]).mean(axis=(1, 2, 3))
            assert errors.min() < 2.0
            used.add(int(errors.argmin()))
    assert len(used) == 12  # a different view in every slot


def test_sqlite3_humble_bag_stays_sqlite3(drives, tmp_path):
    dst = tmp_path / "bag"
    summary = replace_frames(drives / "b", dst, *SPAN, "black")
    assert summary["replaced"] == {CAMERA[0]: 11}  # a 2 s drive: frames at 1.0, 1.1, ... 2.0 s
    assert list(dst.glob("*.db3")) and "version: 8" in (dst / "metadata.yaml").read_text()
    pairs = _replaced_pairs(drives / "b", dst)
    assert all(_pixels(m, raw)[1].max() == 0 for _, (_, m, raw) in pairs)


def test_bad_input_is_refused_and_leaves_nothing(drives, tmp_path):
    src = drives / "a"
    cases = [((src, tmp_path / "x", 1.0, 2.0, "fog"), {}, "kind"),
             ((src, tmp_path / "x", 2.0, 1.0, "black"), {}, "start_s < end_s"),
             ((tmp_path / "none", tmp_path / "x", 1.0, 2.0, "black"), {}, "not a rosbag2"),
             ((src, tmp_path / "x", 1.0, 2.0, "other_world"), {}, "source_bag"),
             ((src, tmp_path / "x", 1.0, 2.0, "other_world"), {"source_bag": tmp_path}, "not a rosbag2"),
             ((src, tmp_path / "x", 1.0, 2.0, "u1652"), {}, "u1652_mosaic"),
             ((src, tmp_path / "x", 1.0, 2.0, "u1652"), {"u1652_mosaic": tmp_path / "no.jpg"}, "cannot read"),
             ((src, drives / "b", 1.0, 2.0, "black"), {}, "already exists"),
             ((src, tmp_path / "x", 1.0, 2.0, "black"), {"image_topic": "/odom"}, "not a camera image topic")]
    for args, kwargs, message in cases:
        with pytest.raises(CorruptError, match=message):
            replace_frames(*args, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_frames_command(drives, tmp_path, capsys):
    dst = tmp_path / "bag"
    assert main(["synth", "corrupt-frames", str(drives / "a"), str(dst), "--span", "1:2.5", "--kind", "noise"]) == 0
    assert "noise frames in 1-2.5 s" in capsys.readouterr().out
    assert json.loads((dst / SIDECAR).read_text())["frame_replacements"] == [["noise", 1.0, 2.5]]
    assert main(["synth", "corrupt-frames", str(dst), str(tmp_path / "twice"), "--span", "3:4", "--kind",
                 "other_world", "--source-bag", str(drives / "b")]) == 0
    sidecar = json.loads((tmp_path / "twice" / SIDECAR).read_text())
    assert sidecar["frame_replacements"] == [["noise", 1.0, 2.5], ["other_world", 3.0, 4.0]]
    assert main(["synth", "corrupt-frames", str(dst), str(tmp_path / "c"), "--span", "1-2", "--kind", "black"]) == 2
    assert "START_S:END_S" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
