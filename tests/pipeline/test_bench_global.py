"""benchmarks/bench_global.py's scoring on constructed estimate sequences (no world is built)."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from geoloc_node.replay import EstimateRow, Position

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import bench_global as bg
    import bench_integrity as bi
    from bench_worlds import Work
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def rows(errors, dt=0.1, trusted=None):
    return [(i * dt, e, bool(trusted and trusted(i * dt))) for i, e in enumerate(errors)]


def test_converged_is_the_start_of_the_final_run_below_10_m():
    # 20 s at 50 m, 10 s at 5 m, a 1-sample excursion to 12 m, then 60 s at 3 m: converged after the excursion
    seq = rows([50.0] * 200 + [5.0] * 100 + [12.0] + [3.0] * 600)
    assert bg.converged_at(seq) == pytest.approx(30.1)
    # untrusted estimates count as much as trusted ones: the trusted flag does not move it
    assert bg.converged_at(rows([50.0] * 200 + [3.0] * 600, trusted=lambda t: t > 70.0)) == pytest.approx(20.0)
    # exactly 10 m is not below 10 m
    assert bg.converged_at(rows([3.0] * 300 + [10.0])) is None


def test_never_converged_cases():
    assert bg.converged_at([]) is None
    assert bg.converged_at(rows([50.0] * 100)) is None
    # a run below 10 m that starts 5 s before the end shows nothing about staying (MIN_HOLD_S = 10 s)
    assert bg.converged_at(rows([50.0] * 1000 + [3.0] * 50)) is None
    # the same run counts once it lasts 10 s
    assert bg.converged_at(rows([50.0] * 1000 + [3.0] * 101)) == pytest.approx(100.0)
    # estimates stop 5 s before the drive's end: the error there is unknown, so not "staying"
    assert bg.converged_at(rows([3.0] * 600), end=64.9) is None
    assert bg.converged_at(rows([3.0] * 600), end=60.5) == 0.0


def test_a_gap_without_estimates_restarts_the_run():
    seq = [(t / 10, 2.0, True) for t in range(0, 300)] + [(t / 10, 2.0, True) for t in range(350, 900)]
    assert bg.converged_at(seq) == pytest.approx(35.0)


def test_first_trusted():
    assert bg.first_trusted(rows([50.0] * 100, trusted=lambda t: t >= 4.0)) == pytest.approx(4.0)
    assert bg.first_trusted(rows([50.0] * 100)) is None


def _est(t, east, trusted, hpl=15.0):
    return EstimateRow(t, east, 0.0, 2.0, "visual", trusted, True, (4.0, 0.0, 4.0), hpl,
                       "ok" if trusted else "protection level")


def _replay(errors_at, trusted_from, t_end=100.0, t0=1000.0):
    """A fake replay: the vehicle drives east at 10 m/s; each estimate is off by errors_at(t) metres to the east."""
    truth = [Position(t0 + i * 0.1, i * 1.0, 0.0) for i in range(int(t_end * 10) + 1)]
    est = [_est(t0 + i * 0.1, i * 1.0 + errors_at(i * 0.1), i * 0.1 >= trusted_from)
           for i in range(int(t_end * 10) + 1)]
    return SimpleNamespace(first_stamp=t0, last_stamp=t0 + t_end, truth=truth, estimates=est)


def test_score_drive_and_summary():
    good = _replay(lambda t: 500.0 if t < 30.0 else 2.0, trusted_from=40.0)
    late = _replay(lambda t: 500.0 if t < 75.0 else 4.0, trusted_from=80.0)
    never = _replay(lambda t: 500.0, trusted_from=1e9)
    hazard = _replay(lambda t: 30.0, trusted_from=50.0)  # trusted 30 m off: hazardous (> 25 m) every estimate
    rows_ = [bg.score_drive(r) for r in (good, late, never, hazard)]
    a, b, c, d = rows_
    assert a["converged_within_s"] == pytest.approx(30.0) and a["first_trusted_s"] == pytest.approx(40.0)
    assert a["converged_after_m"] == pytest.approx(300.0)  # 30 s at 10 m/s
    assert a["median_m_after"] == pytest.approx(2.0) and a["hazardous"] == 0
    assert a["availability_after"] == pytest.approx(0.86, abs=0.02)  # trusted from 40 s of the 30-100 s
    assert b["converged_within_s"] == pytest.approx(75.0)
    assert c["converged_within_s"] is None and c["first_trusted_s"] is None and c["median_m_after"] is None
    assert d["converged_within_s"] is None and d["hazardous"] == 501  # t = 50.0 .. 100.0 s
    assert d["hazard_span_s"] == [pytest.approx(50.0), pytest.approx(100.0)] and a["hazard_span_s"] is None
    out = bg.summarise(rows_, within_s=60.0)
    assert out["drives"] == 4 and out["converged"] == 1 and out["converged_any"] == 2
    assert out["converged_within_s"] == [pytest.approx(30.0), pytest.approx(75.0), None, None]
    assert out["median_m_after"] == pytest.approx(2.0)  # 701 estimates at 2 m, 251 at 4 m
    assert out["p95_m_after"] == pytest.approx(4.0)
    assert out["hazardous"] == 501
    # after the 60 s deadline, every drive: good 2 m, late 500 then 4 m, never 500 m, hazard 30 m
    assert out["median_m_late"] == pytest.approx(30.0)
    json_keys = {"drives", "converged", "converged_within_s", "median_m_after", "p95_m_after", "hazardous"}
    assert json_keys <= out.keys()
    # the text mode's line for a drive that never converged says so instead of failing on None
    assert "converged - s" in bg._line({**c, "drive_seed": 3, "total_s": 1.0})
    assert "converged 30.0 s (300 m driven)" in bg._line({**a, "drive_seed": 1, "total_s": 1.0})


def test_kidnapped_drive_counts_from_the_teleport():
    # converged at 10 s, teleported at 50 s (error 1000 m), recovered at 90 s: 40 s after the teleport
    res = _replay(lambda t: 1000.0 if 50.0 <= t < 90.0 else 3.0, trusted_from=0.0)
    row = bg.score_drive(res, start_s=50.0)
    assert row["converged_within_s"] == pytest.approx(40.0)
    assert row["first_trusted_s"] == 0.0
    assert row["hazardous"] == 400  # trusted through the whole jump: every estimate 50.0-89.9 s


def test_truth_is_not_interpolated_across_a_teleport():
    # truth at 5 Hz; the vehicle jumps 1000 m east at 50.0 s; estimates at 10 Hz sit exactly on the truth
    t0 = 1000.0
    truth = [Position(t0 + i * 0.2, i * 0.2 + (1000.0 if i * 0.2 >= 50.0 else 0.0), 0.0) for i in range(501)]
    est = [_est(t0 + i * 0.1, i * 0.1 + (1000.0 if i * 0.1 >= 50.0 else 0.0), True) for i in range(1001)]
    res = SimpleNamespace(first_stamp=t0, last_stamp=t0 + 100.0, truth=truth, estimates=est)
    # interpolated across the jump, the estimate at 49.9 s would look 500 m off: a hazard that did not happen
    row = bg.score_drive(res)
    assert row["hazardous"] == 0 and row["estimates"] == 1000  # only the one at 49.9 s is left out
    assert row["converged_within_s"] == 0.0


def test_world_seeds_are_unseen_and_the_2km_world_is_bench_integritys():
    training = set(range(1, 9)) | {98, 99}
    tuning = {6101, 6102, 6103, 66666}
    for size in (700.0, 1000.0, 2000.0, 3000.0, 5000.0):
        assert bg.world_seed(size) not in training | tuning
    assert len({bg.world_seed(s) for s in (700.0, 1000.0, 2000.0, 5000.0)}) == 4
    args = SimpleNamespace(osm=None, world_size=None, world_seed=None)
    key, spec = bg.world_spec(args)
    assert (key, spec.size_m, spec.seed) == ("2km", 2000.0, bi.SEEDS["eval"]["2km"])
    assert bi.worlds(bi.SEEDS["eval"])["2km"] == spec


def test_drive_cache_names_are_shared_with_bench_integrity(tmp_path):
    # bench_global's drive seed 1 on the 2 km world is bench_integrity's cold_start_2km drive: same cache entry
    work = Work(tmp_path, bi.worlds(bi.SEEDS["eval"]))
    name = "drive_2km_77777_180s_seed1_odo0.02_nogps"
    (tmp_path / name).mkdir()
    (tmp_path / name / "metadata.yaml").write_text("cached\n")  # present: nothing is built
    sc = next(s for s in bi.SCENARIOS if s.name == "cold_start_2km")
    assert bi.drive(work, sc, "2km") == tmp_path / name
    assert work.drive("2km", duration_s=180.0, drive_seed=1, gps_faults=[("outage", 0.0, 180.0)],
                      gps_label="_nogps") == tmp_path / name
