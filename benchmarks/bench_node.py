"""Latency of the real node: camera image in -> ~/fix out, with the CPU ONNX encoder, at 10 Hz over a simulated drive.

    python benchmarks/bench_node.py --untrained /tmp/geoloc_bench [--duration-s 600] [--json out.json]
    python benchmarks/bench_node.py --model M.json --untrained /tmp/geoloc_bench ...   # another model

The node runs as its own process (``python -m geoloc_node.ros.node``, autostart, ``pipeline.max_frame_rate_hz`` = the
camera rate). This process plays a drive onto its topics in real time: a vehicle on a circle of 300 m radius at 8 m/s;
GPS healthy (10 Hz) for the first ``--gps-s`` seconds, then NO_FIX for the rest, so the fallback is engaged and every
processed frame yields a ~/fix; odometry at 20 Hz; rgb8 panoramas of ``--height`` x ``--width`` at ``--rate-hz``.
Each ~/fix is matched to its image by stamp (odometry stamps are offset so they never collide).

The encoder is real (ONNX Runtime on the CPU, ``encoder_threads`` threads); the region table is an "oracle" built for
this benchmark so that the filter behaves as on a real drive: the tiles along the circle hold the codes the encoder
gives the images published there (at the vehicle's heading), all other tiles random codes (2 km x 2 km, 10 m stride,
40,401 tiles). Without ``--model``, ``--untrained DIR`` exports the default architecture
(``geoloc_node.model.net.ModelConfig()``) with random weights to ONNX (fp16 weights, as shipped; needs the train
extra): the latency does not depend on the weights.

Reported: p50/p90/p99/max latency (ms) from publishing the image to receiving its ~/fix, answered/published frames
during the outage, and the backlog check: p50 of the last 10% of frames against the first 10% (a queue would make it
climb; the one-slot buffer turns overload into counted drops instead).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ORIGIN = (47.3769, 8.5417)
RADIUS_M, SPEED_MPS = 300.0, 8.0
T0 = 1000.0


def make_untrained(out_dir: Path) -> Path:
    """Sidecar JSON of an untrained default-architecture model (reused when present)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sidecar = out_dir / "bench.json"
    if sidecar.exists():
        return sidecar
    import torch

    from geoloc_node.model.export import export_model
    from geoloc_node.model.net import CrossViewHasher, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig()
    ck = out_dir / "bench.pt"
    torch.save({"model_config": cfg.to_dict(), "model": CrossViewHasher(cfg).state_dict()}, ck)
    return export_model(ck, out_dir, "bench", precision="fp16-weights")


def truth(t: float) -> tuple[float, float, float]:
    """(east, north, compass heading deg) on the circle at drive time t (counter-clockwise, starting east)."""
    s = SPEED_MPS * t / RADIUS_M
    return RADIUS_M * math.cos(s), RADIUS_M * math.sin(s), (-math.degrees(s)) % 360.0


