"""Metrics of a replay against ground truth, and the report: ``report.json`` plus ``report.png``.

Definitions (all in message time, metres in the table's local frame):

* **evaluation spans**: the injected ``--gps-outage`` spans; else the outages scripted into a synthetic drive (its
  ``geoloc_drive.json`` sidecar); else the spans where the health monitor was not HEALTHY after it had first been
  HEALTHY (the fallback was active).
* **error**: distance from an estimate to the ground truth interpolated at its stamp (a ground-truth topic, else the
  GPS fixes the monitor trusted plus the fixes dropped by ``--gps-outage``); no truth within 1 s: not scored.
* **availability**: share of a 10 Hz grid over the spans where a trustworthy estimate at most 1 s old exists.
* **time to first visual fix**: from the span start to the first estimate made with a camera frame.
* **end of outage**: errors in the last 10 s of each span, for the filter and for odometry alone (the same filter fed
  GPS and odometry but no camera): ``p95_ratio`` = odometry alone / filter.
* **single frame**: the paper's estimate (mean of the global top-5 tiles) for each processed frame.
* **health confusion**: on a 10 Hz grid over the bag, "GPS bad" against "monitor not HEALTHY". GPS bad = inside an
  injected outage or a scripted fault of a synthetic drive when the bag has them; otherwise inside a gap of over 1 s
  between fixes, or the fix more than ``BAD_FIX_M`` from the ground truth. False LOST = transitions to LOST while GPS
  was good (and had been for 2 s), per hour of good GPS; detection delay per bad episode (per scripted fault, with its
  kind, when known).
"""

from __future__ import annotations

import bisect
import json
import math
from pathlib import Path

import numpy as np

BAD_FIX_M = 15.0


def _stats(err) -> dict:
    a = np.asarray(err, dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "median_m": None, "p95_m": None, "max_m": None, "mean_m": None}
    return {"n": int(a.size), "median_m": round(float(np.median(a)), 3), "p95_m": round(float(np.percentile(a, 95)), 3),
            "max_m": round(float(a.max()), 3), "mean_m": round(float(a.mean()), 3)}


#: Faster than this (m/s) between two ground-truth samples is a jump no vehicle drives (a teleported vehicle in a
#: benchmark, a ground truth re-initialised in a bag): where the vehicle was between them is unknown.
TRUTH_JUMP_MPS = 100.0


class _Truth:
    def __init__(self, samples):
        s = sorted(samples)
        self.t = [x.stamp for x in s]
        self.e = np.array([x.east for x in s])
        self.n = np.array([x.north for x in s])

    def at(self, stamp: float, max_gap: float = 1.0):
        t = self.t
        if not t:
            return None
        i = bisect.bisect_left(t, stamp)
        if i < len(t) and t[i] == stamp:
            return self.e[i], self.n[i]
        if i == 0 or i == len(t):
            j = 0 if i == 0 else len(t) - 1
            return (self.e[j], self.n[j]) if abs(t[j] - stamp) <= 0.2 else None
        t0, t1 = t[i - 1], t[i]
        if t1 - t0 > max_gap * 2 and min(stamp - t0, t1 - stamp) > max_gap:
            return None
        if math.hypot(self.e[i] - self.e[i - 1], self.n[i] - self.n[i - 1]) > TRUTH_JUMP_MPS * (t1 - t0):
            return None  # across a jump: interpolating would put the truth half-way, where the vehicle never was
        w = (stamp - t0) / (t1 - t0)
        return self.e[i - 1] + w * (self.e[i] - self.e[i - 1]), self.n[i - 1] + w * (self.n[i] - self.n[i - 1])


def _errors(samples, truth: _Truth):
    out = []
    for s in samples:
        p = truth.at(s.stamp)
        if p is not None:
            out.append((s.stamp, math.hypot(s.east - p[0], s.north - p[1])))
    return out


def fallback_spans(res) -> list:
    spans, start, seen_healthy = [], None, False
    for stamp, state, _ in res.health:
        if state == "HEALTHY":
            if start is not None:
                spans.append((start, stamp))
            start, seen_healthy = None, True
        elif seen_healthy and start is None:
            start = stamp
    if start is not None and res.last_stamp is not None:
        spans.append((start, res.last_stamp))
    return spans


