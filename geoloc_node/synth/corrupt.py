"""Wrong-domain camera frames: copy a rosbag2 and replace the camera images inside a time span.

``replace_frames(src, dst, start_s, end_s, kind)`` writes a copy of the bag ``src`` (MCAP or sqlite3, same storage,
metadata version, compression, custom data and connections) at ``dst`` in which every camera image whose header stamp
lies in ``[start_s, end_s)`` seconds after the bag's start is replaced; every other message is copied byte for byte.
A replaced image keeps its stamp, frame_id, size, encoding and step; a CompressedImage keeps its format (JPEG or PNG,
re-encoded). The raw and the compressed image of one stamp get the same replacement. Kinds:

* ``black``: all zeros (a covered lens, a dead camera);
* ``noise``: uniform random bytes (a broken link), drawn from ``seed``;
* ``other_world``: the frames of another drive bag ``source_bag`` in order from its first one (cycling when it runs
  out), resized when their size differs: the camera sees a place the table does not hold;
* ``u1652``: real drone views cut out of the University-1652 sample mosaic (``u1652_mosaic``, read in place; a grid of
  25 x 20 views of 134 px at a 158 px pitch, their 3 px black frames cut off), in an order drawn from ``seed``; each
  image is tiled with ``round(W / H)`` views side by side (4 for a 128x512 panorama, 1 for a 4:3 camera), each
  cropped to its slot's aspect ratio and resized: real imagery of another domain.

The bag's sidecar ``geoloc_drive.json`` is copied too, with the replacement appended to its ``frame_replacements``
list as ``[kind, start_s, end_s]`` (and the same in the bag's ``geoloc_node.synth`` custom data when present).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ..errors import GeolocError
from .drive import METADATA_KEY, SIDECAR

FRAME_KINDS = ("black", "noise", "other_world", "u1652")
IMAGE_T = "sensor_msgs/msg/Image"
COMPRESSED_T = "sensor_msgs/msg/CompressedImage"
U1652_GRID = (25, 20)  # rows, columns of views in the sample mosaic
U1652_PITCH_PX = 158  # from one view to the next (a white gap between)
U1652_VIEW_PX = 134
U1652_FRAME_PX = 4  # each view has a 3 px black frame in the mosaic (and JPEG bleeding): cut off
JPEG_QUALITY = 90  # as the drive recorder writes
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_CACHED_STAMPS = 16  # replacements kept so that a raw and a compressed image of one stamp get the same one


class CorruptError(GeolocError, ValueError):
    """A bag cannot be copied with replaced frames from what was given."""


def parse_span(text: str) -> tuple[float, float]:
    """``start:end`` (seconds) -> (start_s, end_s); raises CorruptError on anything else."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise CorruptError(f"span {text!r}: expected START_S:END_S, e.g. 20:40") from None


def replace_frames(src_bag, dst_bag, start_s: float, end_s: float, kind: str, *, seed: int = 0, source_bag=None,
                   u1652_mosaic=None, image_topic: str | None = None) -> dict:
    """Copy ``src_bag`` to ``dst_bag`` (must not exist) with the camera frames in the span replaced; returns a
    summary: replaced frames per topic, kind, span."""
    src, dst = Path(src_bag), Path(dst_bag)
    if kind not in FRAME_KINDS:
        raise CorruptError(f"kind {kind!r} is not one of {', '.join(FRAME_KINDS)}")
    if not (0.0 <= start_s < end_s):
        raise CorruptError(f"span {start_s:g}:{end_s:g}: needs 0 <= start_s < end_s")
    if not (src / "metadata.yaml").is_file():
        raise CorruptError(f"{src} is not a rosbag2 folder (no metadata.yaml)")
    if dst.exists():
        raise CorruptError(f"output {dst} already exists; choose a new path or remove it first")
    maker = _frame_maker(kind, seed, source_bag, u1652_mosaic)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        record = [kind, float(start_s), float(end_s)]
        counts = _copy_bag(src, tmp / dst.name, (start_s, end_s), image_topic, maker, record)
        sidecar = src / SIDECAR
        if sidecar.is_file():
            data = json.loads(sidecar.read_text())
            data["frame_replacements"] = [*data.get("frame_replacements", []), record]
            (tmp / dst.name / SIDECAR).write_text(json.dumps(data, indent=1))
        (tmp / dst.name).chmod(0o755)
        os.rename(tmp / dst.name, dst)
    finally:
        maker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"bag": str(dst), "kind": kind, "span_s": [float(start_s), float(end_s)], "replaced": counts}