def make_oracle_table(sidecar: Path, out: Path, images: list[np.ndarray], backend: str, threads: int) -> None:
    from geoloc_node.encoders import load_encoder, read_spec
    from geoloc_node.geodesy import LocalFrame
    from geoloc_node.table import write_table

    spec = read_spec(sidecar)
    enc = load_encoder(sidecar, backend, threads=threads)
    g = np.arange(-1000.0, 1000.0 + 1e-6, 10.0)
    ee, nn = np.meshgrid(g, g)
    en = np.column_stack([ee.ravel(), nn.ravel()])
    codes = np.random.default_rng(0).integers(0, 256, (len(en), spec.bits // 8), dtype=np.uint8)
    lap_s = 2 * math.pi * RADIUS_M / SPEED_MPS
    for t in np.arange(0.0, lap_s, 10.0 / SPEED_MPS / 2):  # every 5 m of the lap
        e, n, hdg = truth(t)
        k = int(np.argmin(((en - (e, n)) ** 2).sum(axis=1)))
        codes[k] = enc.encode(images[k % len(images)][None], headings_deg=[hdg])[0]
    enc.close()
    lat, lon = LocalFrame(*ORIGIN).to_latlon(en[:, 0], en[:, 1])
    write_table(out, codes, lat, lon, bits=spec.bits, tile_size_m=50.0, stride_m=10.0,
                encoder_fingerprint=spec.aerial_fingerprint, origin=ORIGIN)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="encoder sidecar JSON (default: --untrained)")
    ap.add_argument("--untrained", default="/tmp/geoloc_bench", help="work folder (untrained model, oracle table)")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--rate-hz", type=float, default=10.0)
    ap.add_argument("--duration-s", type=float, default=600.0, help="length of the GPS outage measured (s)")
    ap.add_argument("--gps-s", type=float, default=20.0, help="healthy GPS before the outage (s)")
    ap.add_argument("--threads", type=int, default=2, help="the node's encoder_threads")
    ap.add_argument("--domain", type=int, default=77)
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--raw", help="write each matched frame (drive time s, latency ms) to this .npz (the tail)")
    args = ap.parse_args(argv)

    work = Path(args.untrained)
    work.mkdir(parents=True, exist_ok=True)  # also with --model: the oracle table is written here
    sidecar = Path(args.model) if args.model else make_untrained(work)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(64)]
    table = work / f"oracle_{sidecar.stem}_{args.height}x{args.width}.gltab"
    if not table.exists():
        make_oracle_table(sidecar, table, images, args.backend, args.threads)

    os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, NavSatFix

    from geoloc_node.geodesy import LocalFrame
    from geoloc_node.ros.interfaces import to_time_msg

    node_cmd = [sys.executable, "-m", "geoloc_node.ros.node", "--ros-args",
                "-p", f"model.path:={sidecar}", "-p", f"model.backend:={args.backend}",
                "-p", f"table.path:={table}", "-p", "autostart:=true",
                "-p", f"pipeline.max_frame_rate_hz:={args.rate_hz:.1f}", "-p", f"encoder_threads:={args.threads}"]
    proc = subprocess.Popen(node_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rclpy.init()
    bench = rclpy.create_node("bench_node")
    sent: dict[tuple[int, int], float] = {}
    got: dict[tuple[int, int], float] = {}

    def on_fix(msg):
        got[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.perf_counter()

    bench.create_subscription(NavSatFix, "/geoloc_node/fix", on_fix, 100)
    diag: dict = {}

    def on_diag(msg):
        for st in msg.status:
            if st.name == "geoloc_node: localization":
                diag.update({v.key: v.value for v in st.values})

    bench.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    cam = bench.create_publisher(Image, "/camera/image_raw",
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    gps = bench.create_publisher(NavSatFix, "/gps/fix", 10)
    odo = bench.create_publisher(Odometry, "/odom", 10)
    ex = SingleThreadedExecutor()
    ex.add_node(bench)
    threading.Thread(target=ex.spin, daemon=True).start()
    frame = LocalFrame(*ORIGIN)
    g = np.arange(-1000.0, 1000.0 + 1e-6, 10.0)
    ee, nn = np.meshgrid(g, g)
    en = np.column_stack([ee.ravel(), nn.ravel()])

    def image_msg(t):
        e, n, _ = truth(t)
        k = int(np.argmin(((en - (e, n)) ** 2).sum(axis=1)))
        img = images[k % len(images)]
        m = Image()
        m.header.stamp = to_time_msg(T0 + t)
        m.header.frame_id = "camera"
        m.height, m.width = img.shape[:2]
        m.encoding, m.step = "rgb8", img.shape[1] * 3
        m.data = img.tobytes()
        return m

    def fix_msg(t, healthy):
        m = NavSatFix()
        m.header.stamp = to_time_msg(T0 + t)
        m.header.frame_id = "gps"
        if healthy:
            e, n, _ = truth(t)
            lat, lon = frame.to_latlon(e, n)
            m.status.status, m.latitude, m.longitude, m.altitude = 0, float(lat), float(lon), 400.0
            m.position_covariance = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 4.0]
            m.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
        else:
            m.status.status = -1
            m.latitude = m.longitude = m.altitude = float("nan")
        return m

    def odom_msg(t):
        e, n, hdg = truth(t)
        yaw = math.radians(90.0 - hdg)
        m = Odometry()
        m.header.stamp = to_time_msg(T0 + t)
        m.header.frame_id, m.child_frame_id = "odom", "base_link"
        m.pose.pose.position.x, m.pose.pose.position.y = e, n
        m.pose.pose.orientation.z, m.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        m.twist.twist.linear.x, m.twist.twist.angular.z = SPEED_MPS, SPEED_MPS / RADIUS_M
        return m

    t_wall0 = time.time()
    err = ""
    try:
        deadline = time.monotonic() + 180.0  # model + table load
        while min(cam.get_subscription_count(), gps.get_subscription_count(), odo.get_subscription_count()) == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the node did not come up")
            time.sleep(0.1)
        # events on a 40 Hz tick (0.025 s): images every 1/rate, odometry at 20 Hz on the odd ticks, GPS at 10 Hz
        tick = 0.025
        n_ticks = int((args.gps_s + args.duration_s) / tick)
        img_every = max(int(round(1.0 / args.rate_hz / tick)), 1)
        start = time.perf_counter()
        for i in range(n_ticks):
            t = i * tick
            delay = start + t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if i % 2 == 1:
                odo.publish(odom_msg(t))
            if i % 4 == 0:
                gps.publish(fix_msg(t, healthy=t < args.gps_s))
            if i % img_every == 0:
                msg = image_msg(t)
                key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                t_pub = time.perf_counter()
                cam.publish(msg)
                if t >= args.gps_s + 1.0:  # measure inside the outage (the monitor needs 0.6 s to call it)
                    sent[key] = t_pub
        time.sleep(1.0)
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        ex.shutdown()
        bench.destroy_node()
        rclpy.try_shutdown()

    keys = sorted((k for k in sent if k in got), key=lambda k: k[0] + k[1] * 1e-9)
    lat = np.array([(got[k] - sent[k]) * 1e3 for k in keys])
    tenth = max(len(lat) // 10, 1)
    pct = (lambda p: round(float(np.percentile(lat, p)), 2)) if len(lat) else (lambda p: None)
    res = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        "model": str(sidecar), "backend": args.backend, "encoder_threads": args.threads, "rate_hz": args.rate_hz,
        "image_hw": [args.height, args.width], "outage_s": args.duration_s, "wall_s": round(time.time() - t_wall0, 1),
        "frames_in_outage": len(sent), "fixes_matched": len(keys),
        "answered_fraction": round(len(keys) / max(len(sent), 1), 4),
        "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": pct(100)},
        "backlog": {"p50_first_10pct_ms": round(float(np.median(lat[:tenth])), 2) if len(lat) else None,
                    "p50_last_10pct_ms": round(float(np.median(lat[-tenth:])), 2) if len(lat) else None},
        "node_diagnostics": {k: v for k, v in diag.items()
                             if k.startswith(("counts.frames", "counts.reinit", "latency.", "health.state", "filter."))
                             and not k.endswith("last_ms")},
    }
    print(json.dumps(res, indent=1))
    if not len(lat):
        print(err[-3000:], file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.raw:
        np.savez(args.raw, t_s=np.array([k[0] + k[1] * 1e-9 - T0 for k in keys]), latency_ms=lat,
                 sent_perf_s=np.array([sent[k] for k in keys]),
                 sent_t_s=np.array(sorted(k[0] + k[1] * 1e-9 - T0 for k in sent)))
    return 0 if len(lat) else 1


if __name__ == "__main__":
    sys.exit(main())