def _inside(t, spans) -> bool:
    return any(a <= t < b for a, b in spans)


def compute_metrics(res) -> dict:
    t0 = res.first_stamp or 0.0
    duration = (res.last_stamp - res.first_stamp) if res.first_stamp is not None else 0.0
    fb = fallback_spans(res)
    scripted = getattr(res, "scripted_faults", [])
    spans = list(res.outages) or [(a, b) for k, a, b in scripted if k == "outage"] or fb
    if res.first_stamp is not None:  # an outage given past the bag's end (--gps-outage 0:1000) ends with the bag
        spans = [(max(a, res.first_stamp), min(b, res.last_stamp)) for a, b in spans
                 if min(b, res.last_stamp) > max(a, res.first_stamp)]
    truth = _Truth(res.truth)
    m = {
        "bag": res.bag, "mode": res.mode, "interrupted": res.interrupted, "recovery": res.recovery,
        "topics": {k: getattr(res.topics, k) for k in ("camera", "gps", "odom", "truth")},
        "ignored_topics": res.topics.ignored,
        "truth_source": "topic" if res.topics.truth else ("trusted and dropped GPS fixes" if res.truth else None),
        "duration_s": round(duration, 3), "wall_s": round(res.wall_s, 3),
        "realtime_factor": round(duration / res.wall_s, 2) if res.wall_s > 0 else None,
        "evaluation_spans_s": [[round(a - t0, 3), round(b - t0, 3)] for a, b in spans],
        "fallback_spans_s": [[round(a - t0, 3), round(b - t0, 3)] for a, b in fb],
        "counts": {**res.counts, **res.status.get("counts", {})},
        "latency_ms": res.status.get("latency", {}),
        "backend": res.status.get("backend"),
        "warnings": list(res.warnings),
    }
    est_err = _errors(res.estimates, truth)
    inside = [e for t, e in est_err if _inside(t, spans)]
    sf = [e for t, e in _errors(res.single_frame, truth) if _inside(t, spans)]
    od_err = _errors(res.odometry_only, truth)
    od = [e for t, e in od_err if _inside(t, spans)]
    end_f = [e for t, e in est_err if any(max(a, b - 10.0) <= t < b for a, b in spans)]
    end_o = [e for t, e in od_err if any(max(a, b - 10.0) <= t < b for a, b in spans)]
    ends = {"filter": _stats(end_f), "odometry_only": _stats(end_o)}
    if end_f and end_o:
        ends["p95_ratio"] = round(float(np.percentile(end_o, 95) / max(np.percentile(end_f, 95), 1e-9)), 2)
    ttff = []
    for a, b in spans:
        first = next((s.stamp for s in res.estimates if a <= s.stamp < b and s.source == "visual"), None)
        ttff.append(None if first is None else round(first - a, 3))
    m["inside_outage"] = {
        "filter": _stats(inside), "single_frame": _stats(sf), "odometry_only": _stats(od),
        "availability": _availability(res.estimates, spans),
        "time_to_first_visual_s": ttff, "end_of_outage": ends,
    }
    m["integrity"] = integrity_metrics(res.estimates, truth, spans)
    m["health"] = _health_metrics(res, truth, list(res.outages), scripted)
    return m


#: chi-square quantile of 2 degrees of freedom at 0.95: the 95 % ellipse is e' C^-1 e <= this
CHI2_2DOF_95 = 5.991
#: an error above this (m) is hazardous when the estimate was published as trustworthy, whatever its HPL said
HAZARD_ERROR_M = 25.0


