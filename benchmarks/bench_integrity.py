"""Integrity scenario matrix: is the fallback ever confidently wrong?

Each scenario builds (or reuses, from ``--work``) a synthetic world never used in training, its region table, and a
drive recorded as a rosbag2, then replays the bag through the same pipeline and session as ``geoloc replay`` and the
node (:func:`geoloc_node.replay.replay`) and scores the estimates inside the scenario's span:

    name               world                       drive (175 s unless said)          span scored
    nominal            700 m procedural             GPS, outage 40-160 s               the outage
    odometry_5pct      same world                   odometry 5 % too long              the outage
    cold_start_700     700 m procedural             no GPS at all, 150 s               the whole drive
    cold_start_2km     2 km procedural (77777)      no GPS at all, 180 s               the whole drive
    cold_start_osm     Helsinki OSM layout, 700 m   no GPS at all, 180 s               the whole drive
    camera_mismatch    the nominal drive (panorama) with the pinhole model and its table   the outage
    frames_<kind>      the nominal drive, frames 70-120 s replaced: noise, black, another world's, University-1652
                       drone views (../shared)                                         the outage
    kidnapped          700 m procedural             outage 40-160 s, teleported 500 m at 90 s   the outage
    old_table          the table from the world before 20 % of its buildings changed  the outage

Per scenario (the keys of ``--json``): estimates, trustworthy, hazardous (trustworthy and error > HPL or > 25 m),
availability (share of the span with a trustworthy estimate at most 1 s old), median_m / p95_m (all estimates in the
span), coverage95 (share of trustworthy errors inside their own 95 % ellipse), nees_mean (2 is ideal), and
time_to_distrust_s (from a switch: the first replaced frame or the teleport, to the first untrusted estimate), plus
time_to_restore_s, hpl_exceeded, hazard_window_s (switch scenarios: from the switch to the last hazardous estimate)
and the reasons given for "not trusted".

    python benchmarks/bench_integrity.py --quick            # 8 scenarios, under 10 minutes on 2 cores
    python benchmarks/bench_integrity.py --json             # the whole matrix, one JSON object
    python benchmarks/bench_integrity.py --calibration ...  # the same scenarios on other seeds (for tuning only)
    python benchmarks/bench_integrity.py --filter-seeds 3   # each scenario with 3 particle-filter seeds, pooled

Worlds, tables and drives are cached in ``--work`` (default runs/bench_integrity), so a second run only replays.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_worlds import HELSINKI, Work, WorldSpec, model_path  # noqa: E402

from geoloc_node.config import GeolocConfig  # noqa: E402
from geoloc_node.pipeline import load_encoder_and_table  # noqa: E402
from geoloc_node.replay import replay  # noqa: E402
from geoloc_node.report import HAZARD_ERROR_M, _availability, _errors, _stats, _Truth, integrity_metrics  # noqa: E402

U1652 = ROOT.parent / "shared" / "fixtures" / "university1652_sample" / "sample_drone.jpg"
OUTAGE = (40.0, 160.0)
FRAMES_SPAN = (70.0, 120.0)
#: World seeds: evaluation seeds are never used to tune the monitor; --calibration swaps in the tuning set.
SEEDS = {"eval": {"a": 9101, "b": 9102, "other": 9103, "2km": 77777, "osm": 5},
         "calibration": {"a": 6101, "b": 6102, "other": 6103, "2km": 66666, "osm": 6}}


@dataclass(frozen=True)
class Scenario:
    name: str
    world: str  # key of SEEDS: "a", "b", "2km", "osm"
    duration_s: float = 175.0
    gps_faults: tuple = (("outage", *OUTAGE),)
    span: tuple | None = OUTAGE  # None: the whole drive
    camera_model: str = "panorama"  # the model (and table) the replay uses
    frames: str | None = None  # replace frames in FRAMES_SPAN with this kind
    teleport: tuple | None = None  # (t_s, distance_m)
    odom_scale_error: float = 0.02
    old_table: bool = False
    switch: tuple | None = None  # (start, end) of the bad condition, seconds from the drive start
    quick: bool = False
    drive_seed: int = 1


SCENARIOS = [
    Scenario("nominal", "a", quick=True),
    Scenario("odometry_5pct", "a", odom_scale_error=0.05, drive_seed=2, quick=True),
    Scenario("cold_start_700", "b", duration_s=150.0, gps_faults=(("outage", 0.0, 150.0),), span=None, quick=True),
    Scenario("cold_start_2km", "2km", duration_s=180.0, gps_faults=(("outage", 0.0, 180.0),), span=None),
    Scenario("cold_start_osm", "osm", duration_s=180.0, gps_faults=(("outage", 0.0, 180.0),), span=None),
    Scenario("camera_mismatch", "a", camera_model="pinhole", quick=True),
    Scenario("frames_noise", "a", frames="noise", switch=FRAMES_SPAN),
    Scenario("frames_black", "a", frames="black", switch=FRAMES_SPAN, quick=True),
    Scenario("frames_other_world", "a", frames="other_world", switch=FRAMES_SPAN),
    Scenario("frames_u1652", "a", frames="u1652", switch=FRAMES_SPAN, quick=True),
    Scenario("kidnapped", "a", teleport=(90.0, 500.0), switch=(90.0, 90.0), drive_seed=3, quick=True),
    Scenario("old_table", "a", old_table=True, drive_seed=4, quick=True),
]


# -- building the inputs (cached: bench_worlds.Work) ---------------------------------------------------------------
def worlds(seeds: dict) -> dict:
    """The world of each key of SEEDS: "2km" is a 2 km procedural world, "osm" the Helsinki layout (700 m), the
    others 700 m procedural worlds."""
    return {key: WorldSpec(2000.0 if key == "2km" else 700.0, seed, HELSINKI if key == "osm" else None)
            for key, seed in seeds.items()}


def drive(work: Work, sc: Scenario, world_key: str, world=None) -> Path:
    return work.drive(world_key, duration_s=sc.duration_s, drive_seed=sc.drive_seed, gps_faults=sc.gps_faults,
                      gps_label="_gps" if sc.span is not None else "_nogps", odom_scale_error=sc.odom_scale_error,
                      teleport=sc.teleport, world=world, world_label="_aged" if world else "")


def corrupted(work: Work, bag: Path, kind: str, sc: Scenario) -> Path:
    from geoloc_node.synth.corrupt import replace_frames

    out = bag.parent / f"{bag.name}_{kind}"
    if not (out / "metadata.yaml").exists():
        shutil.rmtree(out, ignore_errors=True)
        other = None
        if kind == "other_world":
            other_sc = dataclasses.replace(sc, frames=None, drive_seed=5)
            other = drive(work, other_sc, "other")
        replace_frames(bag, out, *FRAMES_SPAN, kind, seed=1, source_bag=other,
                       u1652_mosaic=U1652 if kind == "u1652" else None)
    return out


def inputs(work: Work, sc: Scenario) -> tuple[Path, Path]:
    """(bag, table) of a scenario."""
    if sc.old_table:  # the table shows the world before 20 % of its buildings changed; the drive is in the new one
        table = work.table(sc.world, sc.camera_model)
        return drive(work, sc, sc.world, world=work.aged_world(sc.world)), table
    bag = drive(work, sc, sc.world)
    if sc.frames:
        bag = corrupted(work, bag, sc.frames, sc)
    return bag, work.table(sc.world, sc.camera_model)


# -- scoring -------------------------------------------------------------------------------------------------------
def score(sc: Scenario, res) -> dict:
    t0 = res.first_stamp
    span = (t0 + sc.span[0], t0 + sc.span[1]) if sc.span else (res.first_stamp, res.last_stamp)
    truth = _Truth(res.truth)
    integrity = integrity_metrics(res.estimates, truth, [span])
    err = [e for t, e in _errors(res.estimates, truth) if span[0] <= t < span[1]]
    stats = _stats(err)
    out = {"name": sc.name, "estimates": integrity["estimates"], "trustworthy": integrity["trustworthy"],
           "hazardous": integrity["hazardous"], "availability": _availability(res.estimates, [span]),
           "median_m": stats["median_m"], "p95_m": stats["p95_m"], "coverage95": integrity["coverage95"],
           "nees_mean": integrity["nees_mean"], "time_to_distrust_s": None, "time_to_restore_s": None,
           "hpl_exceeded": integrity["hpl_exceeded"], "hpl_median_m": integrity["hpl_median_m"],
           "trusted_median_m": integrity["trusted_error"]["median_m"],
           "trusted_max_m": integrity["trusted_error"]["max_m"], "not_trusted": integrity["not_trusted_reasons"]}
    if sc.switch:
        a, b = t0 + sc.switch[0], t0 + sc.switch[1]
        # when the last hazardous estimate came after the switch: a teleport cannot be seen before the next camera
        # frame (odometry runs on smoothly), so estimates published in between are hazardous whatever the monitor
        hazards = [s.stamp - a for s in res.estimates if s.stamp >= a and s.trustworthy and _hazardous(s, truth)]
        out["hazard_window_s"] = round(max(hazards), 2) if hazards else None
        first_bad = next((s.stamp for s in res.estimates if s.stamp >= a and not s.trustworthy), None)
        out["time_to_distrust_s"] = None if first_bad is None else round(first_bad - a, 2)
        if sc.frames:
            first_ok = next((s.stamp for s in res.estimates if s.stamp >= b and s.trustworthy), None)
            out["time_to_restore_s"] = None if first_ok is None else round(first_ok - b, 2)
    return out


def _hazardous(s, truth: _Truth) -> bool:
    p = truth.at(s.stamp)
    if p is None:
        return False
    err = math.hypot(s.east - p[0], s.north - p[1])
    return err > s.hpl_m or err > HAZARD_ERROR_M


def run(sc: Scenario, work: Work, dump: Path | None, filter_seeds: int = 1, overrides: dict | None = None) -> dict:
    """The scenario replayed once per filter seed (``tracking.seed`` 0 .. filter_seeds-1), scores pooled."""
    bag, table = inputs(work, sc)
    rows = []
    for seed in range(filter_seeds):
        config = GeolocConfig.from_flat({"table.path": str(table), "model.path": model_path(sc.camera_model),
                                         "tracking.seed": seed, **(overrides or {})})
        encoder, tab = load_encoder_and_table(config)
        out_dir = work.root / "replays" / sc.name
        shutil.rmtree(out_dir, ignore_errors=True)
        t = time.perf_counter()
        with _FrameLog() as frames:
            res = replay(bag, out_dir, config, encoder, tab, progress=False)
        encoder.close()
        rows.append(score(sc, res))
        rows[-1]["replay_s"] = round(time.perf_counter() - t, 1)
        if dump is not None:
            _dump(dump / (f"{sc.name}.csv" if filter_seeds == 1 else f"{sc.name}.seed{seed}.csv"), res, frames)
    return rows[0] if filter_seeds == 1 else pool(rows)


def pool(rows: list[dict]) -> dict:
    """One row for several filter seeds of a scenario. The particle filter is random: on these worlds one seed's
    median can be 1.4 m and another's 8.9 m on the same drive, so a single seed's figures are luck. Counts add up;
    availability, median and p95 are the means over seeds; coverage95 and NEES are weighted by the trustworthy
    estimates; times to distrust and to restore are the worst seed's (None when any seed never got there); the
    per-seed rows are kept under ``per_seed``."""
    out = dict(rows[0])
    for key in ("estimates", "trustworthy", "hazardous", "hpl_exceeded"):
        out[key] = sum(r[key] for r in rows)

    def mean(key, weight=None):
        pairs = [(r[key], 1 if weight is None else r[weight]) for r in rows if r[key] is not None]
        total = sum(w for _, w in pairs)
        return round(sum(v * w for v, w in pairs) / total, 4) if total else None

    for key in ("availability", "median_m", "p95_m", "hpl_median_m", "trusted_median_m"):
        out[key] = mean(key)
    for key in ("coverage95", "nees_mean"):
        out[key] = mean(key, "trustworthy")
    maxima = [r["trusted_max_m"] for r in rows if r["trusted_max_m"] is not None]
    out["trusted_max_m"] = max(maxima) if maxima else None
    windows = [r.get("hazard_window_s") for r in rows if r.get("hazard_window_s") is not None]
    out["hazard_window_s"] = max(windows) if windows else None
    for key in ("time_to_distrust_s", "time_to_restore_s"):
        values = [r[key] for r in rows]
        out[key] = None if any(v is None for v in values) else max(values)
    reasons: dict = {}
    for r in rows:
        for k, v in r["not_trusted"].items():
            reasons[k] = reasons.get(k, 0) + v
    out["not_trusted"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    out["replay_s"] = round(sum(r["replay_s"] for r in rows), 1)
    out["filter_seeds"] = len(rows)
    out["per_seed"] = [{k: r[k] for k in ("availability", "median_m", "p95_m", "hazardous", "coverage95", "nees_mean",
                                          "time_to_distrust_s", "time_to_restore_s")} for r in rows]
    return out


def _dump(path: Path, res, frames) -> None:
    """For tuning: every estimate (stamp, error east/north, trusted, HPL, sigma, published covariance, source,
    reason), and every frame's evidence (log Bayes factor, distinctness, whether it was used)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = _Truth(res.truth)
    with open(path, "w") as f:
        f.write("t,de,dn,trusted,hpl_m,std_m,cee,cen,cnn,source,reason\n")
        for s in res.estimates:
            p = truth.at(s.stamp)
            de, dn = (s.east - p[0], s.north - p[1]) if p is not None else (math.nan, math.nan)
            reason = s.integrity.replace(",", ";")
            f.write(f"{s.stamp - res.first_stamp:.2f},{de:.3f},{dn:.3f},{int(s.trustworthy)},{s.hpl_m:.2f},"
                    f"{s.std_m:.3f},{s.cov[0]:.4f},{s.cov[1]:.4f},{s.cov[2]:.4f},{s.source},{reason}\n")
    with open(path.with_suffix(".frames.csv"), "w") as f:
        f.write("t,log_bf,distinctness,evidence,used\n")
        for t, lbf, dist, evidence, used in frames:
            f.write(f"{t - res.first_stamp:.2f},{lbf:.3f},{dist:.3f},{evidence:.3f},{int(used)}\n")
    with open(path.with_suffix(".tracks.csv"), "w") as f:
        f.write("t,frames,length_m,margin_bits,z,best_z,alt_e,alt_n,recent_margin,recent_z,newest_z,fresh_m,"
                "fresh_margin,fresh_z,recent_best_e,recent_best_n,recent_best_z,filter_e,filter_n,hpl_m\n")
        for v, mean, hpl in frames.tracks:
            f.write(f"{v.stamp - res.first_stamp:.2f},{v.frames},{v.length_m:.1f},{v.margin_bits:.3f},{v.z:.3f},"
                    f"{v.best_z:.3f},{v.alternative_en[0]:.1f},{v.alternative_en[1]:.1f},{v.recent_margin_bits:.3f},"
                    f"{v.recent_z:.3f},{v.newest_z:.3f},{v.fresh_length_m:.1f},{v.fresh_margin_bits:.3f},"
                    f"{v.fresh_z:.3f},{v.recent_best_en[0]:.1f},{v.recent_best_en[1]:.1f},{v.recent_best_z:.3f},"
                    f"{mean[0]:.1f},{mean[1]:.1f},{hpl:.1f}\n")


