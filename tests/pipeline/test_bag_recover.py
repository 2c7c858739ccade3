"""bag_recover: MCAPs cut at byte offsets, sqlite3 bags without metadata.yaml, real bags, atomic output, the CLI."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from geoloc_node import bag_recover
from geoloc_node.bag_recover import BagRecoveryError, open_or_recover, recover_bag
from geoloc_node.cli import main as geoloc
from geoloc_node.errors import GeolocError

mcap_reader = pytest.importorskip("mcap.reader")

TS = get_typestore(Stores.ROS2_JAZZY)
T = TS.types
IMAGE, NAVSAT = "sensor_msgs/msg/Image", "sensor_msgs/msg/NavSatFix"
REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real_bags"
if not REAL.exists():
    REAL = Path(os.environ.get("GEOLOC_REAL_BAGS", "/work/shared/fixtures/real_bags"))
needs_real = pytest.mark.skipif(not REAL.exists(), reason="real bag fixtures not available")
ROOT = Path(__file__).resolve().parents[2]


def _header(sec, frame):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=0), frame_id=frame)


def drive_messages(n_frames=300, seed=0):
    """(topic, type, t_ns, cdr bytes) of a small drive: 64x64 camera frames (random pixels, so that no compressor
    shrinks them much) and a GPS fix every third frame; every payload is unique (its stamp)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_frames):
        img = T[IMAGE](header=_header(i, "camera"), height=64, width=64, encoding="rgb8", is_bigendian=0, step=192,
                       data=rng.integers(0, 256, 64 * 64 * 3, dtype=np.uint8))
        out.append(("/camera/image_raw", IMAGE, (1000 + i) * 10**9, bytes(TS.serialize_cdr(img, IMAGE))))
        if i % 3 == 0:
            fix = T[NAVSAT](header=_header(i, "gps"), status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
                            latitude=47.0 + i * 1e-5, longitude=8.0, altitude=0.0, position_covariance=np.zeros(9),
                            position_covariance_type=0)
            out.append(("/gps/fix", NAVSAT, (1000 + i) * 10**9 + 1, bytes(TS.serialize_cdr(fix, NAVSAT))))
    return out


def write_rosbags_bag(path, messages, storage=StoragePlugin.MCAP):
    """A bag as rosbags writes it (MCAP: uncompressed 1 MiB chunks)."""
    with Writer(path, version=9, storage_plugin=storage) as w:
        conns = {}
        for topic, typ, t, raw in messages:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, typ, typestore=TS)
            w.write(conns[topic], t, raw)
    return path


def write_mcap_file(path, messages, compression="zstd", chunk_size=1 << 20):
    """A single MCAP file as rosbag2's own writer makes them: compressed chunks, ros2msg schemas, QoS metadata."""
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapWriter

    with open(path, "wb") as f:
        w = McapWriter(f, chunk_size=chunk_size, compression=CompressionType[compression.upper()])
        w.start(profile="ros2", library="test")
        channels = {}
        for topic, typ, t, raw in messages:
            if topic not in channels:
                sid = w.register_schema(typ, "ros2msg", TS.generate_msgdef(typ, ros_version=2)[0].encode())
                channels[topic] = w.register_channel(topic, "cdr", sid, {"offered_qos_profiles": "",
                                                                         "topic_type_hash": TS.hash_rihs01(typ)})
            w.add_message(channels[topic], log_time=t, data=raw, publish_time=t)
        w.finish()
    return path


def read_all(bag):
    """Every message of a bag as (topic, t_ns, bytes), through rosbags' Reader; AnyReader must open it too."""
    with Reader(bag) as r:
        msgs = [(c.topic, t, bytes(raw)) for c, t, raw in r.messages()]
    with AnyReader([Path(bag)], default_typestore=TS) as ar:
        conn = next(c for c in ar.connections if c.msgcount)
        ar.deserialize(next(ar.messages(connections=[conn]))[2], conn.msgtype)
    return msgs


def cut_copy(src: Path, cut: int, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes()[:cut])
    return dst


