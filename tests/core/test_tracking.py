"""The particle filter's odometry prediction: geometry without noise, spread with noise, determinism, twist-only."""

import dataclasses
import math

import numpy as np
import pytest

from geoloc_node.config import TrackingConfig
from geoloc_node.records import Odometry
from geoloc_node.search import TableSearch
from geoloc_node.table import open_table
from geoloc_node.tracking import ParticleFilter

NO_NOISE = dict(odom_distance_noise=0.0, odom_lateral_noise=0.0, odom_yaw_noise=0.0, yaw_random_walk=0.0,
                odom_scale_std=0.0, odom_scale_random_walk=0.0, yaw_rate_bias_std=0.0,
                yaw_rate_bias_random_walk=0.0, position_random_walk=0.0, no_odometry_random_walk=0.0)
HZ = 50.0


def make_filter(table_path, n=500, seed=0, **config):
    cfg = dataclasses.replace(TrackingConfig(), n_particles=n, seed=seed, **config)
    return ParticleFilter(TableSearch(open_table(table_path)), cfg)


def drive(steps, speed=5.0, yaw_rate=0.0, odom_yaw0=0.0, twist_only=False):
    """Odometry records at 50 Hz from t=0: a circle arc (a straight line for yaw_rate 0) in the odometry frame."""
    out = []
    for i in range(steps + 1):
        t = i / HZ
        yaw = odom_yaw0 + yaw_rate * t
        if yaw_rate == 0.0:
            x, y = speed * t * math.cos(odom_yaw0), speed * t * math.sin(odom_yaw0)
        else:
            r = speed / yaw_rate
            x = r * (math.sin(yaw) - math.sin(odom_yaw0))
            y = -r * (math.cos(yaw) - math.cos(odom_yaw0))
        if twist_only:
            x = y = yaw = 0.0
        out.append(Odometry(stamp=t, x=x, y=y, yaw=yaw, v=speed, yaw_rate=yaw_rate))
    return out


def test_without_noise_each_particle_moves_by_the_increment_rotated_by_its_own_yaw(small_table):
    pf = make_filter(small_table[0], **NO_NOISE)
    pf.init_gaussian(0.0, 0.0, np.eye(2) * 25.0, 0.0)  # yaw uniform: every particle drives its own way
    start = pf.p.copy()
    steps = 100
    for odom in drive(steps, speed=5.0, odom_yaw0=0.7):  # the odometry frame's heading does not matter
        pf.predict_odometry(odom)
    travelled = 5.0 * steps / HZ
    yaw = start[:, 2]
    assert np.allclose(pf.p[:, 0], start[:, 0] + travelled * np.cos(yaw), atol=1e-4)
    assert np.allclose(pf.p[:, 1], start[:, 1] + travelled * np.sin(yaw), atol=1e-4)
    assert np.allclose(pf.p[:, 2:], start[:, 2:], atol=1e-9)


def test_twist_only_odometry_still_moves_particles(small_table):
    pf = make_filter(small_table[0], **NO_NOISE)
    pf.init_gaussian(0.0, 0.0, np.eye(2), 0.0)
    start = pf.p.copy()
    steps, speed, yaw_rate = 50, 4.0, 0.2
    for odom in drive(steps, speed=speed, yaw_rate=yaw_rate, twist_only=True):
        pf.predict_odometry(odom)
    # each step: speed/HZ forward at the mid-step heading, yaw_rate/HZ turned
    turn = yaw_rate / HZ
    heading = start[:, 2, None] + turn * (np.arange(steps) + 0.5)
    # atol: the lateral noise keeps a floor of 1e-6 m per step even in a zero-noise configuration
    assert np.allclose(pf.p[:, 0], start[:, 0] + speed / HZ * np.cos(heading).sum(axis=1), atol=1e-4)
    assert np.allclose(pf.p[:, 1], start[:, 1] + speed / HZ * np.sin(heading).sum(axis=1), atol=1e-4)
    assert np.allclose(pf.p[:, 2], start[:, 2] + steps * turn, atol=1e-9)
    assert np.hypot(*(pf.p[:, :2] - start[:, :2]).T).min() > 0.9 * speed * steps / HZ


def test_position_spread_matches_the_configured_noise(small_table):
    """Straight drive east: along-track variance N (d sd)^2 + sw^2 T, cross-track N (d sl)^2 + sw^2 T."""
    noise = dict(NO_NOISE, odom_distance_noise=0.05, odom_lateral_noise=0.03, position_random_walk=0.4)
    pf = make_filter(small_table[0], n=6000, seed=3, **noise)
    pf.init_gaussian(0.0, 0.0, np.eye(2) * 1e-8, 0.0, yaw=0.0, yaw_std=1e-9)
    steps, speed = 200, 5.0
    for odom in drive(steps, speed=speed):
        pf.predict_odometry(odom)
    d, duration = speed / HZ, steps / HZ
    along = math.sqrt(steps * (d * 0.05) ** 2 + 0.4 ** 2 * duration)
    cross = math.sqrt(steps * (d * 0.03) ** 2 + 0.4 ** 2 * duration)
    assert pf.p[:, 0].mean() == pytest.approx(speed * duration, abs=0.05)
    assert pf.p[:, 0].std() == pytest.approx(along, rel=0.06)
    assert pf.p[:, 1].std() == pytest.approx(cross, rel=0.06)
    assert abs(np.corrcoef(pf.p[:, 0], pf.p[:, 1])[0, 1]) < 0.05