def integrity_metrics(estimates, truth, spans) -> dict:
    """How honest the trustworthy flag, the protection level and the covariance were inside ``spans``.

    * ``hazardous``: trustworthy estimates with an error above their HPL or above ``HAZARD_ERROR_M``;
    * ``hpl_exceeded``: trustworthy estimates with an error above their HPL;
    * ``coverage95``: share of trustworthy estimates whose error lies inside their own 95 % covariance ellipse
      (ideal 0.95); ``nees_mean``: mean normalised estimation error squared e' C^-1 e (ideal 2 for 2 dof);
    * ``not_trusted_reasons``: how many untrustworthy estimates gave each reason (its text up to the first number).
    """
    rows, reasons = [], {}
    for s in estimates:
        if not _inside(s.stamp, spans):
            continue
        p = truth.at(s.stamp)
        if p is None:
            continue
        e = np.array([s.east - p[0], s.north - p[1]])
        err = float(np.hypot(*e))
        cee, cen, cnn = s.cov
        det = cee * cnn - cen * cen
        nees = float((cnn * e[0] ** 2 - 2 * cen * e[0] * e[1] + cee * e[1] ** 2) / det) if det > 0 else math.inf
        rows.append((s.trustworthy, err, s.hpl_m, nees))
        if not s.trustworthy:
            key = _reason_key(s.integrity)
            reasons[key] = reasons.get(key, 0) + 1
    trusted = [r for r in rows if r[0]]
    t_err = np.array([r[1] for r in trusted]) if trusted else np.zeros(0)
    t_hpl = np.array([r[2] for r in trusted]) if trusted else np.zeros(0)
    nees = np.array([r[3] for r in trusted]) if trusted else np.zeros(0)
    return {
        "estimates": len(rows), "trustworthy": len(trusted),
        "hazardous": int(np.sum((t_err > t_hpl) | (t_err > HAZARD_ERROR_M))),
        "hpl_exceeded": int(np.sum(t_err > t_hpl)),
        "coverage95": round(float(np.mean(nees <= CHI2_2DOF_95)), 4) if trusted else None,
        "nees_mean": round(float(np.mean(nees)), 3) if trusted else None,
        "hpl_median_m": round(float(np.median(t_hpl)), 2) if trusted else None,
        "trusted_error": _stats(t_err),
        "not_trusted_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
    }


def _reason_key(text: str) -> str:
    """A reason without its numbers, to count reasons of one kind together."""
    import re

    return re.split(r"[0-9(]", text or "none", maxsplit=1)[0].strip(" :;,") or "none"


def _availability(estimates, spans) -> float | None:
    if not spans:
        return None
    st = [s.stamp for s in estimates if s.trustworthy]
    hits = total = 0
    for a, b in spans:
        for t in np.arange(a, b, 0.1):
            i = bisect.bisect_right(st, t)
            total += 1
            hits += i > 0 and t - st[i - 1] <= 1.0
    return round(hits / total, 4) if total else None


def _health_metrics(res, truth: _Truth, injected, scripted=()) -> dict:
    out = {"transitions": [{"t_s": round(s - (res.first_stamp or 0.0), 3), "state": st, "reason": r}
                           for s, st, r in res.health],
           "final": res.status.get("health", {})}
    if res.first_stamp is None or not res.gps:
        return out
    t0 = res.first_stamp
    fixes = sorted((g for g in res.gps if not g.dropped), key=lambda g: g.stamp)
    ft = [g.stamp for g in fixes]
    hs = [(s, st) for s, st, _ in res.health]
    first_healthy = next((s for s, st in hs if st == "HEALTHY"), None)
    if first_healthy is None:
        out["note"] = "GPS never became HEALTHY"
        return out
    known = list(injected) + [(a, b) for _, a, b in scripted]
    out["labels"] = "scripted faults and injected outages" if scripted else "gaps, injected outages, truth distance"
    grid = np.arange(first_healthy, res.last_stamp, 0.1)
    tp = fp = fn = tn = 0
    bad_flags, flagged_at = [], []
    hi = 0
    state = "HEALTHY"
    for t in grid:
        while hi < len(hs) and hs[hi][0] <= t:
            state = hs[hi][1]
            hi += 1
        if scripted:
            bad = _inside(t, known)
        else:
            i = bisect.bisect_right(ft, t)
            nxt = ft[i] if i < len(ft) else math.inf
            bad = _inside(t, known) or i == 0 or nxt - ft[i - 1] > 1.0  # inside a gap of fixes longer than 1 s
            if not bad and truth.t and res.topics.truth:
                p = truth.at(ft[i - 1])
                g = fixes[i - 1]
                bad = p is not None and math.hypot(g.east - p[0], g.north - p[1]) > BAD_FIX_M
        flagged = state != "HEALTHY"
        bad_flags.append(bad)
        flagged_at.append(flagged)
        tp += bad and flagged
        fp += (not bad) and flagged
        fn += bad and not flagged
        tn += (not bad) and not flagged
    out["confusion_s"] = {"bad_flagged": round(tp * 0.1, 1), "good_flagged": round(fp * 0.1, 1),
                          "bad_missed": round(fn * 0.1, 1), "good_ok": round(tn * 0.1, 1)}
    # false LOST: transitions to LOST while GPS was good for the previous 2 s
    false_lost = 0
    for s, st in hs:
        if st != "LOST" or s < first_healthy + 1e-9:
            continue
        k = int((s - first_healthy) / 0.1)
        window = bad_flags[max(0, k - 20): k + 2]  # +2: the grid point at or just after the transition
        if window and not any(window):
            false_lost += 1
    good_h = (tn + fp) * 0.1 / 3600.0
    out["false_lost"] = false_lost
    out["false_lost_per_hour"] = round(false_lost / good_h, 2) if good_h > 0 else None
    out["good_gps_hours"] = round(good_h, 4)

    out["detection_delay_s"] = _detection_delays(hs, t0, first_healthy, scripted, injected, grid, bad_flags)
    return out