def complete_before(mcap_path: Path, messages, cut: int) -> Counter:
    """Per topic, the messages whose bytes lie wholly before ``cut`` in an uncompressed MCAP: found by their unique
    payload, independently of the code under test."""
    data = mcap_path.read_bytes()
    counts = Counter()
    for topic, _, _, raw in messages:
        pos = data.find(raw)
        assert pos > 0
        if pos + len(raw) <= cut:
            counts[topic] += 1
    return counts


@pytest.fixture(scope="module")
def drive():
    return drive_messages()


@pytest.fixture(scope="module")
def mcap_bag(drive, tmp_path_factory):
    bag = write_rosbags_bag(tmp_path_factory.mktemp("intact") / "drive", drive)
    return bag, next(bag.glob("*.mcap"))


def _summary(path: Path):
    with open(path, "rb") as f:
        reader = mcap_reader.make_reader(f)
        return reader.get_summary(), reader


def _footer_summary_start(path: Path) -> int:
    # the footer's summary_start field: 8 bytes after the footer's opcode and length (the last 37 bytes: footer
    # record of 29 bytes + magic)
    data = path.read_bytes()
    return int.from_bytes(data[-37 + 9:-37 + 17], "little")


def _cuts(mcap_file: Path) -> dict:
    summary, _ = _summary(mcap_file)
    chunks = sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)
    last, first = chunks[-1], chunks[0]
    summary_start = _footer_summary_start(mcap_file)
    size = mcap_file.stat().st_size
    return {
        "inside the summary": summary_start + 40,
        "right after the data section": summary_start,
        "inside the footer": size - 20,
        "inside the last chunk": last.chunk_start_offset + last.chunk_length // 2,
        "inside the first chunk": first.chunk_start_offset + first.chunk_length // 3,
        "between two chunks": chunks[1].chunk_start_offset,
        "inside a record header": last.chunk_start_offset + 4,
    }


@pytest.mark.parametrize("where", ["inside the summary", "right after the data section", "inside the footer",
                                   "inside the last chunk", "inside the first chunk", "between two chunks",
                                   "inside a record header"])
def test_cut_mcap_keeps_every_complete_message(mcap_bag, drive, tmp_path, where):
    _, intact = mcap_bag
    cut = _cuts(intact)[where]
    broken = cut_copy(intact, cut, tmp_path / "cut" / "drive_0.mcap")
    with pytest.raises(Exception):  # noqa: B017 - whatever rosbags raises: it cannot open the cut file
        Reader(broken).open()
    report = recover_bag(broken, tmp_path / "out")
    got = read_all(tmp_path / "out")
    expected = complete_before(intact, drive, cut)
    assert Counter(t for t, _, _ in got) == expected
    assert report.messages == {t: expected.get(t, 0) for t in ("/camera/image_raw", "/gps/fix")}
    originals = {(t, ts, raw) for t, _, ts, raw in drive}
    assert set(got) <= originals and len(set(got)) == len(got)  # byte for byte, no duplicates
    if where in ("inside the summary", "right after the data section", "inside the footer"):
        assert report.messages_lost == 0 and sum(expected.values()) == len(drive)
    else:
        assert report.messages_lost is None and 0 <= report.unreadable_bytes < cut
        assert (report.unreadable_bytes > 0) == (where != "between two chunks")
        assert f"ends at byte {cut:,}" in report.text()
    assert (tmp_path / "out" / "recovery.json").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_cut_inside_a_chunk_salvages_its_complete_messages(mcap_bag, drive, tmp_path):
    _, intact = mcap_bag
    summary, _ = _summary(intact)
    last = max(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)
    cut = last.chunk_start_offset + last.chunk_length // 2
    report = recover_bag(cut_copy(intact, cut, tmp_path / "c.mcap"), tmp_path / "out")
    before = complete_before(intact, drive, last.chunk_start_offset)  # the messages of the earlier, whole chunks
    assert report.salvaged_messages == report.recovered - sum(before.values()) > 0
    assert "inside a chunk record" in report.text()


