"""Retrieval and localisation metrics on packed codes (Hamming ranking) and on float embeddings (cosine).

Protocol (CVUSA-style): one aerial view per ground view; query = ground, gallery = all aerial views of the test set.
Where several ground views share one aerial image (University-1652's drone views of a building, VIGOR's panoramas in
one satellite image: ``place``), the gallery holds each distinct aerial image once.
Ties in Hamming distance are broken in a fixed random order (what an arbitrary-order exact search does on average):
neither counted for nor against the model.
"""

from __future__ import annotations

import time

import numpy as np

from ..codes import hamming, pack_signs


def ranks_from_scores(dist: np.ndarray, seed: int = 0, true_col: np.ndarray | None = None) -> np.ndarray:
    """Rank (0 = best) of the true match in each row of a [N, M] distance matrix (lower = closer): column
    ``true_col[i]`` of row i, the diagonal by default."""
    n = len(dist)
    rng = np.random.default_rng(seed)
    tie = rng.random(dist.shape)
    cols = np.arange(n) if true_col is None else np.asarray(true_col)
    true = dist[np.arange(n), cols][:, None]
    true_tie = tie[np.arange(n), cols][:, None]
    better = (dist < true) | ((dist == true) & (tie < true_tie))
    return better.sum(axis=1)


def hamming_matrix(qcodes: np.ndarray, gcodes: np.ndarray, chunk: int = 256) -> np.ndarray:
    out = np.empty((len(qcodes), len(gcodes)), np.int32)
    for i in range(0, len(qcodes), chunk):
        out[i:i + chunk] = hamming(qcodes[i:i + chunk, None, :], gcodes[None, :, :])
    return out


def recall_at(ranks: np.ndarray, n: int) -> dict:
    one_pct = max(1, int(round(0.01 * n)))
    return {"R@1": float(np.mean(ranks < 1)), "R@5": float(np.mean(ranks < 5)), "R@10": float(np.mean(ranks < 10)),
            "R@1%": float(np.mean(ranks < one_pct)), "top1%_k": one_pct, "median_rank": float(np.median(ranks) + 1)}


def retrieval_metrics(zg: np.ndarray, za: np.ndarray, en: np.ndarray | None = None,
                      place: np.ndarray | None = None) -> dict:
    """Hamming (codes = signs) and cosine (floats) recall, and localisation error when positions are known.

    ``place`` (optional, one id per pair): pairs with the same id share their aerial image, which then enters the
    gallery once (otherwise its identical copies would tie with the true match). Positions are those of the ground
    views, so localisation is reported only when every aerial image is one pair's own."""
    n = len(zg)
    true_col = None
    if place is not None:
        uniq, first, inverse = np.unique(np.asarray(place), return_index=True, return_inverse=True)
        if len(uniq) < n:
            za, true_col, en = za[first], inverse.ravel(), None
    m = len(za)
    cg, ca = pack_signs(zg), pack_signs(za)
    dh = hamming_matrix(cg, ca)
    out = {"pairs": n, "gallery": m, "chance_R@1": 1.0 / m, "hamming": recall_at(ranks_from_scores(dh, 0, true_col), m)}
    g = zg / np.maximum(np.linalg.norm(zg, axis=1, keepdims=True), 1e-12)
    a = za / np.maximum(np.linalg.norm(za, axis=1, keepdims=True), 1e-12)
    out["cosine"] = recall_at(ranks_from_scores(-(g @ a.T), 0, true_col), m)
    bits = cg.shape[1] * 8
    out["bit_balance"] = float(np.abs(np.unpackbits(ca, axis=1).mean(0) - 0.5).mean())
    out["mean_true_hamming"] = float(np.mean(dh[np.arange(n), np.arange(n) if true_col is None else true_col]))
    out["bits"] = bits
    if en is not None:
        out["localisation"] = localisation_errors(dh, en, en)
    return out


def cluster_estimate(pos: np.ndarray, radius_m: float = 20.0) -> np.ndarray:
    """Position estimate from top-k candidate positions [k, 2]: mean of the largest group within ``radius_m`` of one
    candidate (the best-ranked candidate wins ties)."""
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    support = (d <= radius_m).sum(axis=1)
    best = int(np.argmax(support))  # argmax returns the first (best-ranked) of equals
    return pos[d[best] <= radius_m].mean(axis=0)


