"""Does the node keep up with its inputs? A recorded drive with a GPS outage, played in real time (sim time) into the
node with its real pipeline (shipped model, ONNX Runtime, a region table of the drive's world), spun by the node's
own executor or by rclpy's MultiThreadedExecutor, in one process as in the tests.

    python benchmarks/bench_executor.py                          # the node's executor (make_executor)
    python benchmarks/bench_executor.py --executor multi --threads 4
    python benchmarks/bench_executor.py --busy 2 --json out.json # with two busy-looping processes beside it

Reported per input stream (GPS, odometry): messages published by the player, delivered to the pipeline (the rest were
dropped from full subscription queues), and lateness = pipeline call time - publish time (median, p95, max); the GPS
health changes the pipeline went through (a LOST before the scripted outage is a false one: the node's backlog, not the
receiver) and the CPU time of the executor's spin thread. docs/ros.md#threads has the measured table.

The world, its table and the bag are built once under ``--work`` (default /tmp/geoloc_bench_executor) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = 9003  # held out from training
OUTAGE = (12.0, 24.0)


def build_inputs(work: Path, duration_s: float):
    """World -> GeoTIFF -> region table (shipped model) and a drive bag with a GPS outage; reused when present."""
    from geoloc_node.demo import default_model
    from geoloc_node.synth.drive import DriveConfig, record_drive
    from geoloc_node.synth.world import WorldConfig, make_world
    from geoloc_node.table_builder import build_table_from_geotiff

    work.mkdir(parents=True, exist_ok=True)
    model = default_model()
    table, bag = work / "table.gltab", work / f"drive_{duration_s:.0f}s"
    world = None
    if not table.exists():
        world = make_world(WorldConfig(size_m=400.0, seed=SEED))
        tif = world.write_geotiff(work / "aerial.tif")
        build_table_from_geotiff(tif, model, table, tile_size_m=50.0, stride_m=10.0, progress=False,
                                 backend="onnxruntime")
    if not bag.exists():
        world = world or make_world(WorldConfig(size_m=400.0, seed=SEED))
        record_drive(world, bag, DriveConfig(duration_s=duration_s, seed=SEED, image_rate_hz=10.0,
                                             gps_faults=[("outage", OUTAGE[0], OUTAGE[1])]))
    return table, bag


def thread_cpu_s(native_id: int) -> float:
    """CPU time (user + system) of one thread of this process, from /proc (Linux)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(table: Path, bag: Path, executor_kind: str, threads: int) -> dict:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from geoloc_node.ros.bagplay import BagPlayer
    from geoloc_node.ros.node import GeolocNode, default_pipeline_factory, make_executor

    calls: list[tuple[str, float, float, str]] = []  # (stream, monotonic time of the call, stamp, GPS state after)
    published: list[tuple[str, float, float]] = []  # (topic, monotonic time, header stamp)

    def factory(core_cfg, node_cfg):
        pipeline = default_pipeline_factory(core_cfg, node_cfg)

        def traced(stream, fn):
            def call(record):
                t = time.monotonic()
                out = fn(record)
                calls.append((stream, t, record.stamp, pipeline.health.state))
                return out
            return call

        pipeline.on_gps = traced("gps", pipeline.on_gps)
        pipeline.on_odometry = traced("odometry", pipeline.on_odometry)
        return pipeline

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(os.environ.get("ROS_DOMAIN_ID", "77")))
    executor = (make_executor(context=context) if executor_kind == "node"
                else MultiThreadedExecutor(num_threads=threads, context=context))
    node = GeolocNode(pipeline_factory=factory, context=context, parameter_overrides=[
        Parameter("table.path", value=str(table)), Parameter("model.backend", value="onnxruntime"),
        Parameter("use_sim_time", value=True)])
    player_node = rclpy.create_node("bench_executor_player", context=context)
    executor.add_node(node)
    executor.add_node(player_node)
    spin_id: list[int] = []

    def spin():
        spin_id.append(threading.get_native_id())
        try:
            executor.spin()
        except Exception:  # noqa: BLE001 - shut down under it
            pass

    spinner = threading.Thread(target=spin, name="spin", daemon=True)
    spinner.start()
    try:
        node.trigger_configure()
        if node.lifecycle_state != "inactive":
            raise SystemExit(f"configure failed: {node._last_error}")
        node.trigger_activate()
        topics = ["/camera/image_raw", "/gps/fix", "/odom"]
        player = BagPlayer(player_node, bag, topics=topics, rate=1.0)
        player.prepare()
        if not player.wait_for_subscribers(topics):
            raise SystemExit("the node did not subscribe")
        cpu0 = thread_cpu_s(spin_id[0])
        wall0 = time.monotonic()

        def note(topic, t_ns, raw):
            # CDR: a 4-byte encapsulation header, then std_msgs/Header's stamp (int32 sec, uint32 nanosec) first
            sec, nsec = struct.unpack_from("<iI", raw, 4)
            published.append((topic, time.monotonic(), sec + nsec * 1e-9))
            return raw

        player.play(transform=note)
        time.sleep(1.0)
        wall, cpu = time.monotonic() - wall0, thread_cpu_s(spin_id[0]) - cpu0
    finally:
        node.shutdown()
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        player_node.destroy_node()
        rclpy.try_shutdown(context=context)

    t_begin = min(p[2] for p in published)
    out = {"executor": "node (make_executor)" if executor_kind == "node" else f"MultiThreaded({threads})",
           "wall_s": round(wall, 1), "spin_thread_cpu_s": round(cpu, 1)}
    for stream, topic in (("gps", "/gps/fix"), ("odometry", "/odom")):
        sent = {round(s, 4): t for tp, t, s in published if tp == topic}
        got = [(t - sent[round(s, 4)], s - t_begin) for st, t, s, _ in calls if st == stream and round(s, 4) in sent]
        late = np.array([g[0] for g in got]) * 1e3 if got else np.array([np.nan])
        delivered = {round(s, 4) for st, _, s, _ in calls if st == stream}
        dropped_s = np.array([s - t_begin for s in set(sent) - delivered])
        drops_per_s = np.bincount(dropped_s.astype(int), minlength=1) if len(dropped_s) else np.zeros(1, int)
        out[stream] = {"published": len(sent), "delivered": len(got), "dropped": len(sent) - len(got),
                       "late_ms_median": round(float(np.median(late)), 1),
                       "late_ms_p95": round(float(np.percentile(late, 95)), 1),
                       "late_ms_max": round(float(np.max(late)), 1),
                       "late_max_at_s": round(got[int(np.argmax(late))][1], 2) if got else None,
                       "dropped_per_second_of_drive": drops_per_s.tolist()}
    changes = []
    for _, _, s, state in sorted(calls, key=lambda c: c[1]):
        if not changes or changes[-1][1] != state:
            changes.append((round(s - t_begin, 2), state))
    out["gps_health_changes"] = changes  # (s into the drive, state), in the order the pipeline saw them
    # GPS is healthy in the bag from the start to the outage; allow recover_s (3 s) + 1 s to trust it at first.
    before = [state for _, _, s, state in calls if 4.0 <= s - t_begin < OUTAGE[0]]
    out["gps_not_trusted_before_outage"] = round(sum(st != "HEALTHY" for st in before) / max(len(before), 1), 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--executor", choices=["node", "multi"], default="node",
                    help="node: the node's own (make_executor); multi: rclpy's MultiThreadedExecutor")
    ap.add_argument("--threads", type=int, default=4, help="threads of the MultiThreadedExecutor")
    ap.add_argument("--busy", type=int, default=0, help="busy-looping processes to run beside it (a loaded machine)")
    ap.add_argument("--duration-s", type=float, default=32.0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/geoloc_bench_executor"))
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    table, bag = build_inputs(args.work, args.duration_s)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        result = run(table, bag, args.executor, args.threads)
    finally:
        for h in hogs:
            h.kill()
    result.update(busy_processes=args.busy, machine=f"{platform.machine()}, {os.cpu_count()} cores",
                  date=time.strftime("%Y-%m-%d"))
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.json)  # atomic
    return 0


if __name__ == "__main__":
    sys.exit(main())
