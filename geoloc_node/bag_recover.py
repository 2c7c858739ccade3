"""``geoloc bag-recover IN OUT``: a clean rosbag2 folder from an unfinished or damaged recording.

Vehicles lose power mid-recording. What that leaves behind, and what this module does about it:

* an MCAP without its summary section or footer (the recorder never closed the file), or cut inside a chunk: the
  records are read one after another from the start (no index needed) and every complete message is kept, including
  the complete messages at the start of the cut chunk (an uncompressed chunk is parsed as far as it goes, a zstd or
  lz4 chunk is decompressed as far as its bytes go); what follows the last complete record is reported as lost;
* a sqlite3 bag without metadata.yaml (rosbag2 writes it only when the recording ends): the .db3 is copied and its
  metadata rebuilt from its tables, as ``ros2 bag reindex`` does; a write-ahead log left beside it is merged first.

The output is a rosbag2 folder (metadata.yaml plus one .mcap, or the .db3 files) that ``rosbags`` reads. It is written
into a temporary sibling folder and renamed into place: an interrupted recovery leaves no half output. Messages are
copied byte for byte (never deserialised), so schemas, QoS profiles and type hashes come along unchanged. Topics
rosbags cannot read (a serialization format other than cdr, no schema) are left out and named in the report.

:func:`open_or_recover` is the entry for readers such as ``geoloc replay``: the bag unchanged when rosbags opens it,
else a recovered copy in a work folder (reused while the source is unchanged), else a :class:`BagRecoveryError`.
A bag whose files are intact but whose metadata declares something rosbags cannot read (e.g. a serialization format
other than cdr) is refused, not "recovered": rebuilding its metadata from the files would hide what the recorder said.

Exit codes of the command: 0 recovered (the summary on stdout), 2 nothing usable (one line on stderr), 130 stopped.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sqlite3
import struct
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import GeolocError
from .progress import progress_bar

MCAP_MAGIC = b"\x89MCAP0\r\n"
#: MCAP record opcodes this module acts on (the rest of the data section, e.g. message indexes, is skipped)
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
OP_STATISTICS, OP_DATA_END = 0x0B, 0x0F
RECORD_NAMES = {OP_HEADER: "header", OP_FOOTER: "footer", OP_SCHEMA: "schema", OP_CHANNEL: "channel",
                OP_MESSAGE: "message", OP_CHUNK: "chunk", 0x07: "message index", 0x08: "chunk index",
                0x09: "attachment", 0x0A: "attachment index", OP_STATISTICS: "statistics", 0x0C: "metadata",
                0x0D: "metadata index", 0x0E: "summary offset", OP_DATA_END: "data end"}
#: schema encodings rosbags understands: a channel with another one would make its reader fail on the whole file
ROSBAGS_SCHEMA_ENCODINGS = ("ros2msg", "ros2idl", "omgidl", "")
#: metadata.yaml version written: 8 keeps offered_qos_profiles as the string the recorder stored (9 wants a list)
METADATA_VERSION = 8
OUTPUT_CHUNK_BYTES = 1 << 20  # as rosbag2 and rosbags write MCAP chunks
REPORT_FILE = "recovery.json"  # the report, beside the recovered bag (rosbag2 readers ignore other files)
MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time


class BagRecoveryError(GeolocError):
    """Nothing usable can be recovered from a bag (the message names the file and the problem)."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = _one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")


@dataclass
class RecoveryReport:
    """What a recovery found and kept. Counts are messages; ``messages_lost`` is None when it cannot be known (a cut
    file with neither its statistics nor a metadata.yaml to say how many messages there were)."""

    source: str
    output: str = ""
    storage: str = ""  # "mcap" or "sqlite3"
    messages: dict[str, int] = field(default_factory=dict)  # recovered, per topic
    messages_lost: int | None = 0
    lost_per_topic: dict[str, int] = field(default_factory=dict)
    unreadable_bytes: int = 0  # source bytes that held no complete record: the cut tail, corrupt chunks
    salvaged_messages: int = 0  # of the recovered: complete messages taken from a cut chunk
    dropped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why rosbags cannot read it
    dropped_messages: int = 0  # messages of the dropped topics (left out on purpose, not lost)
    notes: list[str] = field(default_factory=list)  # what was wrong, one sentence each

    @property
    def recovered(self) -> int:
        return sum(self.messages.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "recovered": self.recovered}

    @classmethod
    def from_dict(cls, d: dict) -> RecoveryReport:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def text(self) -> str:
        """One paragraph for a person: what was recovered, what was wrong, what was lost or left out."""
        topics = sorted(self.messages.items())
        shown = ", ".join(f"{t} {n:,}" for t, n in topics[:8]) + (f" and {len(topics) - 8} more" if len(topics) > 8
                                                                  else "")
        parts = [f"Recovered {self.recovered:,} message(s) on {len(topics)} topic(s) from {self.source} into "
                 f"{self.output} ({self.storage}): {shown}."]
        if self.notes:
            parts.append("What was wrong: " + " ".join(self.notes))
        if self.messages_lost is None:
            parts.append(f"Lost: an unknown number of messages ({self.unreadable_bytes:,} byte(s) in incomplete or "
                         "corrupt records).")
        elif self.messages_lost:
            per = ", ".join(f"{t} {n:,}" for t, n in sorted(self.lost_per_topic.items()) if n)
            parts.append(f"Lost: {self.messages_lost:,} message(s)" + (f" ({per})." if per else "."))
        else:
            parts.append("No message was lost" + (f" ({self.unreadable_bytes:,} byte(s) of incomplete index or "
                                                  "record ignored)." if self.unreadable_bytes else "."))
        if self.salvaged_messages:
            parts.append(f"{self.salvaged_messages:,} of the recovered messages came from the cut chunk.")
        if self.dropped_topics:
            parts.append(f"Left out ({self.dropped_messages:,} message(s) rosbags cannot read): " + "; ".join(
                f"{t}: {why}" for t, why in sorted(self.dropped_topics.items())) + ".")
        return " ".join(parts)


