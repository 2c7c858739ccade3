"""Reading a rosbag2 for replay: the topics the pipeline needs, deserialised, in header-stamp order.

* open with ``rosbags`` (sqlite3 or MCAP, with or without message definitions inside). Why its ``Reader`` and a
  typestore per connection rather than ``AnyReader``: AnyReader registers every definition in the bag in one store and
  fails on the first that does not parse (a service event's, in real MCAP bags), which would refuse a bag whose camera,
  GPS and odometry topics are fine. Here a definition that does not parse is skipped with a warning and the built-in
  ROS 2 one is used for that topic;
* pick the camera, CameraInfo, GPS, odometry and ground-truth topics by type and name (or take them from the options);
* yield the messages in header-stamp order through a short re-order buffer (recorders log in arrival order); a
  message that does not deserialise is counted and skipped, a truncated file ends the stream with what was read.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GeolocError
from .messages import stamp_of

GPS_T, ODOM_T = "sensor_msgs/msg/NavSatFix", "nav_msgs/msg/Odometry"
IMAGE_T, COMPRESSED_T = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_T = "sensor_msgs/msg/CameraInfo"


class BagInputError(GeolocError):
    """The bag cannot be replayed (not a rosbag2, unsupported serialization, no usable topic, ...)."""


@dataclass
class Topics:
    """The topics a replay reads (None: not in the bag); ``ignored``: other camera, GPS and odometry topics."""

    camera: str | None = None
    gps: str | None = None
    odom: str | None = None
    truth: str | None = None
    camera_info: str | None = None
    ignored: list = field(default_factory=list)

    def kinds(self) -> dict:
        """topic -> the kind of message the replay makes of it."""
        pairs = ((self.camera, "camera"), (self.camera_info, "camera_info"), (self.gps, "gps"), (self.odom, "odom"),
                 (self.truth, "truth"))
        return {t: k for t, k in pairs if t is not None}


class BagSource:
    """A rosbag2 opened for replay: topic selection and per-connection deserialisation."""

    def __init__(self, path, topics: Topics | None = None, recover_dir=None):
        """``recover_dir``: where an unfinished bag (a cut MCAP, a sqlite3 bag without metadata.yaml) is recovered
        to (:func:`geoloc_node.bag_recover.open_or_recover`); None: such a bag is refused."""
        from rosbags.rosbag2 import Reader
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if self.path.is_file() and (self.path.parent / "metadata.yaml").exists():
            self.path = self.path.parent
        if not self.path.exists():
            raise BagInputError(f"{self.path}: no such file or directory")
        self.warnings: list[str] = []
        self.recovery = None  # the RecoveryReport when the bag had to be recovered
        read_path = self._recovered(recover_dir) if recover_dir is not None else self.path
        if not (read_path.is_dir() and (read_path / "metadata.yaml").exists()):
            hint = " (a ROS 1 bag? convert it with `rosbags-convert`)" if self.path.suffix == ".bag" else ""
            raise BagInputError(f"{self.path}: not a rosbag2 directory (no metadata.yaml){hint}")
        try:
            self.reader = Reader(read_path)
            self.reader.open()
        except Exception as exc:  # rosbags raises ReaderError and others for unreadable bags
            raise BagInputError(f"{self.path}: cannot read this bag: {exc}") from None
        self.default_store = get_typestore(Stores.ROS2_HUMBLE)
        self._stores: dict[int, object] = {}
        self.topics = self._select(topics or Topics())

    def _recovered(self, recover_dir) -> Path:
        """The folder to read: the bag itself, or its recovered copy when it was left unfinished."""
        from .bag_recover import BagRecoveryError, open_or_recover

        if self.path.suffix == ".bag" and self.path.is_file():
            return self.path  # ROS 1: refused below with a hint
        try:
            read_path, report = open_or_recover(self.path, Path(recover_dir))
        except BagRecoveryError as exc:
            raise BagInputError(str(exc)) from None
        if report is not None:
            self.recovery = report
            self.warnings.append(f"unfinished bag recovered into {read_path}: {report.text()}")
        read_path = Path(read_path)
        return read_path.parent if read_path.is_file() else read_path

    def close(self) -> None:
        try:
            self.reader.close()
        except Exception:  # noqa: BLE001
            pass

    def _by_type(self, *types):
        return [c for c in self.reader.connections if c.msgtype in types]

    def _select(self, want: Topics) -> Topics:
        conns = self.reader.connections
        names = {c.topic for c in conns}
        for t in (want.camera, want.gps, want.odom, want.truth):
            if t and t not in names:
                raise BagInputError(f"topic {t!r} is not in the bag; it has: {', '.join(sorted(names))}")

        def pick(cands, prefer=()):
            cands = [c for c in cands if c.msgcount > 0] or cands
            if not cands:
                return None
            return max(cands, key=lambda c: (any(p in c.topic for p in prefer), c.msgcount, -len(c.topic))).topic

        navsat = self._by_type(GPS_T)
        is_truth = [c for c in navsat if "truth" in c.topic or "ground" in c.topic]
        sel = Topics(
            camera=want.camera or pick(self._by_type(IMAGE_T, COMPRESSED_T), ("image_raw", "camera")),
            gps=want.gps or pick([c for c in navsat if c not in is_truth], ("gps", "fix")),
            odom=want.odom or pick([c for c in self._by_type(ODOM_T) if "truth" not in c.topic], ("odom",)),
            truth=want.truth or pick(is_truth))
        if sel.camera is not None:  # the CameraInfo beside the image topic (.../image_raw -> .../camera_info)
            base = sel.camera.rsplit("/", 2 if sel.camera.endswith("/compressed") else 1)[0]
            sel.camera_info = pick(self._by_type(CAMERA_INFO_T), (base,))
        used = {sel.camera, sel.gps, sel.odom, sel.truth, sel.camera_info}
        sel.ignored = sorted({c.topic for c in self._by_type(IMAGE_T, COMPRESSED_T, GPS_T, ODOM_T)} - used)
        for c in conns:
            if c.topic in used:
                self._stores[c.id] = self._store_for(c)
        return sel

    def _store_for(self, conn):
        """A typestore able to deserialise this connection: the bag's own definition, else the built-in one."""
        from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

        fmt = getattr(conn.msgdef, "format", None)
        data = getattr(conn.msgdef, "data", "")
        if fmt is not None and getattr(fmt, "name", "NONE") != "NONE" and data:
            try:
                store = get_typestore(Stores.EMPTY)
                if fmt.name == "MSG":
                    store.register(get_types_from_msg(data, conn.msgtype))
                else:
                    typs = {}
                    sep = "=" * 80 + "\n"
                    parts = data.split(sep)[1:] if data.startswith(f"{sep}IDL: ") else [None]
                    for part in parts:
                        idl = data if part is None else part.split("\n", 1)[1]
                        typs.update(get_types_from_idl(idl))
                    store.register(typs)
                return store
            except Exception as exc:  # noqa: BLE001 - an unparsable schema must not stop the replay
                self.warnings.append(f"{conn.topic}: the bag's message definition does not parse ({exc}); "
                                     "using the built-in ROS 2 definition")
        if conn.msgtype not in self.default_store.types:
            raise BagInputError(f"{conn.topic}: no definition of {conn.msgtype} in the bag or built in")
        return self.default_store

    def count(self) -> int:
        wanted = self.topics.kinds()
        return sum(c.msgcount for c in self.reader.connections if c.topic in wanted)

    def messages(self):
        """Yield (kind, message object or None, error text) in record order; kind in camera/camera_info/gps/odom/
        truth, or 'error' once when the file ends early."""
        kinds = self.topics.kinds()
        conns = [c for c in self.reader.connections if c.topic in kinds]
        if not conns:  # an empty selection would mean "every topic" to rosbags
            return
        it = self.reader.messages(connections=conns)
        while True:
            try:
                conn, _, raw = next(it)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file: keep what was read
                yield "error", None, f"reading the bag stopped early ({type(exc).__name__}: {exc})"
                return
            kind = kinds[conn.topic]
            try:
                msg = self._stores[conn.id].deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:  # noqa: BLE001 - a corrupt message is counted, not fatal
                yield kind, None, f"{conn.topic}: message does not deserialise ({exc})"
                continue
            yield kind, msg, ""

    def in_stamp_order(self, reorder_s: float, on_skip):
        """Yield (stamp, kind, message) in header-stamp order, holding messages ``reorder_s`` seconds of stamps in a
        buffer (recorders log in arrival order, not stamp order). ``on_skip(kind, text)`` hears of each message that
        cannot be used (does not deserialise, no header) and of a file that ends early (kind 'error')."""
        heap: list = []
        seq = 0
        for kind, msg, err in self.messages():
            if kind == "error":
                on_skip(kind, err)
                break
            if msg is None:
                on_skip(kind, err)
                continue
            try:
                stamp = stamp_of(msg)
            except Exception:  # noqa: BLE001 - a message without a usable header
                on_skip(kind, f"{kind} message without a usable header stamp")
                continue
            heapq.heappush(heap, (stamp, seq, kind, msg))
            seq += 1
            while heap and heap[0][0] < stamp - reorder_s:
                s, _, k, m = heapq.heappop(heap)
                yield s, k, m
        while heap:
            s, _, k, m = heapq.heappop(heap)
            yield s, k, m
