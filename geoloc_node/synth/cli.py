"""``geoloc synth world|age|pairs|drive|corrupt-frames``: worlds, training pairs, drive bags and what breaks them.

Each command checks its input, writes its output under a temporary name beside the final one and renames it when
complete, prints where the output went, and exits 2 with a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import GeolocError


def register(subparsers) -> None:
    parser = subparsers.add_parser("synth", help="synthetic world, training pairs and drive bags",
                                   description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="synth_command", metavar="SYNTH_COMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    _register_world(commands)
    _register_age(commands)
    _register_pairs(commands)
    _register_drive(commands)
    _register_corrupt(commands)


# -- argument helpers --------------------------------------------------------------------------------------------------
def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH, e.g. 128x512") from None
    return h, w


def _pair(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not two numbers A,B") from None
    return a, b


def _fail(command: str, message: str) -> int:
    print(f"geoloc synth {command}: error: {message}", file=sys.stderr)
    return 2


def _progress(total: int, unit: str):
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, file=sys.stderr, disable=None)

    def update(done: int, *_):
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return update, bar


def _load_world(path: Path):
    from .world import World

    return World.load(path)


# -- world ------------------------------------------------------------------------------------------------------------
def _register_world(commands) -> None:
    from .world import WorldConfig

    d = WorldConfig()
    p = commands.add_parser("world", help="build a world (procedural, or from an OSM extract) and its GeoTIFF",
                            description="Build a synthetic world and write it to a new folder OUT: world.json + "
                            "world.npz (rasters, road graph) and aerial.tif (the orthophoto, GeoTIFF in a local "
                            "orthographic CRS centred at the origin whose x/y are the ENU east/north metres).")
    p.add_argument("out", type=Path, help="new folder to write (must not exist)")
    p.add_argument("--size-m", type=float, default=d.size_m, help=f"side of the square region in metres "
                   f"(default {d.size_m:g}; 100-5000)")
    p.add_argument("--resolution-m", type=float, default=d.resolution_m,
                   help=f"ground sampling distance of the rasters and the orthophoto (default {d.resolution_m:g}; "
                   "0.1-2)")
    p.add_argument("--origin", default=None, metavar="LAT,LON|auto",
                   help=f"WGS84 centre of the region (default {d.origin_lat},{d.origin_lon}; with --osm the default "
                   "is 'auto': the centre of the extract)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="random seed: same seed and options, same world bit for bit")
    p.add_argument("--block-m", type=float, default=d.block_m,
                   help=f"procedural layout: mean distance between junctions (default {d.block_m:g})")
    p.add_argument("--osm", type=Path, default=None, metavar="FILE",
                   help="lay the world out from an OpenStreetMap extract (.osm.pbf/.osm) instead of procedurally")
    p.add_argument("--no-shadows", action="store_true", help="orthophoto without cast shadows")
    p.set_defaults(func=run_world)


def run_world(args) -> int:
    from dataclasses import replace

    from .world import WorldConfig, make_world, world_from_osm

    if args.out.exists():
        return _fail("world", f"output {args.out} already exists; choose a new path or remove it first")
    config = WorldConfig(size_m=args.size_m, resolution_m=args.resolution_m, seed=args.seed, block_m=args.block_m,
                         aerial_shadows=not args.no_shadows)
    try:
        origin = args.origin or ("auto" if args.osm else f"{config.origin_lat},{config.origin_lon}")
        if origin != "auto":
            lat, lon = _pair(origin)
            config = replace(config, origin_lat=lat, origin_lon=lon)
        elif args.osm is None:
            return _fail("world", "--origin auto needs --osm")
        if args.osm is not None:
            from .osm import centred_config

            if not args.osm.is_file():
                return _fail("world", f"OSM file {args.osm} does not exist")
            if origin == "auto":
                config = centred_config(args.osm, config)
            print(f"building a {config.size_m:g} m world from {args.osm} ...", file=sys.stderr)
            world = world_from_osm(args.osm, config)
        else:
            print(f"building a {config.size_m:g} m procedural world ...", file=sys.stderr)
            world = make_world(config)
        world.save(args.out, geotiff=True)
    except (GeolocError, argparse.ArgumentTypeError) as exc:
        return _fail("world", str(exc))
    print(f"world written to {args.out} (world.json, world.npz, aerial.tif: {world.height.shape[1]}x"
          f"{world.height.shape[0]} px at {config.resolution_m:g} m, origin {config.origin_lat:.6f},"
          f"{config.origin_lon:.6f}, {len(world.road_graph.edges)} road edges)")
    return 0


# -- pairs ------------------------------------------------------------------------------------------------------------
def _register_pairs(commands) -> None:
    from .pairs import PairsConfig

    d = PairsConfig()
    p = commands.add_parser("pairs", help="export aerial/ground training pairs in the CVUSA layout",
                            description="Render pairs (aerial tile + ground view + lat/lon) at random road "
                            "locations of a world into a new folder OUT in the CVUSA layout (bingmap/19, "
                            "streetview/panos, splits/train-19zl.csv, splits/val-19zl.csv, synth_locations.csv), "
                            "split by geography.")
    p.add_argument("out", type=Path, help="new folder to write (must not exist)")
    p.add_argument("--world", type=Path, required=True, help="a world folder written by 'geoloc synth world'")
    p.add_argument("--count", type=int, default=d.count, help=f"number of locations drawn (default {d.count}); "
                   "train locations too close to val ones are dropped")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    p.add_argument("--tile-size-m", type=float, default=d.tile_size_m,
                   help=f"ground side of an aerial tile, metres (default {d.tile_size_m:g})")
    p.add_argument("--tile-px", type=int, default=d.tile_px, help=f"aerial tile side, pixels (default {d.tile_px})")
    p.add_argument("--camera", choices=("panorama", "pinhole"), default=d.camera,
                   help="ground view: 360 degree panorama (north in the centre column) or a pinhole camera at a "
                   "random heading")
    p.add_argument("--size", type=_size, default=d.image_size, metavar="HxW",
                   help="ground image size (default 128x512)")
    p.add_argument("--hfov", type=float, default=d.hfov_deg, help="pinhole horizontal field of view, degrees")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of the area held out for validation (default {d.val_fraction:g})")
    p.add_argument("--min-val-distance-m", type=float, default=d.min_val_distance_m,
                   help=f"no train location within this distance of a val location (default {d.min_val_distance_m:g})")
    p.add_argument("--no-randomize", action="store_true",
                   help="same lighting for every sample and no extra parked cars (default: randomised per sample)")
    p.set_defaults(func=run_pairs)


def run_pairs(args) -> int:
    from .pairs import PairsConfig, export_pairs

    if args.out.exists():
        return _fail("pairs", f"output {args.out} already exists; choose a new path or remove it first")
    config = PairsConfig(count=args.count, seed=args.seed, tile_size_m=args.tile_size_m, tile_px=args.tile_px,
                         camera=args.camera, image_size=args.size, hfov_deg=args.hfov, val_fraction=args.val_fraction,
                         min_val_distance_m=args.min_val_distance_m, randomize=not args.no_randomize)
    try:
        config.validate()
        world = _load_world(args.world)
        update, bar = _progress(args.count, "pair")
        try:
            summary = export_pairs(world, args.out, config, progress=update)
        finally:
            bar.close()  # train locations dropped near val ones never reach the count
    except GeolocError as exc:
        return _fail("pairs", str(exc))
    print(f"pairs written to {args.out}: {summary['train']} train, {summary['val']} val "
          f"({summary['dropped_near_val']} dropped within {config.min_val_distance_m:g} m of val)")
    return 0


# -- drive ------------------------------------------------------------------------------------------------------------
def _register_drive(commands) -> None:
    from .drive import FAULT_KINDS, DriveConfig

    d = DriveConfig()
    p = commands.add_parser("drive", help="record a drive through a world as a rosbag2 (MCAP or sqlite3)",
                            description="Drive a vehicle along the roads of a world and record a rosbag2 at OUT: "
                            "camera images + camera_info (10 Hz), GPS NavSatFix with noise and scripted faults (5 Hz), "
                            "wheel odometry (50 Hz), and ground truth (/ground_truth/fix, /ground_truth/pose in the "
                            "ENU 'map' frame at the world origin).")
    p.add_argument("out", type=Path, help="new bag folder to write (must not exist)")
    p.add_argument("--world", type=Path, required=True, help="a world folder written by 'geoloc synth world'")
    p.add_argument("--duration", type=float, default=d.duration_s, help=f"seconds (default {d.duration_s:g})")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed: route, speeds, noise, lighting")
    p.add_argument("--speed", type=_pair, default=(d.speed_min_mps, d.speed_max_mps), metavar="MIN,MAX",
                   help="cruise speed range in m/s (default 3,15); the vehicle also stops at some junctions")
    p.add_argument("--camera", choices=("panorama", "pinhole"), default=d.camera,
                   help="360 degree panorama or forward pinhole camera (default panorama)")
    p.add_argument("--size", type=_size, default=None, metavar="HxW",
                   help="image size (default 128x512 for a panorama, 240x320 for a pinhole camera)")
    p.add_argument("--hfov", type=float, default=d.hfov_deg, help="pinhole horizontal field of view, degrees")
    p.add_argument("--fault", action="append", default=[], metavar="KIND:START:END",
                   help=f"GPS fault from START to END seconds, repeatable; KIND is one of {', '.join(FAULT_KINDS)}")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default=d.storage, help="bag storage (default mcap)")
    p.add_argument("--distro", choices=("jazzy", "humble"), default=d.distro,
                   help="ROS 2 message definitions to write with (default jazzy)")
    p.add_argument("--compressed", action="store_true", help="also write /camera/image_raw/compressed (JPEG)")
    p.add_argument("--no-randomize", action="store_true", help="default lighting, no parked cars along the route")
    p.add_argument("--image-rate", type=float, default=d.image_rate_hz, help="camera rate, Hz (default 10)")
    p.add_argument("--gps-rate", type=float, default=d.gps_rate_hz, help="GPS rate, Hz (default 5)")
    p.add_argument("--odom-rate", type=float, default=d.odom_rate_hz, help="odometry rate, Hz (default 50)")
    p.add_argument("--odom-scale-error", type=float, default=d.odom_scale_error, metavar="E",
                   help=f"odometry distances are (1 + E) times the true ones (default {d.odom_scale_error:g}; "
                   "0.05: 5%% too long)")
    p.add_argument("--teleport", action="append", default=[], metavar="T:DIST",
                   help="kidnapped vehicle, repeatable: at T seconds move the vehicle (camera, GPS, ground truth) "
                   "to a road point about DIST metres away; odometry goes on as if nothing happened")
    p.set_defaults(func=run_drive)


def run_drive(args) -> int:
    from .drive import DriveConfig, parse_fault, parse_teleport, record_drive

    if args.out.exists():
        return _fail("drive", f"output {args.out} already exists; choose a new path or remove it first")
    try:
        faults = [parse_fault(text) for text in args.fault]
        teleports = [parse_teleport(text) for text in args.teleport]
        size = args.size  # None: the camera model's default (DriveConfig)
        config = DriveConfig(duration_s=args.duration, seed=args.seed, speed_min_mps=args.speed[0],
                             speed_max_mps=args.speed[1], camera=args.camera, image_size=size, hfov_deg=args.hfov,
                             gps_faults=faults, storage=args.storage, distro=args.distro,
                             compressed_images=args.compressed, randomize=not args.no_randomize,
                             image_rate_hz=args.image_rate, gps_rate_hz=args.gps_rate, odom_rate_hz=args.odom_rate,
                             odom_scale_error=args.odom_scale_error, teleports=teleports)
        config.validate()
        world = _load_world(args.world)
        frames = int(config.duration_s * config.image_rate_hz) + 1
        update, bar = _progress(frames, "frame")
        try:
            summary = record_drive(world, args.out, config, progress=update)
        finally:
            bar.close()
    except GeolocError as exc:
        return _fail("drive", str(exc))
    counts = ", ".join(f"{topic} {n}" for topic, n in summary["topics"].items())
    jumps = "".join(f"; teleport at {t:g} s: {d:.0f} m" for t, d in summary["teleports"])
    print(f"bag written to {args.out} ({config.storage}, {config.distro}): {summary['distance_m']:.0f} m in "
          f"{config.duration_s:g} s; {counts}{jumps}")
    return 0


# -- age --------------------------------------------------------------------------------------------------------------
def _register_age(commands) -> None:
    p = commands.add_parser("age", help="the same world at another time: buildings demolished and built, roofs "
                            "repainted", description="Write a copy of world SRC to a new folder OUT (with its "
                            "aerial.tif) in which buildings covering about FRACTION of the built area are demolished, "
                            "as much is built on free ground, and about FRACTION of the other roofs repainted. Build "
                            "the region table from one and record drives in the other.")
    p.add_argument("src", type=Path, help="a world folder written by 'geoloc synth world'")
    p.add_argument("out", type=Path, help="new folder to write (must not exist)")
    p.add_argument("--fraction", type=float, default=0.2, help="share of the buildings changed (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the changes")
    p.set_defaults(func=run_age)


def run_age(args) -> int:
    from .aging import age_world

    if args.out.exists():
        return _fail("age", f"output {args.out} already exists; choose a new path or remove it first")
    try:
        aged = age_world(_load_world(args.src), args.fraction, args.seed)
        aged.save(args.out, geotiff=True)
    except GeolocError as exc:
        return _fail("age", str(exc))
    s = aged.source["aged"]
    print(f"aged world written to {args.out}: {s['removed']} of {s['buildings']} buildings demolished, {s['added']} "
          f"built, {s['repainted']} roofs repainted")
    return 0


# -- corrupt-frames ---------------------------------------------------------------------------------------------------
def _register_corrupt(commands) -> None:
    from .corrupt import FRAME_KINDS

    p = commands.add_parser("corrupt-frames", help="copy a bag with the camera frames of a time span replaced",
                            description="Copy the rosbag2 SRC to DST with every camera image (and its /compressed "
                            "twin) stamped within START:END seconds of the bag's start replaced by black frames, "
                            "noise, the frames of another drive, or real University-1652 drone views; every other "
                            "message is copied byte for byte, and the sidecar records the replacement.")
    p.add_argument("src", type=Path, help="a rosbag2 folder (MCAP or sqlite3)")
    p.add_argument("dst", type=Path, help="new bag folder to write (must not exist)")
    p.add_argument("--span", required=True, metavar="START:END", help="seconds from the bag's start, END excluded")
    p.add_argument("--kind", required=True, choices=FRAME_KINDS, help="what replaces the frames")
    p.add_argument("--source-bag", type=Path, default=None, help="other_world: the drive whose frames are used")
    p.add_argument("--u1652", type=Path, default=None, metavar="PATH",
                   help="u1652: University-1652's sample_drone.jpg mosaic (read in place)")
    p.add_argument("--image-topic", default=None, help="camera topic (default: the drive's, else every Image topic)")
    p.add_argument("--seed", type=int, default=0, help="random seed (noise, order of the u1652 views)")
    p.set_defaults(func=run_corrupt)


def run_corrupt(args) -> int:
    from .corrupt import parse_span, replace_frames

    if args.dst.exists():
        return _fail("corrupt-frames", f"output {args.dst} already exists; choose a new path or remove it first")
    try:
        start, end = parse_span(args.span)
        summary = replace_frames(args.src, args.dst, start, end, args.kind, seed=args.seed,
                                 source_bag=args.source_bag, u1652_mosaic=args.u1652, image_topic=args.image_topic)
    except GeolocError as exc:
        return _fail("corrupt-frames", str(exc))
    counts = ", ".join(f"{topic} {n}" for topic, n in summary["replaced"].items())
    print(f"bag written to {args.dst}: {args.kind} frames in {start:g}-{end:g} s ({counts})")
    return 0
