"""Fuzzing (hypothesis) of what reaches the pipeline from outside: whatever a driver, a broken receiver or a corrupt
bag sends, the node and a replay never raise, and never call an estimate trustworthy with a non-finite position or
covariance.

(a) ROS messages (rosbags typestore classes, as a replay deserialises them) with arbitrary floats, ints within each
    field's type, strings and image payloads, through the Session (conversion, problem counts, publications) into a
    real Pipeline (fake encoder and fake table from fakes.py); every publication must serialise as replay writes it.
(b) plain records in arbitrary interleavings, with arbitrary stamps (NaN, 0, huge, backwards) and values, straight
    into the Pipeline.

Most drawn values are plausible (near the fake table, stamps moving forward) so that the examples reach the deep
states (GPS healthy, filter running, outage, visual fallback); the rest are anything the type allows.
"""

import dataclasses
import math

import numpy as np
import pytest
from bagtools import TS
from fakes import ORIGIN, FakeOracleEncoder, fake_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoloc_node.config import GeolocConfig
from geoloc_node.health import HealthChange
from geoloc_node.pipeline import Pipeline
from geoloc_node.records import CameraFrame, Estimate, GpsFix, InputRejected, Odometry, StateReset
from geoloc_node.session import DIAGNOSTICS_TOPIC, DIAGNOSTICS_TYPE, OUTPUT_TYPES, Session

T = TS.types
CFG = GeolocConfig.from_flat({"tracking.n_particles": 100, "output.publish_policy": "always"})
FUZZ = settings(deadline=None, max_examples=120, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
OUTPUT_KINDS = (Estimate, HealthChange, InputRejected, StateReset)
#: ~1e-5 degrees is ~1 m: fixes within the fake table's +-300 m
DEG_PER_M = 1.0 / 111_000.0

# -- value strategies ------------------------------------------------------------------------------------------------
any_float = st.floats(allow_nan=True, allow_infinity=True)
special_float = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e15, -1e15, 1e308, -1e308, 5e-324])
small_float = st.floats(-50.0, 50.0)
some_float = st.one_of(small_float, special_float, any_float)
finite_float = st.one_of(small_float, st.floats(allow_nan=False, allow_infinity=False))


def mostly(draw, usual, wild, odds: int = 6):
    """A value of ``usual`` ``odds`` times in ``odds + 1``, else of ``wild`` (hypothesis's one_of has no weights)."""
    return draw(usual) if draw(st.integers(0, odds)) else draw(wild)


def int_of(bits: int, signed: bool):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0]))


def floats_array(n: int):
    return st.lists(some_float, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.float64))


text = st.one_of(st.sampled_from(["", "gps", "odom", "base_link", "camera"]), st.text(max_size=20))


def track(t: float) -> tuple[float, float]:
    """Where the fuzzed vehicle is at stamp ``t`` (s): driving east at 8 m/s across the fake table, 1 m north of its
    centre line (its odometry frame is the table's, shifted)."""
    return -250.0 + 8.0 * (t % 60.0), 1.0


#: Mostly the next message of a 10 Hz / 20 Hz sensor set; sometimes a repeated, backward or skipping stamp.
stamp_step = st.sampled_from([0.05] * 6 + [0.1] * 6 + [0.0, -0.05, -3.0, 0.7, 5.0])


# -- (a) messages ----------------------------------------------------------------------------------------------------
#: mostly the one odometry frame; another one is a second source on the topic, refused
odometry_frame = st.integers(0, 9).flatmap(lambda i: st.just("odom") if i else text)


@st.composite
def header(draw, clock, frame_id=text):
    """(header, stamp): a stamp that mostly moves forward from ``clock`` (a one-item list), else any int32 seconds with
    any uint32 nanoseconds (not normalised: ROS does not check it, so a stamp may lie past 2**31 s, where the output
    headers' int32 seconds end)."""
    if draw(st.integers(0, 14)):
        clock[0] = min(clock[0] + draw(stamp_step), 2.0**31 - 1.0)
        sec = math.floor(clock[0])
        stamp = T["builtin_interfaces/msg/Time"](sec=int(sec), nanosec=int((clock[0] - sec) * 1e9))
    else:
        stamp = T["builtin_interfaces/msg/Time"](sec=draw(int_of(32, True)), nanosec=draw(int_of(32, False)))
    return T["std_msgs/msg/Header"](stamp=stamp, frame_id=draw(frame_id)), stamp.sec + stamp.nanosec * 1e-9


