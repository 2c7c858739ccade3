"""Latency of the real node: camera image in -> ~/fix out, with the CPU ONNX encoder, at 10 Hz for a simulated drive.

    python benchmarks/bench_node.py --model geoloc_node/models/<model>.json --table area.gltab \
        [--bag drive_bag] [--duration-s 600] [--rate-hz 10] [--json out.json]

The node runs as its own process (``python -m geoloc_node.ros.node``, autostart, GPS reported as NO_FIX so that the
fallback is engaged and every processed frame yields a ~/fix; ``pipeline.max_frame_rate_hz`` = the input rate). This
process publishes rgb8 images (from ``--bag``'s camera topic, looped, or noise of ``--height`` x ``--width``) with
fresh stamps at ``--rate-hz`` of wall time and matches each ~/fix to its image by stamp.

Reported: p50/p90/p99/max latency (ms), answered/published frames, frames the pipeline dropped (one-slot buffer) and
the backlog check: p50 of the last 10% of frames against the first 10% (a growing queue would make it climb; the
one-slot buffer should keep it flat and turn overload into drops instead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def _frames(args) -> list[np.ndarray]:
    if args.bag:
        from rosbags.highlevel import AnyReader

        from geoloc_node.messages import frame_from_msg

        out = []
        with AnyReader([Path(args.bag)]) as reader:
            conns = [c for c in reader.connections if c.topic == args.image_topic]
            for conn, _, raw in reader.messages(connections=conns):
                out.append(frame_from_msg(reader.deserialize(raw, conn.msgtype)).image)
                if len(out) >= 200:
                    break
        if out:
            return out
        print(f"no {args.image_topic} in {args.bag}; using noise", file=sys.stderr)
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(20)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="encoder sidecar JSON (or ONNX) = the node's model.path")
    ap.add_argument("--table", required=True, help="region table = the node's table.path")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--bag", help="take camera frames from this bag (looped)")
    ap.add_argument("--image-topic", default="/camera/image_raw")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--rate-hz", type=float, default=10.0)
    ap.add_argument("--duration-s", type=float, default=600.0, help="simulated drive length (s of input)")
    ap.add_argument("--threads", type=int, default=2, help="the node's encoder_threads")
    ap.add_argument("--domain", type=int, default=77)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args(argv)

    os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, NavSatFix

    from geoloc_node.ros.outputs import to_time_msg

    frames = _frames(args)
    node_cmd = [sys.executable, "-m", "geoloc_node.ros.node", "--ros-args",
                "-p", f"model.path:={args.model}", "-p", f"model.backend:={args.backend}",
                "-p", f"table.path:={args.table}", "-p", "autostart:=true",
                "-p", f"pipeline.max_frame_rate_hz:={args.rate_hz:.1f}", "-p", f"encoder_threads:={args.threads}",
                "-p", f"image_topic:={args.image_topic}"]
    proc = subprocess.Popen(node_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rclpy.init()
    bench = rclpy.create_node("bench_node")
    sent: dict[tuple[int, int], float] = {}
    got: dict[tuple[int, int], float] = {}

    def on_fix(msg):
        got[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.perf_counter()

    bench.create_subscription(NavSatFix, "/geoloc_node/fix", on_fix, 100)
    cam = bench.create_publisher(Image, args.image_topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    gps = bench.create_publisher(NavSatFix, "/gps/fix", 10)
    ex = SingleThreadedExecutor()
    ex.add_node(bench)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()

    def image_msg(img, stamp):
        m = Image()
        m.header.stamp = to_time_msg(stamp)
        m.header.frame_id = "camera"
        m.height, m.width = img.shape[:2]
        m.encoding, m.step = "rgb8", img.shape[1] * 3
        m.data = img.tobytes()
        return m

    def no_fix(stamp):
        m = NavSatFix()
        m.header.stamp = to_time_msg(stamp)
        m.status.status = -1
        m.latitude = m.longitude = m.altitude = float("nan")
        return m

    try:
        t0 = time.time()
        deadline = time.monotonic() + 120.0  # model + table load
        while cam.get_subscription_count() == 0 or gps.get_subscription_count() == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node did not come up: {proc.stderr.read() if proc.poll() is not None else ''}")
            time.sleep(0.1)
        # warm-up: GPS lost for 3 s of message time, a few frames so that the filter is initialised
        stamp0 = 1_000.0
        n = int(args.duration_s * args.rate_hz)
        period = 1.0 / args.rate_hz
        warm = int(3 * args.rate_hz)
        start = time.perf_counter()
        for i in range(-warm, n):
            stamp = stamp0 + (i + warm) * period
            target = start + (i + warm) * period
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if i % max(int(args.rate_hz / 5), 1) == 0:
                gps.publish(no_fix(stamp))
            msg = image_msg(frames[(i + warm) % len(frames)], stamp)
            key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            t_pub = time.perf_counter()
            cam.publish(msg)
            if i >= 0:
                sent[key] = t_pub
        time.sleep(1.0)
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        ex.shutdown()
        bench.destroy_node()
        rclpy.try_shutdown()

    keys = [k for k in sent if k in got]
    lat = np.array([(got[k] - sent[k]) * 1e3 for k in keys])
    order = np.argsort([k[0] + k[1] * 1e-9 for k in keys])
    lat_t = lat[order] if len(lat) else lat
    tenth = max(len(lat_t) // 10, 1)
    res = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "backend": args.backend, "rate_hz": args.rate_hz, "duration_s": args.duration_s,
        "wall_s": round(time.time() - t0, 1), "frames_published": len(sent), "fixes_matched": len(keys),
        "answered_fraction": round(len(keys) / max(len(sent), 1), 4),
        "latency_ms": {q: round(float(np.percentile(lat, p)), 2) for q, p in
                       (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))} if len(lat) else None,
        "backlog": {"p50_first_10pct_ms": round(float(np.median(lat_t[:tenth])), 2) if len(lat) else None,
                    "p50_last_10pct_ms": round(float(np.median(lat_t[-tenth:])), 2) if len(lat) else None},
        "image_hw": list(frames[0].shape[:2]),
    }
    print(json.dumps(res, indent=1))
    if not len(lat):
        print(err[-3000:], file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0 if len(lat) else 1


if __name__ == "__main__":
    sys.exit(main())