def test_heading_scale_and_bias_spread_match_the_configured_noise(small_table):
    noise = dict(NO_NOISE, odom_yaw_noise=0.1, yaw_random_walk=0.05, odom_scale_random_walk=0.01,
                 yaw_rate_bias_random_walk=0.002)
    pf = make_filter(small_table[0], n=6000, seed=4, **noise)
    pf.init_gaussian(0.0, 0.0, np.eye(2), 0.0, yaw=0.0, yaw_std=1e-9)
    steps, yaw_rate = 200, 0.5
    for odom in drive(steps, speed=5.0, yaw_rate=yaw_rate):
        pf.predict_odometry(odom)
    duration = steps / HZ
    # the bias walk also feeds the turn (dyaw - bias dt); it adds well under 1 % to the yaw spread here
    yaw_std = math.sqrt(steps * (yaw_rate / HZ * 0.1) ** 2 + 0.05 ** 2 * duration)
    assert pf.p[:, 2].mean() == pytest.approx(yaw_rate * duration, abs=0.01)
    assert pf.p[:, 2].std() == pytest.approx(yaw_std, rel=0.06)
    assert pf.p[:, 3].std() == pytest.approx(0.01 * math.sqrt(duration), rel=0.06)
    assert pf.p[:, 4].std() == pytest.approx(0.002 * math.sqrt(duration), rel=0.06)


def test_time_without_odometry_spreads_by_the_no_odometry_walk(small_table):
    pf = make_filter(small_table[0], n=6000, seed=5, **dict(NO_NOISE, no_odometry_random_walk=3.0))
    pf.init_gaussian(0.0, 0.0, np.eye(2) * 1e-8, 0.0)
    pf.predict_time(4.0)
    assert pf.p[:, :2].std(axis=0) == pytest.approx([6.0, 6.0], rel=0.06)


def run_scripted(pf):
    """Initialisation, odometry and time steps of a short drive: every random draw of the prediction."""
    pf.init_gaussian(10.0, -5.0, np.eye(2) * 9.0, 0.0)
    for i, odom in enumerate(drive(120, speed=6.0, yaw_rate=0.1)):
        pf.predict_odometry(odom)
        if i % 25 == 0:
            pf.predict_time(odom.stamp + 0.01)
    return pf.p.copy()


def test_same_seed_gives_identical_particles_also_after_reset(small_table):
    a = run_scripted(make_filter(small_table[0], seed=11))
    pf = make_filter(small_table[0], seed=11)
    b = run_scripted(pf)
    pf.reset()
    c = run_scripted(pf)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert not np.array_equal(a, run_scripted(make_filter(small_table[0], seed=12)))


def numpy_prediction(pf, odom):
    """The odometry prediction as numpy expressions (the code the compiled kernel replaced): the reference."""
    from geoloc_node.tracking import _odometry_increment

    prev, pf._last_odom = pf._last_odom, odom
    pf._odom_stamp = odom.stamp
    if prev is None or not pf.initialized:
        if pf.initialized:
            pf._diffuse(odom.stamp, with_odometry=True)
        return
    dt = odom.stamp - prev.stamp
    if dt <= 0:
        return
    fwd, lat, dyaw = _odometry_increment(prev, odom, dt)
    c, p = pf.config, pf.p
    n = p.shape[0]
    walk_dt = pf._advance_stamp(odom.stamp)
    walk = c.position_random_walk * math.sqrt(walk_dt)
    z_fwd, z_lat, z_yaw, z_scale, z_bias = pf._standard_normals(5 * n).reshape(5, n)
    forward = fwd * p[:, 3]
    forward += np.sqrt(np.square(forward * c.odom_distance_noise) + walk * walk) * z_fwd
    lateral = z_lat * math.hypot(c.odom_lateral_noise * math.hypot(fwd, lat) + 1e-6, walk) + lat
    turn = dyaw - p[:, 4] * dt
    mid = p[:, 2] + 0.5 * turn
    cos_mid, sin_mid = np.cos(mid), np.sin(mid)
    p[:, 0] += cos_mid * forward - sin_mid * lateral
    p[:, 1] += sin_mid * forward + cos_mid * lateral
    p[:, 2] += turn + np.sqrt(np.square(turn * c.odom_yaw_noise) + c.yaw_random_walk ** 2 * dt) * z_yaw
    if walk_dt > 0:
        p[:, 3] += c.odom_scale_random_walk * math.sqrt(walk_dt) * z_scale
        p[:, 4] += c.yaw_rate_bias_random_walk * math.sqrt(walk_dt) * z_bias