def test_folder_with_metadata_says_how_many_were_lost(mcap_bag, drive, tmp_path):
    bag, intact = mcap_bag
    cut = _cuts(intact)["inside the last chunk"]
    folder = tmp_path / "drive"
    cut_copy(intact, cut, folder / intact.name)
    shutil.copy(bag / "metadata.yaml", folder / "metadata.yaml")
    report = recover_bag(folder, tmp_path / "out")
    expected = complete_before(intact, drive, cut)
    total = Counter(t for t, *_ in drive)
    assert report.messages_lost == sum(total.values()) - sum(expected.values()) > 0
    assert report.lost_per_topic == {t: total[t] - expected[t] for t in total if total[t] > expected[t]}
    assert f"Lost: {report.messages_lost:,} message(s)" in report.text()


def test_split_recording_cut_in_its_unlisted_last_file(drive, tmp_path):
    """rosbag2 may write metadata.yaml at a split; the file it was writing when the power went is not listed in it."""
    first, second = drive[:200], drive[200:]
    rec = write_rosbags_bag(tmp_path / "rec", first)  # rec/rec.mcap + a metadata.yaml that lists only it
    whole = write_mcap_file(tmp_path / "second.mcap", second)
    summary, _ = _summary(whole)
    last = max(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)
    cut_copy(whole, last.chunk_start_offset, rec / "rec_1.mcap")  # cut where its last chunk would begin
    with Reader(rec) as r:
        assert r.message_count == len(first)  # rosbags alone would silently miss the second file
    path, report = open_or_recover(rec, tmp_path / "work")
    got = read_all(path)
    in_second = len(second) - _messages_in_chunk(whole, last)
    assert len(got) == report.recovered == len(first) + in_second and in_second > 0
    assert "rec_1.mcap not listed in metadata.yaml" in report.text()
    assert sorted(got) == sorted((t, ts, raw) for t, _, ts, raw in first + second[:in_second])


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_compressed_chunks_cut_mid_chunk(drive, tmp_path, compression):
    intact = write_mcap_file(tmp_path / "rec.mcap", drive, compression=compression)
    summary, _ = _summary(intact)
    with open(intact, "rb") as f:
        in_file_order = [(ch.topic, m.log_time, m.data)
                         for _, ch, m in mcap_reader.make_reader(f).iter_messages(log_time_order=False)]
    chunks = sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)
    assert len(chunks) >= 3
    target = chunks[len(chunks) // 2]
    cut = target.chunk_start_offset + target.chunk_length * 3 // 4
    report = recover_bag(cut_copy(intact, cut, tmp_path / "cut.mcap"), tmp_path / "out")
    got = read_all(tmp_path / "out")
    # what the chunks wholly before the cut hold, read from the intact file
    complete = sum(_messages_in_chunk(intact, c) for c in chunks if c.chunk_start_offset + c.chunk_length <= cut)
    assert got == in_file_order[:len(got)]  # a prefix of the recording, byte for byte, in order
    assert len(got) > complete  # the complete blocks of the cut chunk were decompressed too
    assert report.salvaged_messages == len(got) - complete


def _messages_in_chunk(path: Path, chunk_index) -> int:
    from mcap.data_stream import ReadDataStream
    from mcap.records import Chunk, Message
    from mcap.stream_reader import breakup_chunk

    with open(path, "rb") as f:
        f.seek(chunk_index.chunk_start_offset + 9)  # past the record's opcode and length
        chunk = Chunk.read(ReadDataStream(f))
    return sum(isinstance(r, Message) for r in breakup_chunk(chunk))


def test_sqlite_bag_without_metadata_yaml(drive, tmp_path):
    bag = write_rosbags_bag(tmp_path / "sq", drive, storage=StoragePlugin.SQLITE3)
    before = read_all(bag)
    (bag / "metadata.yaml").unlink()
    with pytest.raises(Exception):  # noqa: B017
        Reader(bag).open()
    report = recover_bag(bag, tmp_path / "out")
    assert sorted(read_all(tmp_path / "out")) == sorted(before)
    assert report.storage == "sqlite3" and report.messages_lost == 0
    assert report.messages == {"/camera/image_raw": 300, "/gps/fix": 100}
    assert "No metadata.yaml" in report.text()
    assert sorted(p.name for p in bag.iterdir()) == ["sq.db3"]  # the source is never written


def test_sqlite_write_ahead_log_is_merged(drive, tmp_path):
    """A power cut while recording in WAL mode leaves the last committed messages in bag.db3-wal."""
    import sqlite3

    bag = write_rosbags_bag(tmp_path / "sq", drive[:40], storage=StoragePlugin.SQLITE3)
    (bag / "metadata.yaml").unlink()
    db = sqlite3.connect(bag / "sq.db3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    topic_id = db.execute("SELECT id FROM topics WHERE name='/gps/fix'").fetchone()[0]
    db.executemany("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)",
                   [(topic_id, 5000 * 10**9 + i, drive[1][3]) for i in range(7)])
    db.commit()
    cut = tmp_path / "cut"  # the files as the power cut left them: the log never checkpointed
    cut.mkdir()
    for p in bag.iterdir():
        shutil.copy(p, cut / p.name)
    db.close()
    assert (cut / "sq.db3-wal").stat().st_size > 0
    report = recover_bag(cut, tmp_path / "out")
    assert report.messages["/gps/fix"] == sum(t == "/gps/fix" for t, *_ in drive[:40]) + 7
    assert len(read_all(tmp_path / "out")) == 40 + 7
    assert "sq.db3-wal" in report.text()


@needs_real
def test_real_humble_db3_alone_is_reindexed(tmp_path):
    import yaml

    src = REAL / "gps_nav_ws_bag"
    report = recover_bag(src / "bag_0.db3", tmp_path / "out")
    meta = yaml.safe_load((src / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    declared = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert {t: n for t, n in report.messages.items() if n} == {t: n for t, n in declared.items() if n}
    with AnyReader([tmp_path / "out"], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as r:
        gps = [c for c in r.connections if c.topic == "/gps"]
        fixes = [r.deserialize(raw, c.msgtype) for c, _, raw in r.messages(connections=gps)]
    assert len(fixes) == 107 and abs(fixes[0].latitude - 29.6469) < 1e-3


@needs_real
@pytest.mark.parametrize("name", ["rosbags_rs_test_bag_mcap", "rosbag2_cdr_test_mcap",
                                  "rosbag2_topics_and_service_events_mcap"])
def test_real_mcap_cut_inside_and_after_its_chunk(tmp_path, name):
    src = next((REAL / name).glob("*.mcap"))
    summary, _ = _summary(src)
    with open(src, "rb") as f:
        in_file_order = [(ch.topic, m.log_time, m.data)
                         for _, ch, m in mcap_reader.make_reader(f).iter_messages(log_time_order=False)]
    (chunk,) = summary.chunk_indexes  # these recorders wrote one uncompressed chunk
    # one byte short of the whole chunk (its last message is incomplete), then the whole chunk without the rest
    for i, cut in enumerate([chunk.chunk_start_offset + chunk.chunk_length - 1,
                             chunk.chunk_start_offset + chunk.chunk_length]):
        report = recover_bag(cut_copy(src, cut, tmp_path / f"c{i}.mcap"), tmp_path / f"out{i}")
        with Reader(tmp_path / f"out{i}") as r:  # (AnyReader cannot parse the service-event schemas of one)
            got = [(c.topic, t, bytes(raw)) for c, t, raw in r.messages()]
        assert sorted(got) == sorted(in_file_order[:len(got)])  # the messages before the cut, byte for byte
        if i == 0:
            assert len(got) == report.salvaged_messages == len(in_file_order) - 1
        else:
            assert len(got) == len(in_file_order) and report.salvaged_messages == 0


@needs_real
def test_wrong_serialization_format_stays_a_clear_error(tmp_path, capsys):
    bag = REAL / "rosbag2_wrong_rmw_test_sqlite3"
    with pytest.raises(BagRecoveryError) as err:
        open_or_recover(bag, tmp_path)
    assert isinstance(err.value, GeolocError)
    assert str(bag) in str(err.value) and "wrong_format" in str(err.value)
    with pytest.raises(BagRecoveryError, match="wrong_format"):
        recover_bag(bag, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    assert geoloc(["bag-recover", str(bag), str(tmp_path / "out")]) == 2
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and "wrong_format" in err_text and "Traceback" not in err_text


def test_open_or_recover(mcap_bag, tmp_path):
    bag, intact = mcap_bag
    assert open_or_recover(bag, tmp_path / "work") == (bag, None)
    assert open_or_recover(intact, tmp_path / "work") == (intact, None)  # a file inside an intact bag folder
    broken = tmp_path / "broken"
    cut_copy(intact, _cuts(intact)["inside the last chunk"], broken / intact.name)
    shutil.copy(bag / "metadata.yaml", broken / "metadata.yaml")
    path, report = open_or_recover(broken, tmp_path / "work")
    assert path == tmp_path / "work" / "broken.recovered" and report.recovered == len(read_all(path))
    assert "rosbags could not open it" in report.text()
    mtime = (path / "metadata.yaml").stat().st_mtime_ns
    again, report2 = open_or_recover(broken, tmp_path / "work")  # unchanged source: the recovered copy is reused
    assert again == path and report2.recovered == report.recovered
    assert (path / "metadata.yaml").stat().st_mtime_ns == mtime
    cut_copy(intact, _cuts(intact)["inside the first chunk"], broken / intact.name)  # changed: recovered again
    _, report3 = open_or_recover(broken, tmp_path / "work")
    assert report3.recovered < report.recovered
    with pytest.raises(BagRecoveryError, match="no such file"):
        open_or_recover(tmp_path / "nothing", tmp_path / "work")


def test_interrupted_recovery_leaves_no_output(mcap_bag, tmp_path, monkeypatch):
    _, intact = mcap_bag
    broken = cut_copy(intact, _cuts(intact)["inside the summary"], tmp_path / "b.mcap")
    original_add = bag_recover._McapOut.add
    calls = {"n": 0}

    def add_then_stop(self, *a):
        calls["n"] += 1
        if calls["n"] == 50:
            raise KeyboardInterrupt
        original_add(self, *a)

    monkeypatch.setattr(bag_recover._McapOut, "add", add_then_stop)
    with pytest.raises(KeyboardInterrupt):
        recover_bag(broken, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.mcap"]


def test_killed_recovery_leaves_no_output(mcap_bag, tmp_path):
    """SIGKILL (no cleanup at all) mid-write: the output name never appears; the next run clears the leftovers."""
    _, intact = mcap_bag
    broken = cut_copy(intact, _cuts(intact)["inside the summary"], tmp_path / "b.mcap")
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import time, pathlib
        from geoloc_node import bag_recover
        add = bag_recover._McapOut.add
        def slow_add(self, *a):
            add(self, *a)
            if self.file.count == 100:
                pathlib.Path({str(ready)!r}).write_text("x")
                time.sleep(60)
        bag_recover._McapOut.add = slow_add
        bag_recover.recover_bag({str(broken)!r}, {str(tmp_path / "out")!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "out").exists()
    assert len(list(tmp_path.glob(".out.partial-*"))) == 1  # what SIGKILL leaves: a hidden temporary folder
    recover_bag(broken, tmp_path / "out")
    assert (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def test_cli(mcap_bag, tmp_path, capsys):
    _, intact = mcap_bag
    broken = cut_copy(intact, _cuts(intact)["inside the last chunk"], tmp_path / "b.mcap")
    assert geoloc(["bag-recover", str(broken), str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Recovered ") and out.count("\n") == 1
    assert geoloc(["bag-recover", str(broken), str(tmp_path / "out")]) == 2  # exists: never overwritten
    assert "exists already" in capsys.readouterr().err
    junk = tmp_path / "junk.mcap"
    junk.write_text("not a bag at all")
    assert geoloc(["bag-recover", str(junk), str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an MCAP file" in err and str(junk) in err
    empty = tmp_path / "empty.mcap"
    empty.write_bytes(intact.read_bytes()[:200])  # magic and header only: nothing to recover
    assert geoloc(["bag-recover", str(empty), str(tmp_path / "out3")]) == 2
    assert "no message" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()
