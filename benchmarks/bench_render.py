"""Rendering benchmark of the synthetic world: panoramas (and pinhole views) per second on ONE core.

    .venv/bin/python benchmarks/bench_render.py                  # 1.5 km world, 128x512 panoramas, 200 renders
    .venv/bin/python benchmarks/bench_render.py --size-m 500 -n 50   # quick

One thread everywhere (OpenCV, BLAS). Positions are random road points of a procedural world, headings random.
Reported: plain renders (fixed style) and randomised renders (random lighting, colour cast, noise and up to 12 parked
cars per view), plus a 240x320 90-degree pinhole view (the vehicle camera of a drive). Target: >= 20 panoramas/s.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from geoloc_node.synth.pairs import sample_locations  # noqa: E402
from geoloc_node.synth.render import random_style, render_panorama, render_pinhole  # noqa: E402
from geoloc_node.synth.world import WorldConfig, make_world  # noqa: E402

TARGET_PER_S = 20.0


def _rate(render, poses, styles) -> float:
    render(*poses[0], styles[0])  # warm the ray caches
    start = time.perf_counter()
    for pose, style in zip(poses, styles, strict=True):
        render(*pose, style)
    return len(poses) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-m", type=float, default=1500.0, help="world size (default 1500 m)")
    parser.add_argument("-n", type=int, default=200, help="renders per measurement (default 200)")
    parser.add_argument("--pano", default="128x512", help="panorama size HxW (default 128x512)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    pano_size = tuple(int(v) for v in args.pano.split("x"))

    start = time.perf_counter()
    world = make_world(WorldConfig(size_m=args.size_m, seed=0))
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    points = sample_locations(world, rng, args.n, margin_m=10.0)
    poses = [(float(e), float(n), float(h)) for (e, n), h in zip(points, rng.uniform(0, 360, args.n), strict=True)]
    plain = [None] * args.n
    randomised = [random_style(rng, world, e, n) for e, n, _ in poses]

    def pano(e, n, h, style):
        return render_panorama(world, e, n, h, size=pano_size, style=style)

    def pinhole(e, n, h, style):
        return render_pinhole(world, e, n, h, hfov_deg=90.0, size=(240, 320), style=style)

    results = {
        f"panorama {pano_size[0]}x{pano_size[1]}, plain": _rate(pano, poses, plain),
        f"panorama {pano_size[0]}x{pano_size[1]}, randomised": _rate(pano, poses, randomised),
        "pinhole 240x320 hfov 90, randomised": _rate(pinhole, poses, randomised),
    }
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"numpy {np.__version__}, 1 thread")
    print(f"world: {args.size_m:g} m at 0.5 m/px built in {build_s:.1f} s; {args.n} renders per line")
    for name, rate in results.items():
        print(f"{name:45s} {rate:7.1f} /s   ({1000.0 / rate:5.1f} ms each)")
    worst = min(list(results.values())[:2])
    verdict = "meets" if worst >= TARGET_PER_S else "MISSES"
    print(f"panoramas/s: {worst:.1f} (slowest panorama line) - {verdict} the target of {TARGET_PER_S:g}/s")
    return 0 if worst >= TARGET_PER_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