class _FrameLog(list):
    """Records each frame's evidence as the integrity monitor sees it (tuning only: --dump)."""

    def __enter__(self):
        from geoloc_node.integrity import IntegrityMonitor

        self._orig = orig = IntegrityMonitor.admits, IntegrityMonitor.note_track
        self.tracks = []

        def admits(monitor, stamp, vu):
            used = orig[0](monitor, stamp, vu)
            self.append((stamp, vu.log_bayes_factor, vu.distinctness, monitor.evidence, used))
            return used

        def note_track(monitor, verdict):
            orig[1](monitor, verdict)
            if verdict is not None:  # with the filter's place and protection level the check was made against
                mean, last = monitor.last_mean, monitor.last
                self.tracks.append((verdict, (math.nan, math.nan) if mean is None else (float(mean[0]), float(mean[1])),
                                    math.nan if last is None else last.hpl_m))

        IntegrityMonitor.admits, IntegrityMonitor.note_track = admits, note_track
        return self

    def __exit__(self, *exc):
        from geoloc_node.integrity import IntegrityMonitor

        IntegrityMonitor.admits, IntegrityMonitor.note_track = self._orig


# -- main ----------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the reduced matrix (under 10 minutes on 2 cores)")
    p.add_argument("--only", nargs="+", help="only these scenarios")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench_integrity"), help="cache of worlds, tables, drives")
    p.add_argument("--calibration", action="store_true", help="the tuning seeds instead of the evaluation seeds")
    p.add_argument("--dump", help="write each scenario's estimates as CSV into this folder")
    p.add_argument("--filter-seeds", type=int, default=1,
                   help="replay each scenario with this many particle-filter seeds and pool the scores (see pool())")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter, as `geoloc replay --set` (repeatable)")
    args = p.parse_args(argv)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    seeds = SEEDS["calibration" if args.calibration else "eval"]
    work = Work(Path(args.work) / ("calibration" if args.calibration else "eval"), worlds(seeds))
    work.root.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in SCENARIOS if (not args.quick or s.quick) and (not args.only or s.name in args.only)]
    t_all = time.perf_counter()
    results = []
    for sc in chosen:
        t = time.perf_counter()
        r = run(sc, work, Path(args.dump) if args.dump else None, args.filter_seeds, overrides)
        r["total_s"] = round(time.perf_counter() - t, 1)
        results.append(r)
        if not args.json:
            print(_row(r), flush=True)
    out = {"scenarios": results, "hazardous_total": sum(r["hazardous"] for r in results),
           "hpl_exceeded_total": sum(r["hpl_exceeded"] for r in results),
           "trustworthy_total": sum(r["trustworthy"] for r in results),
           "seeds": "calibration" if args.calibration else "evaluation", "filter_seeds": args.filter_seeds,
           "overrides": overrides,
           "wall_s": round(time.perf_counter() - t_all, 1), "build_log": work.log}
    if args.json:
        print(json.dumps(out))
    else:
        total = out["trustworthy_total"]
        share = out["hpl_exceeded_total"] / total if total else 0.0
        print(f"hazardous total {out['hazardous_total']}; error > HPL {out['hpl_exceeded_total']} of {total} "
              f"trustworthy ({100 * share:.3f} %); {out['wall_s']} s")
    return 0


def _row(r: dict) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    reasons = ", ".join(f"{k} x{v}" for k, v in list(r["not_trusted"].items())[:2])
    return (f"{r['name']:<20} est {r['estimates']:>5} trusted {r['trustworthy']:>5} hazard {r['hazardous']:>3} "
            f"avail {f(r['availability'], '.3f')} med {f(r['median_m'], '.1f')} p95 {f(r['p95_m'], '.1f')} "
            f"cov95 {f(r['coverage95'], '.3f')} nees {f(r['nees_mean'], '.2f')} "
            f"distrust {f(r['time_to_distrust_s'], '.1f')} restore {f(r['time_to_restore_s'], '.1f')} "
            f"hpl {f(r['hpl_median_m'], '.1f')} ({r['total_s']} s) "
            f"| {reasons}")


if __name__ == "__main__":
    sys.exit(main())