def near_track(t, draw) -> tuple[float, float]:
    """(lat, lon) of a fix near the track at ``t``, or anything."""
    if not draw(st.integers(0, 5)) or not math.isfinite(t):
        return draw(some_float), draw(some_float)
    e, n = track(t)
    e, n = e + draw(st.floats(-2.0, 2.0)), n + draw(st.floats(-2.0, 2.0))
    return ORIGIN[0] + n * DEG_PER_M, ORIGIN[1] + e * DEG_PER_M / math.cos(math.radians(ORIGIN[0]))


@st.composite
def navsatfix(draw, clock):
    var = mostly(draw, st.floats(0.25, 9.0), st.one_of(st.floats(0.0, 1000.0), some_float))
    cov = mostly(draw, st.just(np.array([var, 0, 0, 0, var, 0, 0, 0, 4 * var], dtype=np.float64)), floats_array(9))
    hdr, t = draw(header(clock))
    lat, lon = near_track(t, draw)
    return T["sensor_msgs/msg/NavSatFix"](
        header=hdr,
        status=T["sensor_msgs/msg/NavSatStatus"](status=mostly(draw, st.just(0), st.one_of(st.sampled_from([-1, 1, 2]),
                                                                                          int_of(8, True))),
                                                 service=draw(int_of(16, False))),
        latitude=lat, longitude=lon, altitude=draw(some_float), position_covariance=cov,
        position_covariance_type=mostly(draw, st.just(2), st.one_of(st.sampled_from([0, 1, 3]), int_of(8, False))))


@st.composite
def odometry(draw, clock):
    v3, pt = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Point"]
    hdr, t = draw(header(clock, odometry_frame))
    plausible = draw(st.integers(0, 5)) > 0 and math.isfinite(t)
    x, y = (track(t)[0] + 100.0, track(t)[1] - 20.0) if plausible else (draw(some_float), draw(some_float))
    q = (0.0, 0.0, 0.0, 1.0) if plausible else draw(st.tuples(some_float, some_float, some_float, some_float))
    v = 8.0 if plausible else draw(some_float)
    pose = T["geometry_msgs/msg/Pose"](position=pt(x=x, y=y, z=draw(some_float)),
                                       orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
    twist = T["geometry_msgs/msg/Twist"](linear=v3(x=v, y=draw(some_float), z=draw(some_float)),
                                         angular=v3(x=draw(some_float), y=draw(some_float),
                                                    z=0.0 if plausible else draw(some_float)))
    return T["nav_msgs/msg/Odometry"](
        header=hdr, child_frame_id=draw(text),
        pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=draw(floats_array(36))),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=draw(floats_array(36))))


ENCODINGS = ["rgb8", "bgr8", "mono8", "8UC1", "8UC3", "rgba8", "bgra8", "8UC4", "RGB8", "yuv422", "16UC1",
             "bayer_rggb8"]


@st.composite
def image(draw, clock):
    """sensor_msgs/Image: often a consistent small image (whose first bytes the fake encoder reads as a position),
    else any sizes, step and payload."""
    if draw(st.booleans()):
        h, w = draw(st.integers(1, 4)), draw(st.integers(8, 16))
        enc = draw(st.sampled_from(ENCODINGS[:8]))
        ch = {"mono8": 1, "8UC1": 1, "rgba8": 4, "bgra8": 4, "8UC4": 4}.get(enc, 3)
        pad = draw(st.integers(0, 3))
        step = w * ch + pad
        data = draw(st.binary(min_size=h * step, max_size=h * step + 8))
    else:
        h, w, step = draw(int_of(32, False)), draw(int_of(32, False)), draw(int_of(32, False))
        enc = draw(st.one_of(st.sampled_from(ENCODINGS), st.text(max_size=12)))
        data = draw(st.binary(max_size=256))
    return T["sensor_msgs/msg/Image"](header=draw(header(clock))[0], height=h, width=w, encoding=enc,
                                      is_bigendian=draw(int_of(8, False)), step=step,
                                      data=np.frombuffer(data, dtype=np.uint8).copy())