def _detection_delays(hs, t0, first_healthy, scripted, injected, grid, bad_flags) -> list:
    """Per bad-GPS episode (scripted, injected, or from the labels): seconds until the monitor left HEALTHY."""

    def delay(start):
        """Seconds from ``start`` to the monitor leaving HEALTHY (0 if it already had), None if it never did."""
        st_at = "HEALTHY"
        for s, st in hs:
            if s <= start:
                st_at = st
        if st_at != "HEALTHY":
            return 0.0
        det = next((s for s, st in hs if st != "HEALTHY" and s > start), None)
        return None if det is None else round(det - start, 2)

    if scripted or injected:
        return [{"kind": k, "start_s": round(a - t0, 2), "delay_s": delay(a)}
                for k, a, b in list(scripted) + [("injected outage", a, b) for a, b in injected] if a >= first_healthy]
    delays, k = [], 0
    while k < len(bad_flags):
        if bad_flags[k]:
            delays.append({"kind": "bad GPS", "start_s": round(grid[k] - t0, 2), "delay_s": delay(grid[k])})
            while k < len(bad_flags) and bad_flags[k]:
                k += 1
        k += 1
    return delays


def summary_text(res, m) -> str:
    lines = [f"bag {res.bag}: {m['duration_s']:.1f} s of messages in {m['wall_s']:.1f} s "
             f"({m['realtime_factor']}x real time), mode {res.mode}"]
    t = m["topics"]
    lines.append(f"topics: camera {t['camera']}, gps {t['gps']}, odometry {t['odom']}, truth {t['truth']}")
    io = m.get("inside_outage", {})
    if m["evaluation_spans_s"] and io.get("filter", {}).get("n"):
        lines.append(f"{'inside the outage':<24}{'median m':>10}{'p95 m':>10}{'max m':>10}")
        for name, key in (("filter (this)", "filter"), ("single frame (paper)", "single_frame"),
                          ("odometry alone", "odometry_only")):
            s = io[key]
            if s["n"]:
                lines.append(f"{name:<24}{s['median_m']:>10.1f}{s['p95_m']:>10.1f}{s['max_m']:>10.1f}")
        lines.append(f"availability {io['availability']}, end-of-outage p95 ratio (odometry/filter) "
                     f"{io['end_of_outage'].get('p95_ratio')}")
        g = m.get("integrity", {})
        lines.append(f"integrity: {g.get('trustworthy')} of {g.get('estimates')} estimates trustworthy, "
                     f"{g.get('hazardous')} hazardous (error above its protection level or 25 m), 95 % ellipse "
                     f"coverage {g.get('coverage95')}, NEES {g.get('nees_mean')}")
    elif res.topics.camera is None:
        lines.append("no camera in this bag: only the GPS health monitor ran (no position to score)")
    h = m.get("health", {})
    lines.append(f"GPS health: {len(h.get('transitions', []))} transitions, final {h.get('final', {}).get('state')}"
                 f" ({h.get('final', {}).get('reason')})")
    c = m["counts"]
    lines.append(f"frames: processed {c.get('frames_processed', 0)}, dropped {c.get('frames_dropped', 0)}, "
                 f"rejected {c.get('frames_rejected', 0)}; bad stamps: duplicate {c.get('duplicate_stamps', 0)}, "
                 f"out of order {c.get('out_of_order_stamps', 0)}, resets {c.get('time_resets', 0)}")
    return "\n".join(lines)


