"""Test seams for the pipeline tests: a FAKE encoder and a FAKE world. Never used by the product code.

``FakeWorld`` defines, for each bit of a code, a smooth random field over (east, north) (a few random Fourier
features); a tile's code is the signs of the fields at its centre, so nearby tiles have similar codes, as with a real
model whose tiles overlap. ``FakeOracleEncoder`` reads the camera position hidden in a ``fake_frame`` image and returns
the code of that position with some bits flipped (and, with ``wrong_prob``, the code of a random far-away place).
"""

from __future__ import annotations

import math

import numpy as np

from geoloc_node.geodesy import LocalFrame
from geoloc_node.records import CameraFrame, GpsFix, Odometry
from geoloc_node.table import open_table, write_table

ORIGIN = (47.3769, 8.5417)


class FakeWorld:
    def __init__(self, bits=256, heading_bins=1, seed=0, wavelength_m=(25.0, 120.0)):
        rng = np.random.default_rng(seed)
        self.bits, self.heading_bins = bits, heading_bins
        nf = 4
        k = rng.uniform(2 * math.pi / wavelength_m[1], 2 * math.pi / wavelength_m[0], (heading_bins, bits, nf))
        ang = rng.uniform(0, 2 * math.pi, (heading_bins, bits, nf))
        self.kx, self.ky = k * np.cos(ang), k * np.sin(ang)
        self.phase = rng.uniform(0, 2 * math.pi, (heading_bins, bits, nf))
        self.frame = LocalFrame(*ORIGIN)

    def field(self, en: np.ndarray, b: int = 0) -> np.ndarray:
        en = np.atleast_2d(en)
        arg = en[:, 0, None, None] * self.kx[b] + en[:, 1, None, None] * self.ky[b] + self.phase[b]
        return np.sin(arg).sum(axis=-1)  # [n, bits]

    def codes(self, en: np.ndarray, b: int = 0) -> np.ndarray:
        return np.packbits(self.field(en, b) > 0, axis=-1)

    def write_table(self, path, half_size_m=300.0, stride_m=10.0, fingerprint="fake-aerial-0"):
        g = np.arange(-half_size_m, half_size_m + 1e-9, stride_m)
        ee, nn = np.meshgrid(g, g)
        en = np.column_stack([ee.ravel(), nn.ravel()])
        codes = np.stack([self.codes(en, b) for b in range(self.heading_bins)], axis=1)
        lat, lon = self.frame.to_latlon(en[:, 0], en[:, 1])
        write_table(path, codes, lat, lon, bits=self.bits, tile_size_m=5 * stride_m, stride_m=stride_m,
                    encoder_fingerprint=fingerprint, origin=ORIGIN)
        return open_table(path)


class FakeOracleEncoder:
    """FAKE: 'encodes' the position hidden in a fake frame; bit flips and wrong places simulate an imperfect model."""

    mode = "panorama"
    backend = "fake"
    fingerprint = "fake-camera-0"

    def __init__(self, world: FakeWorld, flip_prob=0.08, wrong_prob=0.0, seed=1, aerial_fingerprint="fake-aerial-0",
                 delay_s=0.0, heading_aware=False):
        self.heading_aware = heading_aware
        self.world, self.flip_prob, self.wrong_prob = world, flip_prob, wrong_prob
        self.rng = np.random.default_rng(seed)
        self.bits = world.bits
        self.aerial_fingerprint = aerial_fingerprint
        self.delay_s = delay_s
        self.calls = 0

    def encode(self, images: np.ndarray, headings_deg=None) -> np.ndarray:
        # FAKE: the fake world's panorama codes do not depend on the heading; headings_deg is accepted and ignored
        import time

        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for img in images:
            e, n, hdg = np.frombuffer(np.ascontiguousarray(img).tobytes()[:24], dtype=np.float64)
            if self.rng.random() < self.wrong_prob:
                e, n = self.rng.uniform(-300, 300, 2)
            b = int(math.floor((hdg % 360.0) / (360.0 / self.world.heading_bins) + 0.5)) % self.world.heading_bins
            bits = self.world.field(np.array([[e, n]]), b)[0] > 0
            bits ^= self.rng.random(self.bits) < self.flip_prob
            if self.heading_aware and headings_deg is not None:
                # FAKE misaligned panorama: rolled by the wrong heading, 40 % of the bits change (a fixed mask per
                # 45-degree step of misalignment)
                mis = (float(np.atleast_1d(headings_deg)[len(out)]) - hdg + 180.0) % 360.0 - 180.0
                step = int(round(mis / 45.0)) % 8
                if step:
                    bits ^= np.random.default_rng(100 + step).random(self.bits) < 0.4
            out.append(np.packbits(bits))
            self.calls += 1
        return np.stack(out)