@st.composite
def compressed_image(draw, clock):
    import cv2

    if draw(st.booleans()):  # a real small PNG or JPEG of arbitrary pixels
        h, w = draw(st.integers(1, 4)), draw(st.integers(8, 16))
        pixels = np.frombuffer(draw(st.binary(min_size=h * w * 3, max_size=h * w * 3)), np.uint8).reshape(h, w, 3)
        ext = draw(st.sampled_from([".png", ".jpg"]))
        data = cv2.imencode(ext, pixels)[1].tobytes()
        data = data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data  # maybe cut short
    else:
        data = draw(st.binary(max_size=256))
    return T["sensor_msgs/msg/CompressedImage"](header=draw(header(clock))[0],
                                                format=draw(st.one_of(st.sampled_from(["jpeg", "png"]), text)),
                                                data=np.frombuffer(data, dtype=np.uint8).copy())


@st.composite
def camera_info(draw, clock):
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=draw(int_of(32, False)), y_offset=draw(int_of(32, False)),
                                                height=draw(int_of(32, False)), width=draw(int_of(32, False)),
                                                do_rectify=draw(st.booleans()))
    n_d = draw(st.integers(0, 8))
    return T["sensor_msgs/msg/CameraInfo"](
        header=draw(header(clock))[0], height=draw(st.one_of(st.integers(1, 8), int_of(32, False))),
        width=draw(st.one_of(st.integers(8, 16), int_of(32, False))),
        distortion_model=draw(st.one_of(st.sampled_from(["equirectangular", "plumb_bob", "fisheye"]), text)),
        d=draw(floats_array(n_d)), k=draw(floats_array(9)), r=draw(floats_array(9)), p=draw(floats_array(12)),
        binning_x=draw(int_of(32, False)), binning_y=draw(int_of(32, False)), roi=roi)


@st.composite
def message_stream(draw):
    clock = [draw(st.sampled_from([0.0, 1000.0, 1.7e9, 2.0**31 - 10.0]))]  # the last seconds of int32 time
    kinds = {"gps": navsatfix, "odometry": odometry, "image": image, "compressed": compressed_image,
             "camera_info": camera_info}
    names = draw(st.lists(st.sampled_from(["gps", "gps", "odometry", "odometry", "odometry", "image", "compressed",
                                           "camera_info"]), min_size=20, max_size=100))
    return [(k, draw(kinds[k](clock))) for k in names]


def serialise(pub) -> None:
    """What replay's output bag does with each publication (a message that cannot be written would stop it)."""
    typ = DIAGNOSTICS_TYPE if pub.topic == DIAGNOSTICS_TOPIC else OUTPUT_TYPES[pub.topic]
    TS.serialize_cdr(pub.message, typ)
    assert max(int(round(pub.stamp * 1e9)), 0) >= 0  # the bag's record time


@settings(FUZZ, max_examples=60)  # an example is ~100 messages, frames decoded and encoded: ~0.2 s each here
@given(stream=message_stream())
def test_any_message_through_the_session_never_raises(world, table, stream):
    session = Session(CFG, lambda name: T[name])
    session.attach(Pipeline(CFG, FakeOracleEncoder(world), table))
    pubs = list(session.start(0.0))
    for i, (kind, msg) in enumerate(stream):
        if kind == "gps":
            step = session.on_gps(msg)
        elif kind == "odometry":
            step = session.on_odometry(msg)
        elif kind == "camera_info":
            session.on_camera_info(msg)
            continue
        else:
            step = session.on_frame(msg)
        assert all(isinstance(o, OUTPUT_KINDS) for o in step.outputs)
        pubs += step.publications
        if i % 10 == 0:  # /diagnostics as replay writes it (each second of message time)
            pubs.append(session.diagnostics(pubs[-1].stamp))
    pubs.append(session.diagnostics(pubs[-1].stamp))
    for pub in pubs:
        serialise(pub)
    received = sum(session.received.values())
    assert received == len(stream)


# -- (b) records -----------------------------------------------------------------------------------------------------
odd_stamp = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 1e18, -1e18, 1e9, 2.0**31])