def localisation_errors(dist: np.ndarray, query_en: np.ndarray, gallery_en: np.ndarray, k: int = 5,
                        within_m: float = 25.0) -> dict:
    """Top-1 and top-k cluster position error (metres) of each query, summarised."""
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    top1 = np.linalg.norm(gallery_en[order[:, 0]] - query_en, axis=1)
    clus = np.array([np.linalg.norm(cluster_estimate(gallery_en[o]) - q) for o, q in zip(order, query_en)])
    return summarise_errors(top1, clus, within_m)


def summarise_errors(top1: np.ndarray, cluster: np.ndarray | None = None, within_m: float = 25.0) -> dict:
    out = {"top1_median_m": float(np.median(top1)), "top1_mean_m": float(np.mean(top1)),
           f"top1_within_{within_m:g}m": float(np.mean(top1 <= within_m))}
    if cluster is not None:
        out.update({"top5_cluster_median_m": float(np.median(cluster)),
                    f"top5_cluster_within_{within_m:g}m": float(np.mean(cluster <= within_m))})
    return out


def table_localisation(ground_codes: np.ndarray, query_en: np.ndarray, table, k: int = 5, within_m: float = 25.0,
                       query_frame=None, query_headings=None) -> dict:
    """Search a full region table with each ground code; errors of the top-1 tile and of the top-k cluster.

    ``query_en`` is in ``query_frame`` (a LocalFrame; default: the table's own frame). A table with several heading
    bins (pinhole models) is searched in the bin of each query's compass heading (``query_headings``, known heading).
    """
    from ..search import TableSearch

    if query_frame is not None:
        lat, lon = query_frame.to_latlon(query_en[:, 0], query_en[:, 1])
        e, n = table.frame.to_en(lat, lon)
        query_en = np.stack([e, n], axis=1)
    s = TableSearch(table)
    bins = int(table.heading_bins)
    if bins > 1 and query_headings is None:
        raise ValueError("a table with heading bins needs the queries' headings")
    keys = np.zeros(len(query_en), np.int64) if bins == 1 else \
        np.round(np.asarray(query_headings) / (360.0 / bins)).astype(np.int64) % bins
    top1, clus = [], []
    for code, q, b in zip(ground_codes, query_en, keys):
        m = s.topk(code, k, int(b))
        top1.append(np.linalg.norm(m.en[0] - q))
        clus.append(np.linalg.norm(cluster_estimate(np.asarray(m.en)) - q))
    out = summarise_errors(np.array(top1), np.array(clus), within_m)
    out["tiles"] = int(table.n_tiles)
    out["queries"] = len(query_en)
    return out


def throughput(fn, x: np.ndarray, repeat: int = 3) -> float:
    """Images per second of ``fn`` on batch ``x`` (best of ``repeat``)."""
    fn(x[:1])
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def markdown_table(metrics: dict) -> str:
    """A short markdown report of :func:`retrieval_metrics` (plus any extras)."""
    h, c = metrics["hamming"], metrics["cosine"]
    lines = [f"# Evaluation: {metrics.get('name', '')}", "",
             f"{metrics['pairs']} test pairs (chance R@1 {metrics['chance_R@1']:.4f}), {metrics['bits']} bits", "",
             "| ranking | R@1 | R@5 | R@10 | R@1% |", "|---|---|---|---|---|",
             f"| Hamming (codes) | {h['R@1']:.3f} | {h['R@5']:.3f} | {h['R@10']:.3f} | {h['R@1%']:.3f} |",
             f"| cosine (float) | {c['R@1']:.3f} | {c['R@5']:.3f} | {c['R@10']:.3f} | {c['R@1%']:.3f} |", ""]
    for key in ("localisation", "table_localisation"):
        if key in metrics:
            lines += [f"**{key}**: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in metrics[key].items()), ""]
    for key in ("codes_per_s", "model_bytes", "backend"):
        if key in metrics:
            lines.append(f"- {key}: {metrics[key]}")
    return "\n".join(lines) + "\n"