# -- the copy ----------------------------------------------------------------------------------------------------------
def _metadata(src: Path) -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load((src / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def _open_writer(path: Path, info: dict, custom: dict):
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    plugin = StoragePlugin.MCAP if info["storage_identifier"] == "mcap" else StoragePlugin.SQLITE3
    # rosbags writes versions 8 and 9 only: an older bag becomes version 8 (readable by every ROS 2 since Humble).
    writer = Writer(path, version=9 if int(info["version"]) >= 9 else 8, storage_plugin=plugin)
    mode = str(info.get("compression_mode") or "").lower()
    if mode in ("file", "message"):
        writer.set_compression(CompressionMode[mode.upper()], CompressionFormat.ZSTD)
    writer.open()
    for key, value in custom.items():
        writer.set_custom_data(key, value)
    return writer


def _camera_topics(reader, src: Path, image_topic: str | None) -> set[str]:
    """The raw image topic(s) (asked, or the drive's, or every Image topic) and their /compressed siblings."""
    types = {c.topic: c.msgtype for c in reader.connections}
    topic = image_topic
    if topic is None and (src / SIDECAR).is_file():
        topic = json.loads((src / SIDECAR).read_text()).get("topics", {}).get("image")
    if topic is not None and types.get(topic) in (IMAGE_T, COMPRESSED_T):
        raw = {topic}
    elif image_topic is not None:
        raise CorruptError(f"{image_topic} is not a camera image topic of {src} (it has: {', '.join(sorted(types))})")
    else:
        raw = {t for t, m in types.items() if m == IMAGE_T}
    topics = raw | {f"{t}/compressed" for t in raw if types.get(f"{t}/compressed") == COMPRESSED_T}
    if not topics:
        raise CorruptError(f"{src} has no camera image topic (sensor_msgs/msg/Image)")
    return topics


def _copy_bag(src: Path, out: Path, span_s: tuple[float, float], image_topic: str | None, maker,
              record: list) -> dict[str, int]:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    info = _metadata(src)
    custom = dict(info.get("custom_data") or {})
    if METADATA_KEY in custom:
        meta = json.loads(custom[METADATA_KEY])
        meta["frame_replacements"] = [*meta.get("frame_replacements", []), record]
        custom[METADATA_KEY] = json.dumps(meta)
    # Stamps are compared in microseconds: a float stamp of ~1.7e9 s carries a few hundred ns of rounding.
    span_us = (round(span_s[0] * 1e6), round(span_s[1] * 1e6))
    with AnyReader([src], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        store = reader.typestore
        targets = _camera_topics(reader, src, image_topic)
        writer = _open_writer(out, info, custom)
        try:
            connections = {c.id: writer.add_connection(
                c.topic, c.msgtype, typestore=store, msgdef=c.msgdef.data or None, rihs01=c.digest or None,
                serialization_format=c.ext.serialization_format, offered_qos_profiles=c.ext.offered_qos_profiles)
                for c in reader.connections}
            counts = dict.fromkeys(sorted(targets), 0)
            cache: dict[int, np.ndarray] = {}
            for connection, timestamp, raw in reader.messages():
                if connection.topic in targets:
                    message = store.deserialize_cdr(raw, connection.msgtype)
                    stamp_ns = message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec
                    if span_us[0] <= round((stamp_ns - reader.start_time) / 1e3) < span_us[1]:
                        message = _replaced(message, connection.msgtype, stamp_ns, maker, cache)
                        raw = store.serialize_cdr(message, connection.msgtype)
                        counts[connection.topic] += 1
                writer.write(connections[connection.id], timestamp, raw)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    return counts


def _replaced(message, msgtype: str, stamp_ns: int, maker, cache: dict):
    """The message with its image replaced by the maker's (the same one for every topic at this stamp)."""
    if msgtype == IMAGE_T:
        size = (int(message.height), int(message.width))
    else:
        decoded = cv2.imdecode(np.frombuffer(bytes(message.data), np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise CorruptError(f"a compressed image ({message.format!r}) does not decode")
        size = decoded.shape[:2]
    rgb = cache.get(stamp_ns)
    if rgb is None or rgb.shape[:2] != size:
        rgb = maker(*size)
        cache[stamp_ns] = rgb
        while len(cache) > _CACHED_STAMPS:
            cache.pop(next(iter(cache)))
    if msgtype == IMAGE_T:
        return replace(message, data=_raw_bytes(rgb, message.encoding, int(message.step)))
    ext = ".png" if "png" in message.format.lower() else ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else []
    ok, encoded = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise CorruptError(f"cannot encode a replacement image as {ext}")
    return replace(message, data=np.frombuffer(encoded.tobytes(), np.uint8))


def _raw_bytes(rgb: np.ndarray, encoding: str, step: int) -> np.ndarray:
    """An RGB image as the bytes of a sensor_msgs/Image of this encoding and row step (padding zero)."""
    if encoding not in CHANNELS:
        raise CorruptError(f"image encoding {encoding!r} is not supported (supported: {', '.join(CHANNELS)})")
    converted = {"rgb8": lambda x: x, "bgr8": lambda x: x[:, :, ::-1],
                 "rgba8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2RGBA),
                 "bgra8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2BGRA),
                 "mono8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)}[encoding](rgb)
    h, w = rgb.shape[:2]
    rows = np.zeros((h, step), np.uint8)
    rows[:, :w * CHANNELS[encoding]] = np.ascontiguousarray(converted).reshape(h, -1)
    return rows.reshape(-1)


# -- what replaces a frame ---------------------------------------------------------------------------------------------
class _Flat:
    """Black frames."""

    def __call__(self, h: int, w: int) -> np.ndarray:
        return np.zeros((h, w, 3), np.uint8)

    def close(self) -> None:
        pass


class _Noise(_Flat):
    """Uniform random bytes."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, h: int, w: int) -> np.ndarray:
        return self.rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _fit(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    """Centre-crop to the aspect ratio of h x w, then resize to it."""
    sh, sw = rgb.shape[:2]
    if sw * h > sh * w:  # too wide: crop columns
        keep = max(1, round(sh * w / h))
        rgb = rgb[:, (sw - keep) // 2:(sw - keep) // 2 + keep]
    elif sw * h < sh * w:
        keep = max(1, round(sw * h / w))
        rgb = rgb[(sh - keep) // 2:(sh - keep) // 2 + keep]
    if rgb.shape[:2] == (h, w):
        return np.ascontiguousarray(rgb)
    shrink = rgb.shape[0] > h
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class _OtherBag(_Flat):
    """The camera frames of another bag, in order, cycling."""

    def __init__(self, path):
        self.path = Path(path)
        if not (self.path / "metadata.yaml").is_file():
            raise CorruptError(f"source bag {self.path} is not a rosbag2 folder (no metadata.yaml)")
        self.frames = self._frames()

    def _frames(self):
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        while True:
            found = 0
            with AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
                topics = _camera_topics(reader, self.path, None)
                raw_topics = [c for c in reader.connections if c.topic in topics and c.msgtype == IMAGE_T]
                for connection, _, raw in reader.messages(raw_topics or [c for c in reader.connections
                                                                        if c.topic in topics]):
                    found += 1
                    yield _decoded(reader.typestore.deserialize_cdr(raw, connection.msgtype), connection.msgtype)
            if not found:
                raise CorruptError(f"source bag {self.path} holds no camera frame")

    def __call__(self, h: int, w: int) -> np.ndarray:
        return _fit(next(self.frames), h, w)

    def close(self) -> None:
        self.frames.close()


def _decoded(message, msgtype: str) -> np.ndarray:
    """RGB pixels of an Image (rgb8, bgr8, rgba8, bgra8, mono8) or a CompressedImage."""
    if msgtype == COMPRESSED_T:
        bgr = cv2.imdecode(np.frombuffer(bytes(message.data), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CorruptError("a compressed source frame does not decode")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    encoding, h, w = message.encoding, int(message.height), int(message.width)
    if encoding not in CHANNELS:
        raise CorruptError(f"source frame encoding {encoding!r} is not supported")
    c = CHANNELS[encoding]
    pixels = np.frombuffer(bytes(message.data), np.uint8).reshape(h, int(message.step))[:, :w * c].reshape(h, w, c)
    to_rgb = {"rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
              "mono8": cv2.COLOR_GRAY2RGB}[encoding]
    return np.ascontiguousarray(pixels) if to_rgb is None else cv2.cvtColor(np.ascontiguousarray(pixels), to_rgb)


class _U1652Views(_Flat):
    """Drone views cut out of the University-1652 sample mosaic, in an order drawn from the seed, tiled per frame."""

    def __init__(self, mosaic, seed: int):
        path = Path(mosaic)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CorruptError(f"cannot read the University-1652 mosaic {path}")
        rows, cols = U1652_GRID
        need = ((rows - 1) * U1652_PITCH_PX + U1652_VIEW_PX, (cols - 1) * U1652_PITCH_PX + U1652_VIEW_PX)
        if bgr.shape[0] < need[0] or bgr.shape[1] < need[1]:
            raise CorruptError(f"{path} is {bgr.shape[1]}x{bgr.shape[0]} px, smaller than a {cols}x{rows} grid of "
                               f"{U1652_VIEW_PX} px views at a {U1652_PITCH_PX} px pitch")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        inner = (U1652_FRAME_PX, U1652_VIEW_PX - U1652_FRAME_PX)
        self.views = [rgb[r * U1652_PITCH_PX + inner[0]:r * U1652_PITCH_PX + inner[1],
                          c * U1652_PITCH_PX + inner[0]:c * U1652_PITCH_PX + inner[1]]
                      for r in range(rows) for c in range(cols)]
        self.order = np.random.default_rng(seed).permutation(len(self.views))
        self.taken = 0

    def __call__(self, h: int, w: int) -> np.ndarray:
        slots = max(1, round(w / h))
        edges = np.linspace(0, w, slots + 1).round().astype(int)
        out = np.empty((h, w, 3), np.uint8)
        for a, b in zip(edges[:-1], edges[1:]):
            out[:, a:b] = _fit(self.views[self.order[self.taken % len(self.views)]], h, int(b - a))
            self.taken += 1
        return out


def _frame_maker(kind: str, seed: int, source_bag, u1652_mosaic):
    if kind == "black":
        return _Flat()
    if kind == "noise":
        return _Noise(seed)
    if kind == "other_world":
        if source_bag is None:
            raise CorruptError("kind other_world needs source_bag (another drive of the same camera)")
        return _OtherBag(source_bag)
    if u1652_mosaic is None:
        raise CorruptError("kind u1652 needs u1652_mosaic (the path of University-1652's sample_drone.jpg)")
    return _U1652Views(u1652_mosaic, seed)