# -- finding the storage files ---------------------------------------------------------------------------------------
def _one_line(text) -> str:
    return " ".join(str(text).split())


def _natural_key(path: Path):
    """bag_2 before bag_10 (rosbag2 numbers its split files without leading zeros)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def _source_metadata(folder: Path) -> dict | None:
    """The folder's metadata.yaml (``rosbag2_bagfile_information``), or None when missing or unreadable."""
    import yaml

    try:
        info = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return info if isinstance(info, dict) else None
    except (OSError, yaml.YAMLError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _locate(src: Path) -> tuple[str, list[Path], dict | None, list[str]]:
    """(storage, storage files in recording order, the source metadata or None, notes) of a bag folder or file."""
    notes: list[str] = []
    meta = _source_metadata(src if src.is_dir() else src.parent)
    if src.is_file():
        files = [src]
        if meta and [Path(str(n)).name for n in meta.get("relative_file_paths") or []] != [src.name]:
            meta = None  # its counts and formats describe other files too
        if meta is None:
            notes.append(f"{src.name} came alone (no metadata.yaml for it): metadata rebuilt from its contents.")
    elif meta and meta.get("relative_file_paths"):
        listed = [src / Path(str(p)).name for p in meta["relative_file_paths"]]
        files = [p for p in listed if p.exists()]
        if len(files) < len(listed):
            notes.append(f"metadata.yaml lists {len(listed) - len(files)} file(s) that are missing: "
                         f"{', '.join(p.name for p in listed if not p.exists())}.")
        # a metadata.yaml written at a split of a recording that went on does not list the files started after it
        unlisted = [p for p in sorted([*src.glob("*.mcap"), *src.glob("*.db3")], key=_natural_key) if p not in listed]
        if unlisted:
            files += unlisted
            notes.append(f"{', '.join(p.name for p in unlisted)} not listed in metadata.yaml: recovered too.")
    else:
        files = sorted([*src.glob("*.mcap"), *src.glob("*.db3")], key=_natural_key)
        notes.append("No metadata.yaml (the recording was not closed): rebuilt from the storage files." if
                     not (src / "metadata.yaml").exists() else "metadata.yaml is unreadable: rebuilt from the "
                     "storage files.")
    kinds = {p.suffix for p in files}
    if not files:
        raise BagRecoveryError(src, "no storage file (.mcap or .db3) to recover")
    if kinds - {".mcap", ".db3"}:
        raise BagRecoveryError(src, f"cannot recover {', '.join(sorted(p.name for p in files))}: only .mcap and "
                                    ".db3 storage files (a compressed bag must be decompressed first)")
    if len(kinds) > 1:
        raise BagRecoveryError(src, "holds both .mcap and .db3 files: recover them one file at a time")
    if meta and str(meta.get("compression_mode", "")).lower() == "file":
        raise BagRecoveryError(src, "a file-compressed bag: decompress its files first (zstd -d)")
    return ("mcap" if ".mcap" in kinds else "sqlite3"), files, meta, notes


def _declared_formats(meta: dict | None) -> dict[str, str]:
    """Serialization format per topic as the source metadata.yaml declares it (empty without one)."""
    out = {}
    for t in (meta or {}).get("topics_with_message_count") or []:
        with contextlib.suppress(KeyError, TypeError):
            out[t["topic_metadata"]["name"]] = str(t["topic_metadata"]["serialization_format"])
    return out


def _declared_counts(meta: dict | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in (meta or {}).get("topics_with_message_count") or []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            name = t["topic_metadata"]["name"]
            out[name] = out.get(name, 0) + int(t["message_count"])
    return out


# -- what goes into metadata.yaml -----------------------------------------------------------------------------------
@dataclass
class _Topic:
    """One ``topics_with_message_count`` entry (one per topic, type and QoS, as rosbags matches them)."""

    name: str
    type: str
    qos: str = ""
    type_hash: str = ""
    count: int = 0


@dataclass
class _File:
    name: str
    start: int = 2**63 - 1
    end: int = 0
    count: int = 0

    def add(self, t_ns: int) -> None:
        self.start, self.end, self.count = min(self.start, t_ns), max(self.end, t_ns), self.count + 1


def _write_metadata(folder: Path, storage: str, files: list[_File], topics: list[_Topic], source: dict | None):
    """metadata.yaml for the recovered files, in the shape rosbags' and rosbag2's readers expect."""
    import yaml

    source = source or {}
    used = [f for f in files if f.count]
    start = min((f.start for f in used), default=0)
    end = max((f.end for f in used), default=0)
    info = {
        "version": METADATA_VERSION,
        "storage_identifier": storage,
        "relative_file_paths": [f.name for f in files],
        "duration": {"nanoseconds": end - start},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": sum(f.count for f in files),
        "topics_with_message_count": [
            {"topic_metadata": {"name": t.name, "type": t.type, "serialization_format": "cdr",
                                "offered_qos_profiles": t.qos, "type_description_hash": t.type_hash},
             "message_count": t.count} for t in topics],
        # message-compressed data is copied as it is, so the output keeps the source's declaration
        "compression_format": str(source.get("compression_format") or ""),
        "compression_mode": str(source.get("compression_mode") or ""),
        "files": [{"path": f.name, "starting_time": {"nanoseconds_since_epoch": f.start if f.count else 0},
                   "duration": {"nanoseconds": f.end - f.start if f.count else 0}, "message_count": f.count}
                  for f in files],
        "custom_data": source.get("custom_data") or {},  # a map, never null (rosbag2's C++ reader wants one)
        "ros_distro": str(source.get("ros_distro") or ""),
    }
    text = yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False, default_flow_style=False)
    (folder / "metadata.yaml").write_text(text)


# -- MCAP ------------------------------------------------------------------------------------------------------------
class _Corrupt(Exception):
    """A record that is complete but cannot be parsed or decompressed."""


@dataclass
class _McapScan:
    """What one pass over an MCAP file found besides its messages."""

    path: Path
    size: int
    schemas: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)  # messages read per channel id (kept or dropped)
    statistics: object | None = None
    data_end: bool = False  # the data-end record was read: every message of the file lies before it
    footer: bool = False
    stop_offset: int | None = None  # where reading stopped before the end of the file
    corrupt_records: int = 0
    unreadable_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def stop(self, offset: int, sentence: str) -> None:
        """Reading ends at ``offset``: the rest of the file holds no complete record."""
        self.stop_offset = offset
        self.unreadable_bytes += self.size - offset
        self.notes.append(sentence)


