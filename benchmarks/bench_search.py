"""Retrieval benchmark: single-query top-5 latency and memory of the region-table search versus the paper's method.

    .venv/bin/python benchmarks/bench_search.py                 # 44,416 / 1e6 / 1e7 tiles x 64..512 bits
    .venv/bin/python benchmarks/bench_search.py --sizes 44416   # quick
    .venv/bin/python benchmarks/bench_search.py --versus-faiss [--against HEAD]   # ours vs faiss, 3 sizes, ~2 min

One thread everywhere (faiss OpenMP and BLAS). Tables are real region-table files (written, then memory-mapped).
Queries are noisy copies of table codes (20% of the bits flipped), as a camera's code is a noisy copy of its tile's.
Methods:
  ours      geoloc_node.search.TableSearch.topk: faiss knn_hamming over the memory-mapped codes
  numpy     np.bitwise_count scan + argpartition (what one writes without faiss)
  faissidx  faiss.IndexBinaryFlat (the codes copied into faiss's own index)
  paper     the released method: Hamming as a float32 dot product of +-1 vectors (no packing), BLAS gemv + argpartition

``--versus-faiss``: only ``ours`` and ``faissidx`` (and, with ``--against REV``, TableSearch.topk of git revision REV),
256 bits unless --bits says otherwise, timed query by query in turn (the order rotates), so that all of them see the
same machine load; every answer is checked against faiss's (same tiles, same distances, same order).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from geoloc_node.geodesy import LocalFrame  # noqa: E402
from geoloc_node.search import TableSearch  # noqa: E402
from geoloc_node.table import open_table, write_table  # noqa: E402

BITS = (64, 128, 256, 512)
K = 5


def timed(fn, queries, repeats):
    out = []
    for i in range(repeats):
        q = queries[i % len(queries)]
        t0 = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t0)
    a = np.array(out) * 1e3
    return float(np.median(a)), float(np.percentile(a, 99))


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def grid_latlon(n, stride_m=10.0, origin=(47.3769, 8.5417)):
    side = int(np.ceil(np.sqrt(n)))
    ticks = (np.arange(side) - side / 2) * stride_m
    east, north = (a.ravel()[:n] for a in np.meshgrid(ticks, ticks))
    lat, lon = LocalFrame(*origin).to_latlon(east, north)
    return lat, lon


def noisy_queries(codes, n, rng, flip=0.2):
    idx = rng.integers(0, len(codes), n)
    bits = np.unpackbits(codes[idx], axis=1)
    bits ^= (rng.random(bits.shape) < flip).astype(np.uint8)
    return np.packbits(bits, axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[44_416, 1_000_000, 10_000_000])
    ap.add_argument("--bits", type=int, nargs="+", default=list(BITS))
    ap.add_argument("--paper-max-gb", type=float, default=11.0,
                    help="skip the float32 baseline where its matrix would exceed this many GB")
    ap.add_argument("--workdir", default=None, help="where to write the temporary tables (default: a temp dir)")
    ap.add_argument("--versus-faiss", action="store_true", help="only our whole-table top-k against faiss's index")
    ap.add_argument("--against", metavar="REV", help="with --versus-faiss: also the search of this git revision")
    ap.add_argument("--repeats", type=int, default=0, help="with --versus-faiss: queries per method (default by size)")
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    if args.versus_faiss:
        return versus_faiss(args)
    rng = np.random.default_rng(0)
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, numpy {np.__version__}, faiss {faiss.__version__}; one thread")
    print("| tiles | bits | method | median ms | p99 ms | memory MB | vs paper (same bits) | vs paper 512 bits |")
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n in args.sizes:
            lat, lon = grid_latlon(n)
            repeats = 300 if n < 100_000 else (60 if n < 5_000_000 else 15)
            for bits in args.bits:
                codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
                queries = noisy_queries(codes, 64, rng)
                path = Path(tmp) / f"t{n}_{bits}.gltab"
                write_table(path, codes, lat, lon, bits=bits, tile_size_m=50, stride_m=10, encoder_fingerprint="bench")
                before = rss_mb()
                table = open_table(path, verify=False)
                search = TableSearch(table)
                row = {}
                row["ours"] = (*timed(lambda q, s=search: s.topk(q, K), queries, repeats), rss_mb() - before)
                block = np.asarray(table.codes[0])  # in RAM for the methods below (the copy is their cost)
                row["numpy"] = (*timed(lambda q, b=block: _numpy_topk(b, q), queries, max(5, repeats // 10)),
                                block.nbytes / 1e6)
                index = faiss.IndexBinaryFlat(bits)
                index.add(block)
                row["faissidx"] = (*timed(lambda q, ix=index: ix.search(q[None], K), queries, repeats),
                                   block.nbytes / 1e6)
                index = None
                gb = n * bits * 4 / 1e9
                if gb <= args.paper_max_gb:
                    pm = (np.unpackbits(block, axis=1).astype(np.float32) * 2 - 1)
                    pq = [(np.unpackbits(q).astype(np.float32) * 2 - 1) for q in queries]
                    row["paper"] = (*timed(lambda q, m=pm: _paper_topk(m, q), pq, max(5, repeats // 5)),
                                    pm.nbytes / 1e6)
                    pm = None
                results[(n, bits)] = row
                block = table = search = None
                path.unlink()
                for method, (med, p99, mem) in row.items():
                    same = results[(n, bits)].get("paper")
                    p512 = results.get((n, 512), {}).get("paper")
                    r_same = f"{same[0] / med:.1f}x" if same else "n/a"
                    r512 = f"{p512[0] / med:.1f}x" if p512 else "(below)"
                    print(f"| {n:,} | {bits} | {method} | {med:.3f} | {p99:.3f} | {mem:.0f} | {r_same} | {r512} |",
                          flush=True)
                if gb > args.paper_max_gb:
                    print(f"| {n:,} | {bits} | paper | skipped: {gb:.1f} GB of float32 | | | | |", flush=True)
            if (n, 512) in results and "paper" in results[(n, 512)]:
                p512 = results[(n, 512)]["paper"][0]
                for bits in args.bits:
                    med = results[(n, bits)]["ours"][0]
                    print(f"| {n:,} | {bits} | ours vs paper@512 | | | | | {p512 / med:.1f}x |")

        window_and_open(args.sizes, rng, tmp)


def window_and_open(sizes, rng, tmp):
    """Window search over 5,000 tiles of the largest table, and a 1e6-tile table's size and open time."""
    big = max(sizes)
    lat, lon = grid_latlon(big)
    codes = rng.integers(0, 256, (big, 32), dtype=np.uint8)
    path = Path(tmp) / "window.gltab"
    write_table(path, codes, lat, lon, bits=256, tile_size_m=50, stride_m=10, encoder_fingerprint="bench")
    table = open_table(path, verify=False)
    search = TableSearch(table)
    radius = float(np.sqrt(5000 * 100 / np.pi))
    cov = table.coverage()
    centres = np.stack([rng.uniform(cov["east_min"] + radius, cov["east_max"] - radius, 64),
                        rng.uniform(cov["north_min"] + radius, cov["north_max"] - radius, 64)], axis=1)
    sizes = [len(search.window(e, n_, radius)) for e, n_ in centres]
    qs = noisy_queries(codes, 64, rng)
    it = iter(range(10**9))

    def window_query(_):
        i = next(it) % 64
        return search.topk_window(qs[i], centres[i, 0], centres[i, 1], radius, K)

    med, p99 = timed(window_query, list(range(64)), 2000)
    print(f"\nwindow search, {big:,}-tile table x 256 bits, radius {radius:.0f} m "
          f"({np.mean(sizes):.0f} tiles in the window on average): median {med:.3f} ms, p99 {p99:.3f} ms")
    table = search = None

    n6 = 1_000_000
    lat, lon = grid_latlon(n6)
    path = Path(tmp) / "size.gltab"
    codes = rng.integers(0, 256, (n6, 32), dtype=np.uint8)
    write_table(path, codes, lat, lon, bits=256, tile_size_m=50, stride_m=10, encoder_fingerprint="bench")
    opens = []
    for _ in range(5):
        t0 = time.perf_counter()
        open_table(path, verify=True)
        opens.append(time.perf_counter() - t0)
    print(f"table of 1e6 tiles x 256 bits x 1 bin: {path.stat().st_size / 1e6:.1f} MB on disk, opens (with full "
          f"checksum verification, warm page cache) in median {np.median(opens) * 1e3:.0f} ms")
    print(f"peak RSS of this run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
          file=sys.stderr)