@pytest.mark.parametrize("twist_only", [False, True])
def test_compiled_prediction_is_bit_identical_to_the_numpy_expressions(small_table, twist_only):
    """Replays must not change with the compiled kernel: same normals, same operations, same order, same bits.
    The default noise plus nonzero random walks, a curve, a repeated stamp and a gap: every branch of the model."""
    cfg = dict(odom_scale_random_walk=0.01, yaw_rate_bias_random_walk=0.002)
    a, b = make_filter(small_table[0], n=700, seed=21, **cfg), make_filter(small_table[0], n=700, seed=21, **cfg)
    for pf in (a, b):
        pf.init_gaussian(3.0, 4.0, np.eye(2) * 4.0, 0.0)
    start = a.p.copy()
    records = drive(300, speed=8.0, yaw_rate=0.3, odom_yaw0=0.4, twist_only=twist_only)
    records = records[:100] + [records[99]] + records[150:]  # the same stamp twice, then a 1 s gap
    for odom in records:
        a.predict_odometry(odom)
        numpy_prediction(b, odom)
    assert np.all(a.p != start)  # every state of every particle moved
    assert np.array_equal(a.p, b.p)


def test_the_kernels_sine_and_cosine_are_numpys(small_table):
    """The kernel calls the C library's cos/sin; the numpy code it replaced called np.cos/np.sin. Equal here, so
    replays are bit-identical; a platform where numpy's float64 trigonometry differs would fail this first."""
    x = np.random.default_rng(0).uniform(-50.0, 50.0, 200_000)
    assert np.array_equal(np.cos(x), np.array([math.cos(v) for v in x]))
    assert np.array_equal(np.sin(x), np.array([math.sin(v) for v in x]))


def numpy_neighbour_interpolation(pf, en, S, rows):
    """The lattice branch of ParticleFilter._interpolate as numpy expressions (before the compiled passes)."""
    sig = pf.config.tile_kernel_stride * pf.stride
    st = pf.stride
    e0, n0 = en[:, 0].min(), en[:, 1].min()
    ix, iy = np.rint((en[:, 0] - e0) / st).astype(np.int64), np.rint((en[:, 1] - n0) / st).astype(np.int64)
    nx, ny = int(ix.max()) + 1, int(iy.max()) + 1
    P, pad = pf.p[:, :2], 2
    G = np.zeros((S.shape[0], ny + 2 * pad, nx + 2 * pad))
    M = np.zeros((ny + 2 * pad, nx + 2 * pad))
    G[:, iy + pad, ix + pad] = S
    M[iy + pad, ix + pad] = 1.0
    px, py = (P[:, 0] - e0) / st + pad, (P[:, 1] - n0) / st + pad
    bx, by = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    num, den = np.zeros(P.shape[0]), np.zeros(P.shape[0])
    h, w = M.shape
    scale = 0.5 * (st / sig) ** 2
    for dy in (-1, 0, 1, 2):
        cy = by + dy
        for dx in (-1, 0, 1, 2):
            cx = bx + dx
            ok = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
            cxc, cyc = np.where(ok, cx, 0), np.where(ok, cy, 0)
            wgt = np.exp(-scale * ((cx - px) ** 2 + (cy - py) ** 2)) * M[cyc, cxc] * ok
            num += wgt * G[rows, cyc, cxc]
            den += wgt
    return np.where(den > 1e-3, num / np.maximum(den, 1e-12), 0.0)


def test_compiled_tile_interpolation_is_bit_identical_to_the_numpy_expressions(small_table):
    """Tiles on a lattice with holes, two score rows, particles inside, at the edge and far outside the window."""
    pf = make_filter(small_table[0], n=900, seed=5)
    st = pf.stride
    rng = np.random.default_rng(8)
    gx, gy = np.meshgrid(np.arange(12), np.arange(9))
    keep = rng.random(gx.size) > 0.15  # missing tiles: the mask matters
    en = np.column_stack([100.0 + gx.ravel()[keep] * st, -40.0 + gy.ravel()[keep] * st])
    S = rng.random((2, en.shape[0]))
    pf.init_gaussian(100.0 + 6 * st, -40.0 + 4 * st, np.eye(2) * (5 * st) ** 2, 0.0)
    rows = rng.integers(0, 2, pf.p.shape[0])
    got = pf._interpolate(en, S, rows)
    want = numpy_neighbour_interpolation(pf, en, S, rows)
    assert (got > 0).sum() > 100 and (got == 0).sum() > 10  # inside and outside the tiles both occur
    assert np.array_equal(got, want)