def _parse(cls, body: bytes):
    """An mcap record class's ``read`` over a complete record body."""
    from mcap.data_stream import ReadDataStream
    from mcap.exceptions import McapError

    try:
        return cls.read(ReadDataStream(io.BytesIO(body)))
    except (McapError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise _Corrupt(f"{cls.__name__.lower()} record does not parse ({type(exc).__name__})") from None


def _decompress(data: bytes, compression: str) -> bytes:
    """As many bytes as ``data`` decompresses to; a cut zstd or lz4 stream gives its complete blocks."""
    try:
        if compression == "":
            return bytes(data)
        if compression == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        if compression == "lz4":
            import lz4.frame

            return lz4.frame.LZ4FrameDecompressor().decompress(data)
    except Exception as exc:  # noqa: BLE001 - zstandard and lz4 raise their own error types for corrupt data
        raise _Corrupt(f"{compression} chunk does not decompress ({_one_line(exc)})") from None
    raise _Corrupt(f"unknown chunk compression {compression!r}")


def _chunk_payload(body: bytes) -> tuple[str, int, bytes]:
    """(compression, uncompressed size, compressed records) of a chunk record body, possibly cut short."""
    try:
        _start, _end, size, _crc, n = struct.unpack_from("<QQQII", body, 0)
        compression = body[32:32 + n].decode()
        (length,) = struct.unpack_from("<Q", body, 32 + n)
    except (struct.error, UnicodeDecodeError):
        raise _Corrupt("chunk header does not parse") from None
    return compression, size, body[40 + n:40 + n + length]


def _inner_records(data: bytes, scan: _McapScan) -> Iterator[tuple]:
    """The complete messages of decompressed chunk data (schemas and channels go into ``scan``); stops quietly at
    an incomplete last record, which is what a cut chunk ends with."""
    pos, n = 0, len(data)
    while pos + 9 <= n:
        opcode, length = struct.unpack_from("<BQ", data, pos)
        if pos + 9 + length > n:
            return
        yield from _record(opcode, data[pos + 9:pos + 9 + length], scan)
        pos += 9 + length


def _record(opcode: int, body: bytes, scan: _McapScan) -> Iterator[tuple]:
    """Messages of one record: (channel id, log time, publish time, sequence, data, from a cut chunk: False)."""
    if opcode == OP_MESSAGE:  # the hot path: parsed here, without a record object per message
        if len(body) < MESSAGE_HEAD.size:
            raise _Corrupt("message record shorter than its header")
        cid, seq, log, pub = MESSAGE_HEAD.unpack_from(body, 0)
        scan.seen[cid] = scan.seen.get(cid, 0) + 1
        yield cid, log, pub, seq, body[MESSAGE_HEAD.size:], False
        return
    from mcap.records import Channel, Header, Schema, Statistics

    if opcode == OP_CHUNK:
        compression, size, payload = _chunk_payload(body)
        data = _decompress(payload, compression)
        if len(data) != size:
            raise _Corrupt(f"chunk decompresses to {len(data):,} bytes, not {size:,}")
        yield from _inner_records(data, scan)
    elif opcode == OP_SCHEMA:
        schema = _parse(Schema, body)
        scan.schemas.setdefault(schema.id, schema)
    elif opcode == OP_CHANNEL:
        channel = _parse(Channel, body)
        scan.channels.setdefault(channel.id, channel)
    elif opcode == OP_STATISTICS:
        scan.statistics = _parse(Statistics, body)
    elif opcode == OP_DATA_END:
        scan.data_end = True
    elif opcode == OP_FOOTER:
        scan.footer = True
    elif opcode == OP_HEADER:
        profile = _parse(Header, body).profile
        if profile != "ros2":
            scan.notes.append(f"{scan.path.name} has MCAP profile {profile!r}, written as 'ros2'.")


def _salvage_chunk(body: bytes, scan: _McapScan) -> Iterator[tuple]:
    """The complete messages at the start of a chunk the file ends inside."""
    try:
        compression, _size, payload = _chunk_payload(body)
        records = list(_inner_records(_decompress(payload, compression), scan))
    except _Corrupt:
        return
    for cid, log, pub, seq, data, _ in records:
        yield cid, log, pub, seq, data, True


def _mcap_messages(path: Path, scan: _McapScan, bar) -> Iterator[tuple]:
    """Every complete message of an MCAP file, in file order, read record by record from the start.

    Why not ``mcap.stream_reader.StreamReader``: it cannot say at which byte it stopped (needed to salvage a cut
    chunk and to report what was lost), reads a corrupt length's worth of bytes before failing, and walks a
    zero-filled tail (what a power cut often leaves) nine bytes at a time; the record parsers are the mcap library's.
    """
    with open(path, "rb") as f:
        if f.read(8) != MCAP_MAGIC:
            raise BagRecoveryError(path, "not an MCAP file (its first bytes are not the MCAP magic)")
        pos = 8
        while pos < scan.size and not scan.footer:
            head = f.read(9)
            if len(head) < 9:
                scan.stop(pos, f"{path.name} ends at byte {scan.size:,} inside a record header.")
                return
            opcode, length = struct.unpack("<BQ", head)
            if opcode == 0:  # not a record: zeros where the data never reached the disk, or garbage
                scan.stop(pos, f"{path.name} holds no valid record from byte {pos:,} on (opcode 0: zeros where the "
                               "data never reached the disk?).")
                return
            if length > scan.size - pos - 9:
                name = RECORD_NAMES.get(opcode, f"opcode {opcode:#04x}")
                scan.stop(pos, f"{path.name} ends at byte {scan.size:,} inside a {name} record that starts at byte "
                               f"{pos:,} ({scan.size - pos - 9:,} of its {length:,} bytes are there).")
                if opcode == OP_CHUNK:
                    yield from _salvage_chunk(f.read(), scan)
                return
            body = f.read(length)
            try:
                yield from _record(opcode, body, scan)
            except _Corrupt as exc:
                scan.corrupt_records += 1
                scan.unreadable_bytes += 9 + length
                scan.notes.append(f"{path.name}: a {exc} at byte {pos:,}; skipped.")
            pos += 9 + length
            bar.update(9 + length)


class _McapOut:
    """The recovered MCAP: each schema and channel registered once, messages copied byte for byte."""

    def __init__(self, path: Path):
        from mcap.writer import CompressionType, Writer

        self.path = path
        self._file = open(path, "xb")
        self._writer = Writer(self._file, chunk_size=OUTPUT_CHUNK_BYTES, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="geoloc_node bag-recover")
        self._schemas: dict[tuple, int] = {}
        self._channels: dict[tuple, int] = {}
        self.topics: dict[int, _Topic] = {}
        self.file = _File(path.name)

    def channel(self, schema, channel) -> int:
        """The output channel id of a source channel (same topic, type, definition and metadata: same id)."""
        skey = (schema.name, schema.encoding, bytes(schema.data))
        if skey not in self._schemas:
            self._schemas[skey] = self._writer.register_schema(schema.name, schema.encoding, bytes(schema.data))
        key = (channel.topic, channel.message_encoding, skey, tuple(sorted(channel.metadata.items())))
        if key not in self._channels:
            cid = self._writer.register_channel(channel.topic, channel.message_encoding, self._schemas[skey],
                                                dict(channel.metadata))
            self._channels[key] = cid
            self.topics[cid] = _Topic(channel.topic, schema.name, channel.metadata.get("offered_qos_profiles", ""),
                                      channel.metadata.get("topic_type_hash", ""))
        return self._channels[key]

    def add(self, cid: int, log: int, pub: int, seq: int, data: bytes) -> None:
        self._writer.add_message(cid, log_time=log, data=data, publish_time=pub, sequence=seq)
        self.topics[cid].count += 1
        self.file.add(log)

    def close(self) -> None:
        self._writer.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def abort(self) -> None:
        self._file.close()


def _unusable_channel(channel, schema) -> str | None:
    """Why rosbags could not read this channel, or None when it can."""
    if channel.message_encoding != "cdr":
        return f"message encoding {channel.message_encoding!r} (rosbags reads cdr only)"
    if schema is None:
        return "no schema (message type unknown)"
    if schema.encoding not in ROSBAGS_SCHEMA_ENCODINGS:
        return f"schema encoding {schema.encoding!r} is not a ROS 2 one"
    return None


def _copy_mcap_file(path: Path, out: _McapOut, report: RecoveryReport, declared: dict, bar) -> _McapScan:
    """Copy every usable complete message of one MCAP file into ``out``."""
    scan = _McapScan(path, path.stat().st_size)
    mapping: dict[int, int | None] = {}  # source channel id -> output channel id, None: left out

    def resolve(cid: int) -> int | None:
        if cid not in mapping:
            ch = scan.channels[cid]
            schema = scan.schemas.get(ch.schema_id)
            why = _unusable_channel(ch, schema)
            if why is None and declared.get(ch.topic, "cdr") != "cdr":
                why = f"metadata.yaml declares serialization format {declared[ch.topic]!r} (rosbags reads cdr only)"
            if why is not None:
                report.dropped_topics.setdefault(ch.topic, why)
            mapping[cid] = None if why else out.channel(schema, ch)
        return mapping[cid]

    orphans = 0
    for cid, log, pub, seq, data, salvaged in _mcap_messages(path, scan, bar):
        if cid not in scan.channels:
            orphans += 1
            continue
        out_id = resolve(cid)
        if out_id is None:
            report.dropped_messages += 1
            continue
        out.add(out_id, log, pub, seq, data)
        report.salvaged_messages += salvaged
    for cid in scan.channels:  # topics without messages are listed too, as in the intact bag
        resolve(cid)
    if orphans:
        scan.notes.append(f"{path.name}: {orphans} message(s) of a channel never defined in the file; left out.")
    return scan


def _lost_in_file(scan: _McapScan) -> dict[str, int] | None:
    """Messages missing from one file per topic, when the file says how many it had (its statistics), or 0 when
    reading reached its data-end record with no corrupt record; None when unknown."""
    if scan.statistics is not None:
        lost: dict[str, int] = {}
        for cid, n in scan.statistics.channel_message_counts.items():
            ch = scan.channels.get(cid)
            missing = n - scan.seen.get(cid, 0)
            if missing > 0:
                topic = ch.topic if ch else f"channel {cid}"
                lost[topic] = lost.get(topic, 0) + missing
        return lost
    if scan.data_end and not scan.corrupt_records:
        return {}
    return None


def _recover_mcap(files: list[Path], folder: Path, name: str, meta: dict | None, report: RecoveryReport,
                  progress: bool) -> tuple[list[_File], list[_Topic]]:
    out = _McapOut(folder / f"{name}_0.mcap")
    declared = _declared_formats(meta)
    scans = []
    try:
        with progress_bar(total=sum(p.stat().st_size for p in files), enabled=progress, unit="B", unit_scale=True,
                          desc=f"bag-recover {name}") as bar:
            for path in files:
                scans.append(_copy_mcap_file(path, out, report, declared, bar))
        out.close()
    except BaseException:
        out.abort()
        raise
    for scan in scans:
        report.notes.extend(scan.notes)
        report.unreadable_bytes += scan.unreadable_bytes
        name = scan.path.name
        if scan.data_end and not scan.footer:
            report.notes.append(f"{name} has its whole data section (every message), but no complete summary or "
                                "footer.")
        elif scan.stop_offset is None and not scan.footer:
            report.notes.append(f"{name} ends at byte {scan.size:,} between two records, before its data-end "
                                "record: whatever was recorded after that never reached the file.")
    for t in out.topics.values():
        report.messages[t.name] = report.messages.get(t.name, 0) + t.count
    _count_lost_mcap(scans, meta, report)
    return [out.file], list(out.topics.values())


def _count_lost_mcap(scans: list[_McapScan], meta: dict | None, report: RecoveryReport) -> None:
    """Messages lost per topic: from each file's statistics, else from the source's metadata.yaml, else unknown."""
    per_file = [_lost_in_file(s) for s in scans]
    if all(p is not None for p in per_file):
        for p in per_file:
            for topic, n in p.items():
                report.lost_per_topic[topic] = report.lost_per_topic.get(topic, 0) + n
    elif _declared_counts(meta):  # the source's metadata.yaml says how many there were
        seen: dict[str, int] = {}
        for s in scans:
            for cid, n in s.seen.items():
                if cid in s.channels:
                    seen[s.channels[cid].topic] = seen.get(s.channels[cid].topic, 0) + n
        report.lost_per_topic = {t: n - seen.get(t, 0) for t, n in _declared_counts(meta).items()
                                 if n > seen.get(t, 0)}
    else:
        report.messages_lost = None
        return
    report.messages_lost = sum(report.lost_per_topic.values())


# -- sqlite3 ---------------------------------------------------------------------------------------------------------
def _copy_database(path: Path, copy: Path, report: RecoveryReport) -> None:
    """Copy a .db3 with the journal files beside it, then let SQLite apply them to the copy (the source is never
    written): a write-ahead log holds the last committed messages, a hot rollback journal undoes a cut transaction.
    """
    shutil.copyfile(path, copy)
    journals = []
    for suffix in ("-wal", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists() and side.stat().st_size:
            shutil.copyfile(side, copy.with_name(copy.name + suffix))
            journals.append(side.name)
    if journals:
        try:
            with contextlib.closing(sqlite3.connect(copy)) as db:
                db.execute("PRAGMA journal_mode=DELETE").fetchall()  # checkpoints a WAL into the file
        except sqlite3.DatabaseError as exc:
            raise BagRecoveryError(path, f"its journal {', '.join(journals)} cannot be applied ({exc})") from None
        report.notes.append(f"{path.name}: applied {', '.join(journals)} left beside it.")
    for suffix in ("-wal", "-shm", "-journal"):
        copy.with_name(copy.name + suffix).unlink(missing_ok=True)


def _reindex_database(db: sqlite3.Connection, path: Path, declared: dict, report: RecoveryReport,
                      topics: dict[tuple, _Topic]) -> _File:
    """Check one rosbag2 database, delete the topics rosbags cannot read, and count its messages per topic."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"topics", "messages"} <= tables:
        raise BagRecoveryError(path, "not a rosbag2 database (no topics and messages tables)")
    check = db.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise BagRecoveryError(path, f"the database is damaged ({check}); try `sqlite3 {path.name} .recover`")
    cols = {r[1] for r in db.execute("PRAGMA table_info(topics)")}
    qos = "t.offered_qos_profiles" if "offered_qos_profiles" in cols else "''"
    thash = "t.type_description_hash" if "type_description_hash" in cols else "''"
    rows = db.execute(f"SELECT t.id, t.name, t.type, t.serialization_format, {qos}, {thash}, count(m.id) "
                      "FROM topics t LEFT JOIN messages m ON m.topic_id = t.id GROUP BY t.id ORDER BY t.id").fetchall()
    bad = []
    for tid, name, typ, fmt, qos_text, type_hash, n in rows:
        fmt = fmt if declared.get(name, "cdr") == "cdr" else declared[name]
        if fmt != "cdr":
            report.dropped_topics.setdefault(name, f"serialization format {fmt!r} (rosbags reads cdr only)")
            report.dropped_messages += n
            bad.append(tid)
            continue
        t = topics.setdefault((name, typ, qos_text or "", type_hash or ""), _Topic(name, typ, qos_text or "",
                                                                                    type_hash or ""))
        t.count += n
    if bad:
        marks = ",".join("?" * len(bad))
        db.execute(f"DELETE FROM messages WHERE topic_id IN ({marks})", bad)
        db.execute(f"DELETE FROM topics WHERE id IN ({marks})", bad)
        db.commit()
    orphans = db.execute("SELECT count(*) FROM messages WHERE topic_id NOT IN (SELECT id FROM topics)").fetchone()[0]
    if orphans:
        report.notes.append(f"{path.name}: {orphans} message(s) of a topic missing from its topics table; left out.")
    start, end, count = db.execute("SELECT min(timestamp), max(timestamp), count(*) FROM messages "
                                   "WHERE topic_id IN (SELECT id FROM topics)").fetchone()
    return _File(path.name, start if count else 2**63 - 1, end if count else 0, count)


def _database_distro(db: sqlite3.Connection) -> str:
    with contextlib.suppress(sqlite3.DatabaseError):
        row = db.execute("SELECT ros_distro FROM schema").fetchone()
        return str(row[0]) if row and row[0] else ""
    return ""


def _recover_sqlite(files: list[Path], folder: Path, meta: dict | None, report: RecoveryReport,
                    progress: bool) -> tuple[list[_File], list[_Topic], str]:
    """Copy each database into ``folder`` and rebuild what metadata.yaml says about it."""
    declared = _declared_formats(meta)
    topics: dict[tuple, _Topic] = {}
    out_files, distro = [], ""
    with progress_bar(total=len(files), enabled=progress, unit="file", desc="bag-recover") as bar:
        for path in files:
            copy = folder / path.name
            _copy_database(path, copy, report)
            try:
                with contextlib.closing(sqlite3.connect(copy)) as db:
                    out_files.append(_reindex_database(db, path, declared, report, topics))
                    distro = distro or _database_distro(db)
            except sqlite3.DatabaseError as exc:
                raise BagRecoveryError(path, f"cannot be read as a rosbag2 database ({exc})") from None
            bar.update(1)
    for t in topics.values():
        report.messages[t.name] = report.messages.get(t.name, 0) + t.count
    declared_counts = _declared_counts(meta)
    report.lost_per_topic = {t: n - report.messages.get(t, 0) for t, n in declared_counts.items()
                             if n > report.messages.get(t, 0) and t not in report.dropped_topics}
    report.messages_lost = sum(report.lost_per_topic.values())
    return out_files, list(topics.values()), distro


# -- recovery, atomic ------------------------------------------------------------------------------------------------
def _partial_folder(dst: Path) -> Path:
    """A fresh temporary sibling of ``dst``; leftovers of recoveries whose process is gone are removed first."""
    prefix = f".{dst.name}.partial-"
    for old in dst.parent.iterdir():
        pid = old.name[len(prefix):]
        if old.name.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    tmp = dst.parent / f"{prefix}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    """Flush the recovered files before the rename publishes them (the next power cut must not undo a recovery)."""
    for p in [*folder.iterdir(), folder]:
        with contextlib.suppress(OSError):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def recover_bag(src, dst, *, progress: bool = False) -> RecoveryReport:
    """Write a clean rosbag2 folder ``dst`` (must not exist) from the unfinished or damaged bag ``src`` (a bag
    folder, or a single .mcap or .db3 file). Atomic: ``dst`` appears complete or not at all.

    Raises :class:`BagRecoveryError` when nothing rosbags can read is left (the message says why).
    """
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise BagRecoveryError(src, "no such file or directory")
    if dst.exists():
        raise BagRecoveryError(dst, "exists already; choose another output or remove it")
    if src.is_dir() and dst.resolve().is_relative_to(src.resolve()):
        raise BagRecoveryError(dst, f"must not lie inside the bag being recovered ({src})")
    storage, files, meta, notes = _locate(src)
    report = RecoveryReport(source=str(src), output=str(dst), storage=storage, notes=notes)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial_folder(dst)
    try:
        if storage == "mcap":
            out_files, topics = _recover_mcap(files, tmp, dst.name, meta, report, progress)
            distro = ""
        else:
            out_files, topics, distro = _recover_sqlite(files, tmp, meta, report, progress)
        if report.recovered == 0:
            left_out = "; ".join(f"{t}: {why}" for t, why in sorted(report.dropped_topics.items()))
            raise BagRecoveryError(src, "no message rosbags can read" + (f" ({left_out})" if left_out else
                                                                          ": " + " ".join(report.notes)))
        _write_metadata(tmp, storage, out_files, topics, {**(meta or {}), "ros_distro": (meta or {}).get(
            "ros_distro") or distro})
        (tmp / REPORT_FILE).write_text(json.dumps({"source_fingerprint": _fingerprint(src),
                                                   "report": report.to_dict()}, indent=1))
        _fsync_folder(tmp)
        os.rename(tmp, dst)
    except OSError as exc:
        raise BagRecoveryError(exc.filename or dst, exc.strerror or exc) from None
    except ModuleNotFoundError as exc:
        root = (exc.name or "mcap").split(".")[0]
        raise BagRecoveryError(src, f"recovering MCAP needs the {root!r} package: pip install {root}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


# -- for readers: the bag as it is, or recovered ------------------------------------------------------------------
def _fingerprint(src: Path) -> list:
    files = sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _unlisted_files(folder: Path, meta: dict | None) -> list[str]:
    """Storage files in ``folder`` that its metadata.yaml does not list (rosbags would silently skip them)."""
    listed = {Path(str(n)).name for n in (meta or {}).get("relative_file_paths") or []}
    return sorted(p.name for p in [*folder.glob("*.mcap"), *folder.glob("*.db3")] if p.name not in listed)


def _open_problem(folder: Path) -> str | None:
    """None when rosbags opens ``folder`` as a rosbag2 bag that covers all its storage files; else what is wrong."""
    from rosbags.rosbag2 import Reader

    if not (folder / "metadata.yaml").exists():
        return "no metadata.yaml (the recording was not closed, or a storage file was copied alone)"
    try:
        with Reader(folder):
            pass
    except Exception as exc:  # noqa: BLE001 - rosbags raises ReaderError, KeyError, OSError... for unreadable bags
        return _one_line(exc) or type(exc).__name__
    unlisted = _unlisted_files(folder, _source_metadata(folder))
    if unlisted:
        return f"metadata.yaml does not list {', '.join(unlisted)} (written at a split of a recording that went on?)"
    return None


def _files_intact(folder: Path, meta: dict | None) -> bool:
    """Whether metadata.yaml parses, lists every storage file and each opens on its own: then what rosbags refuses
    is what the metadata declares, which recovery must not paper over."""
    from rosbags.rosbag2 import Reader

    if not meta or not meta.get("relative_file_paths") or _unlisted_files(folder, meta):
        return False
    for name in meta["relative_file_paths"]:
        try:
            with Reader(folder / Path(str(name)).name):
                pass
        except Exception:  # noqa: BLE001 - any failure means a damaged or missing file: recover
            return False
    return True


def _reuse(dst: Path, src: Path) -> RecoveryReport | None:
    """The report of an earlier recovery of the unchanged ``src`` at ``dst``; a stale one is removed."""
    if not dst.exists():
        return None
    try:
        saved = json.loads((dst / REPORT_FILE).read_text())
    except (OSError, ValueError):
        raise BagRecoveryError(dst, "exists and is not a recovered bag; remove it or choose another work "
                                    "folder") from None
    if saved.get("source_fingerprint") == _fingerprint(src):
        return RecoveryReport.from_dict(saved["report"])
    shutil.rmtree(dst)
    return None


def open_or_recover(path, workdir) -> tuple[Path, RecoveryReport | None]:
    """(``path``, None) when rosbags opens the bag as it is; else (a recovered folder in ``workdir``, its report).

    ``path`` is a rosbag2 folder or a storage file (a file inside a bag folder stands for its folder). Raises
    :class:`BagRecoveryError` when the bag cannot be read and recovery finds nothing usable, or when its files are
    intact but declare something rosbags cannot read (e.g. a serialization format other than cdr).
    """
    path = Path(path)
    if not path.exists():
        raise BagRecoveryError(path, "no such file or directory")
    folder = path if path.is_dir() else path.parent
    problem = _open_problem(folder)
    if problem is None:
        return path, None
    if (folder / "metadata.yaml").exists() and _files_intact(folder, _source_metadata(folder)):
        raise BagRecoveryError(path, f"cannot be read: {problem} (its storage files are intact, so there is "
                                     "nothing to recover)")
    dst = Path(workdir) / f"{path.name if path.is_dir() else path.stem}.recovered"
    cached = _reuse(dst, path)
    if cached is not None:
        return dst, cached
    try:
        report = recover_bag(path, dst)
    except BagRecoveryError as exc:
        raise BagRecoveryError(path, f"cannot be read ({problem}) and recovery failed: {exc.problem}") from None
    report.notes.insert(0, f"rosbags could not open it: {problem}.")
    return dst, report


# -- CLI -------------------------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    p = subparsers.add_parser("bag-recover", help="recover an unfinished or damaged rosbag2 (cut MCAP, no "
                                                  "metadata.yaml) into a clean bag folder",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("input", metavar="IN", help="bag folder, or a single .mcap or .db3 file")
    p.add_argument("output", metavar="OUT", help="the recovered bag folder to write (must not exist)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args) -> int:
    from .signals import stop_signals_interrupt

    try:
        with stop_signals_interrupt():
            report = recover_bag(args.input, args.output, progress=not args.no_progress)
    except GeolocError as exc:
        print(f"geoloc bag-recover: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"geoloc bag-recover: interrupted; {args.output} was not written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the input is arbitrary damaged bytes: a reason, never a traceback
        print(f"geoloc bag-recover: {args.input}: unexpected {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict()) if args.json else report.text())
    return 0