@st.composite
def record_stream(draw):
    """Records as drivers would make them (mostly the vehicle of :func:`track`, its GPS 1-2 m off), with arbitrary
    stamps and values mixed in."""
    t = draw(st.sampled_from([0.0, 1000.0, 1.7e9]))
    out = []
    kinds = draw(st.lists(st.sampled_from(["gps", "odometry", "odometry", "frame"]), min_size=40, max_size=200))
    for kind in kinds:
        t += draw(stamp_step)
        stamp = draw(odd_stamp) if not draw(st.integers(0, 19)) else t
        e, n = track(t)
        plausible = draw(st.integers(0, 7)) > 0
        if kind == "gps":
            std = draw(st.floats(0.5, 3.0)) if plausible else draw(some_float)
            cov = ((std * std, 0.0, 0.0, 0.0, std * std, 0.0, 0.0, 0.0, 4 * std * std) if plausible
                   else tuple(draw(st.lists(some_float, min_size=9, max_size=9))))
            lat, lon = (ORIGIN[0] + (n + draw(st.floats(-2.0, 2.0))) * DEG_PER_M,
                        ORIGIN[1] + (e + draw(st.floats(-2.0, 2.0))) * DEG_PER_M / math.cos(math.radians(ORIGIN[0])))
            if not plausible:
                lat, lon = draw(st.sampled_from([(lat, draw(some_float)), (draw(some_float), lon),
                                                 (draw(some_float), draw(some_float)), (lat, lon)]))
            out.append(GpsFix(stamp=stamp, lat=lat, lon=lon, alt=draw(some_float),
                              status=draw(st.sampled_from([0, 0, 0, -1, 2])) if plausible else draw(int_of(8, True)),
                              covariance=cov, covariance_type=2 if plausible else draw(int_of(8, False)),
                              frame_id=draw(text)))
        elif kind == "odometry":
            wild = (some_float, some_float, some_float, some_float, some_float)
            usual = (e + 100.0, n - 20.0, 0.0, 8.0, 0.0)
            vals = usual if plausible else tuple(draw(st.one_of(st.just(v), w)) for v, w in zip(usual, wild))
            out.append(Odometry(stamp, *vals, frame_id="odom" if plausible else draw(st.sampled_from(["odom", "x"])),
                                child_frame_id=draw(text)))
        elif plausible:
            out.append(fake_frame(stamp, e, n, 90.0))
        else:  # a position and heading the fake encoder reads as anything, or an image of any shape and type
            shape = tuple(draw(st.lists(st.integers(0, 5), max_size=4)))
            dtype = draw(st.sampled_from([np.uint8, np.float32, np.int64, bool]))
            out.append(draw(st.sampled_from([
                fake_frame(stamp, draw(some_float), draw(some_float), draw(some_float)),
                CameraFrame(stamp=stamp, image=np.zeros(shape, dtype=dtype))])))
    return out


@FUZZ
@given(records=record_stream(), with_camera=st.booleans())
def test_any_records_in_any_order_never_raise_nor_trust_a_non_finite_estimate(world, table, records, with_camera):
    p = Pipeline(CFG, FakeOracleEncoder(world), table) if with_camera else Pipeline(CFG, None, table)
    outputs = []
    for r in records:
        if isinstance(r, GpsFix):
            outputs += p.on_gps(r)
        elif isinstance(r, Odometry):
            outputs += p.on_odometry(r)
        else:
            outputs += p.on_frame(r)
    p.status()
    for o in outputs:
        assert isinstance(o, OUTPUT_KINDS), o
        if isinstance(o, Estimate) and o.trustworthy:
            assert math.isfinite(o.east) and math.isfinite(o.north), o
            assert np.isfinite(np.asarray(o.cov, dtype=np.float64)).all(), o
            assert math.isfinite(o.std_m), o


@pytest.mark.parametrize("field,value,twist_only", [("yaw", math.nan, False), ("yaw", math.inf, False),
                                                    ("yaw_rate", math.nan, True)])
def test_odometry_record_with_a_non_finite_heading_is_refused(world, table, field, value, twist_only):
    """Driving east through the table without GPS (camera fallback), one odometry record with a broken heading: it
    must be refused and counted like any other odometry fault (odometry_from_msg refuses such a ROS message, but the
    pipeline takes records from any caller)."""
    p = Pipeline(CFG, FakeOracleEncoder(world), table)
    for i in range(40):
        t = 1000.0 + 0.1 * i
        odom = Odometry(t, 0.0 if twist_only else 0.8 * i, 0.0, 0.0, 8.0, 0.0, "odom")
        p.on_odometry(dataclasses.replace(odom, **{field: value}) if i == 20 else odom)
        p.on_frame(fake_frame(t + 0.05, -100.0 + 0.8 * i, 0.0, 90.0))
    assert p.counts["odometry"] == 39