def search_at(rev: str) -> type:
    """``TableSearch`` of ``geoloc_node/search.py`` as it is at git revision ``rev``."""
    src = subprocess.run(["git", "show", f"{rev}:geoloc_node/search.py"], cwd=Path(__file__).resolve().parents[1],
                         check=True, capture_output=True, text=True).stdout
    name = f"geoloc_node._search_at_{abs(hash(rev))}"
    mod = types.ModuleType(name)
    mod.__package__ = "geoloc_node"
    sys.modules[name] = mod  # dataclasses look their module up here
    exec(compile(src, f"{rev}:geoloc_node/search.py", "exec"), mod.__dict__)
    return mod.TableSearch


def versus_faiss(args):
    """Whole-table top-k: ours, faiss.IndexBinaryFlat (and REV's), interleaved query by query; medians and ratios."""
    bits_list = args.bits if args.bits != list(BITS) else [256]
    rng = np.random.default_rng(0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, faiss {faiss.__version__}, "
          f"one thread; load average at start {os.getloadavg()[0]:.2f}")
    print("| tiles | bits | method | median ms | p99 ms | median / faissidx | paired ratio |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n in args.sizes:
            lat, lon = grid_latlon(n)
            repeats = args.repeats or (2000 if n < 100_000 else (200 if n < 5_000_000 else 60))
            for bits in bits_list:
                codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
                codes[1::97] = codes[::97][: len(codes[1::97])]  # duplicate codes: ties, whose order must match
                queries = noisy_queries(codes, 64, rng)
                queries[:8] = codes[:8]  # exact hits of a duplicated code: tied best matches
                path = Path(tmp) / f"t{n}_{bits}.gltab"
                write_table(path, codes, lat, lon, bits=bits, tile_size_m=50, stride_m=10, encoder_fingerprint="bench")
                table = open_table(path, verify=False)
                index = faiss.IndexBinaryFlat(bits)
                index.add(np.asarray(table.codes[0]))  # in the table's (cell-sorted) tile order
                methods = {"ours": lambda q, s=TableSearch(table): s.topk(q, K),
                           "faissidx": lambda q, ix=index: ix.search(q[None], K)}
                if args.against:
                    methods[f"ours@{args.against}"] = lambda q, s=search_at(args.against)(table): s.topk(q, K)
                for q in queries:  # warm up, and the same answers as faiss
                    d, i = index.search(q[None], K)
                    for name in methods.keys() - {"faissidx"}:
                        m = methods[name](q)
                        assert np.array_equal(m.indices, i[0]) and np.array_equal(m.distances, d[0]), name
                times = _interleaved(methods, queries, repeats)
                ref = np.median(times["faissidx"])
                for name, t in times.items():
                    # paired: the median over queries of (this method's time / faiss's time on the same query, run
                    # next to it), less sensitive than the ratio of medians to load that changes during the run
                    paired = np.median(np.asarray(t) / np.asarray(times["faissidx"]))
                    print(f"| {n:,} | {bits} | {name} | {np.median(t):.4f} | {np.percentile(t, 99):.4f} | "
                          f"{np.median(t) / ref:.2f}x | {paired:.2f}x |", flush=True)
                index = table = methods = None
                path.unlink()
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")


def _interleaved(methods, queries, repeats):
    """{name: milliseconds per query}: each query is run by every method in turn, starting with a different one."""
    names = list(methods)
    out = {name: [] for name in names}
    for i in range(repeats):
        q = queries[i % len(queries)]
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t0 = time.perf_counter()
            methods[name](q)
            out[name].append((time.perf_counter() - t0) * 1e3)
    return out


def _numpy_topk(block, q):
    d = np.bitwise_count(block ^ q).sum(axis=1, dtype=np.int32)
    part = np.argpartition(d, K)[:K]
    return part[np.argsort(d[part])]


def _paper_topk(pm, q):
    scores = pm @ q  # = bits - 2 * hamming
    part = np.argpartition(-scores, K)[:K]
    return part[np.argsort(-scores[part])]


if __name__ == "__main__":
    main()