def write_report(res, metrics: dict, out_dir, aerial=None, table=None) -> dict:
    """Write report.json and report.png into ``out_dir``; a plotting failure never loses the JSON."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json"}
    tmp = out_dir / ".report.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1, default=_default))
    tmp.replace(paths["json"])
    try:
        paths["png"] = _plot(res, metrics, out_dir / "report.png", aerial, table)
    except Exception as exc:  # noqa: BLE001 - the plot is a convenience; the numbers are in the JSON
        metrics.setdefault("warnings", []).append(f"plot not written: {exc}")
        paths["json"].write_text(json.dumps(metrics, indent=1, default=_default))
    return paths


def _default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def _plot(res, m, path: Path, aerial, table):
    """Three panels: the trajectory over the aerial image; the error over time with the outage and the GPS health;
    the error against the published 95 % radius and the protection level (trustworthy estimates)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = res.first_stamp or 0.0
    spans = [(a, b) for a, b in zip(*[iter([x for s in m["evaluation_spans_s"] for x in s])] * 2)]
    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(21, 7), gridspec_kw={"width_ratios": [1.1, 1, 1]})
    if aerial and table is not None:
        _draw_aerial(ax, aerial, table)
    _plot_trajectory(ax, res, spans, t0)
    truth = _Truth(res.truth)
    if res.topics.camera is None:
        ax2.text(0.5, 0.5, "no camera in this bag:\nonly the GPS health monitor ran", ha="center", va="center",
                 transform=ax2.transAxes)
    for data, style, label in ((res.estimates, "-", "filter"), (res.single_frame, ".", "single frame (paper)"),
                               (res.odometry_only, "--", "odometry alone")):
        e = _errors(data, truth)
        if e:
            a = np.array(e)
            ax2.plot(a[:, 0] - t0, a[:, 1], style, ms=2, lw=1, label=label)
    for k, (a, b) in enumerate(spans):
        ax2.axvspan(a, b, color="orange", alpha=0.15, label="evaluated span (GPS outage)" if k == 0 else None)
    shown = set()
    for s_, st, _ in res.health:
        ax2.axvline(s_ - t0, color={"HEALTHY": "g", "DEGRADED": "y", "LOST": "r"}.get(st, "k"), lw=0.8, alpha=0.7,
                    label=None if st in shown else f"GPS health -> {st}")
        shown.add(st)
    errs = [e for _, e in _errors(res.estimates, truth)]
    top = max(25.0, float(np.percentile(errs, 99)) * 1.1) if errs else 25.0
    ax2.set_ylim(0, top)  # linear: the interesting errors are metres, not decades
    ax2.set_xlabel("time from bag start (s)")
    ax2.set_ylabel("error (m)")
    io = m.get("inside_outage", {}).get("filter", {})
    ax2.set_title("error" + (f"; inside the span median {io['median_m']} m, p95 {io['p95_m']} m" if io.get("n")
                             else ": no position estimate to score"), fontsize=9)
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7, loc="upper left")
    _plot_uncertainty(ax3, res, truth, t0, top)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_trajectory(ax, res, spans, t0) -> None:
    tr = np.array(sorted(res.truth)) if res.truth else np.zeros((0, 3))
    if len(tr):
        ins = np.array([_inside(t - t0, spans) for t in tr[:, 0]])
        if ins.any():
            ax.plot(np.where(ins, tr[:, 1], np.nan), np.where(ins, tr[:, 2], np.nan), "-", color="orange", lw=5,
                    alpha=0.35, label="truth inside the span", zorder=1)
        ax.plot(tr[:, 1], tr[:, 2], "-", color="k", lw=1.0, label="truth", zorder=2)
    g = np.array([(x.east, x.north, x.trusted, x.dropped) for x in res.gps]) if res.gps else np.zeros((0, 4))
    if len(g):
        ax.plot(g[g[:, 3] == 0, 0], g[g[:, 3] == 0, 1], ".", ms=2, color="tab:blue", alpha=0.5, label="GPS", zorder=3)
    od = np.array([(x.stamp, x.east, x.north) for x in res.odometry_only]) if res.odometry_only else np.zeros((0, 3))
    if len(od):
        ins = np.array([_inside(t - t0, spans) for t in od[:, 0]])
        ax.plot(np.where(ins, od[:, 1], np.nan), np.where(ins, od[:, 2], np.nan), "--", color="tab:red", lw=1,
                label="odometry alone", zorder=3)
    for trusted, col, name in ((True, "tab:green", "trustworthy"), (False, "tab:purple", "not trustworthy")):
        e = np.array([(x.east, x.north) for x in res.estimates if x.fallback_active and x.trustworthy == trusted])
        if len(e):  # drawn above the truth and the outage band
            ax.plot(e[:, 0], e[:, 1], ".", ms=2.5, color=col, label=f"estimate, fallback, {name}", zorder=5)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=7, markerscale=4)
    ax.set_title("trajectory (local ENU of the region table)")