def fake_frame(stamp: float, east: float, north: float, heading_deg: float = 0.0) -> CameraFrame:
    """A CameraFrame whose pixels carry the true position (for FakeOracleEncoder only)."""
    raw = np.array([east, north, heading_deg], dtype=np.float64).tobytes()
    img = np.frombuffer(raw, dtype=np.uint8).reshape(1, 8, 3).copy()
    return CameraFrame(stamp=stamp, image=img)


def gps_fix(frame: LocalFrame, stamp, east, north, std=1.5, status=0, cov_type=2, latlon=None) -> GpsFix:
    lat, lon = latlon if latlon is not None else (float(v) for v in frame.to_latlon(east, north))
    v = std * std
    return GpsFix(stamp=stamp, lat=lat, lon=lon, alt=0.0, status=status,
                  covariance=(v, 0.0, 0.0, 0.0, v, 0.0, 0.0, 0.0, 4 * v), covariance_type=cov_type)


class Drive:
    """A drive on a closed curvy loop: truth, noisy GPS (10 Hz), drifting odometry (20 Hz, rotated frame),
    frames (10 Hz)."""

    def __init__(self, duration_s=200.0, speed=8.0, seed=3, odom_rotation=0.7, scale_err=0.02, yaw_drift=0.002,
                 gps_std=1.5, radius=200.0):
        self.rng = np.random.default_rng(seed)
        self.duration, self.speed, self.radius = duration_s, speed, radius
        self.odom_rotation, self.scale_err, self.yaw_drift, self.gps_std = odom_rotation, scale_err, yaw_drift, gps_std

    def truth(self, t):
        # a wobbly circle of ~radius around the origin
        s = self.speed * t / self.radius
        r = self.radius * (1.0 + 0.15 * np.sin(3 * s))
        return r * np.cos(s), r * np.sin(s)

    def heading_deg(self, t):
        e0, n0 = self.truth(t)
        e1, n1 = self.truth(t + 0.05)
        return (90.0 - math.degrees(math.atan2(n1 - n0, e1 - e0))) % 360.0

    def events(self, frame: LocalFrame, outages=(), gps_rate=10.0, odom_rate=20.0, cam_rate=10.0):
        """Sorted list of (stamp, kind, record) with kind in gps/odom/frame; GPS silent inside ``outages``."""
        ev = []
        t0 = 1000.0
        for i in range(int(self.duration * gps_rate)):
            t = i / gps_rate
            if any(a <= t < b for a, b in outages):
                continue
            e, n = self.truth(t)
            ev.append((t0 + t, "gps", gps_fix(frame, t0 + t, e + self.rng.normal(0, self.gps_std),
                                             n + self.rng.normal(0, self.gps_std), std=self.gps_std)))
        # odometry: integrate the true motion with a scale error and yaw drift, in a frame rotated by odom_rotation
        x = y = 0.0
        yaw_o = 0.0
        prev = None
        dt = 1.0 / odom_rate
        for i in range(int(self.duration * odom_rate)):
            t = i * dt
            e, n = self.truth(t)
            if prev is not None:
                de, dn = e - prev[0], n - prev[1]
                d = math.hypot(de, dn) * (1.0 + self.scale_err)
                true_yaw = math.atan2(dn, de)
                yaw_o = true_yaw - self.odom_rotation + self.yaw_drift * t
                x += d * math.cos(yaw_o)
                y += d * math.sin(yaw_o)
            prev = (e, n)
            ev.append((t0 + t, "odom", Odometry(stamp=t0 + t, x=x, y=y, yaw=yaw_o, v=self.speed, yaw_rate=0.0)))
        for i in range(int(self.duration * cam_rate)):
            t = i / cam_rate
            e, n = self.truth(t)
            ev.append((t0 + t, "frame", fake_frame(t0 + t, e, n, self.heading_deg(t))))
        order = {"odom": 0, "gps": 1, "frame": 2}
        ev.sort(key=lambda x: (x[0], order[x[1]]))
        return ev


def feed(pipeline, events):
    out = []
    for _, kind, rec in events:
        if kind == "gps":
            out += pipeline.on_gps(rec)
        elif kind == "odom":
            out += pipeline.on_odometry(rec)
        else:
            out += pipeline.on_frame(rec)
    return out