def _plot_uncertainty(ax, res, truth, t0, top) -> None:
    """The error against the uncertainty published with it: the 95 % radius of the covariance (2.45 sigma) and the
    protection level. A trustworthy estimate above its protection level is hazardous (red)."""
    rows = []
    for s in res.estimates:
        p = truth.at(s.stamp)
        if p is not None and s.fallback_active:
            rows.append((s.stamp - t0, math.hypot(s.east - p[0], s.north - p[1]), 2.45 * s.std_m, s.hpl_m,
                         s.trustworthy))
    if not rows:
        ax.text(0.5, 0.5, "no fallback estimate with ground truth", ha="center", va="center", transform=ax.transAxes)
        return
    a = np.array(rows, dtype=np.float64)
    gaps = np.flatnonzero(np.diff(a[:, 0]) > 1.0)  # no line across the time GPS was healthy
    a = np.insert(a, gaps + 1, np.nan, axis=0)
    trusted = a[:, 4] > 0
    ax.plot(a[:, 0], a[:, 1], "-", color="k", lw=1, label="actual error")
    ax.plot(a[:, 0], a[:, 2], "-", color="tab:blue", lw=1, label="predicted 95 % radius (2.45 sigma)")
    ax.plot(a[:, 0], np.where(trusted, a[:, 3], np.nan), "-", color="tab:green", lw=1.2,
            label="protection level (trustworthy)")
    bad = trusted & ((a[:, 1] > a[:, 3]) | (a[:, 1] > HAZARD_ERROR_M))
    if bad.any():
        ax.plot(a[bad, 0], a[bad, 1], "x", color="red", label="hazardous (trustworthy, error above its HPL)")
    ax.set_ylim(0, top)
    ax.set_xlabel("time from bag start (s)")
    ax.set_ylabel("metres")
    ax.set_title("error against the uncertainty published with it (fallback estimates)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def _draw_aerial(ax, aerial, table):
    import rasterio
    from pyproj import Transformer

    with rasterio.open(aerial) as src:
        step = max(1, max(src.width, src.height) // 1500)
        img = src.read(out_shape=(src.count, src.height // step, src.width // step))
        b = src.bounds
        tf = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
        lon, lat = tf.transform([b.left, b.right], [b.bottom, b.top])
    e, n = table.frame.to_en(np.array(lat), np.array(lon))
    img = np.moveaxis(img[:3], 0, -1) if img.shape[0] >= 3 else img[0]
    ax.imshow(img, extent=(e[0], e[1], n[0], n[1]), origin="upper", alpha=0.8)
