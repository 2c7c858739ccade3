"""``geoloc table-info``: validate a region table and show its header, so a table found on a vehicle explains itself."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .errors import TableError
from .table import open_table


def register(subparsers) -> None:
    p = subparsers.add_parser("table-info", help="validate a region table and show its header",
                              description=__doc__.splitlines()[0])
    p.add_argument("table", help="region table file (.gltab) or table set folder")
    p.add_argument("--fingerprint", help="refuse the table unless it was made by the aerial encoder with this sha256")
    p.add_argument("--no-verify", action="store_true", help="skip the section checksums (faster on huge tables)")
    p.add_argument("--json", action="store_true", help="print the header as JSON")
    p.set_defaults(func=run)
    q = subparsers.add_parser("table-split", help="split a region table into a table set (cells of --cell-m metres)",
                              description="Split a region table file into a table set: a folder with an index and "
                                          "one table per square cell, which the node opens like one table but maps "
                                          "only the cells near the vehicle.")
    q.add_argument("table", help="region table file (.gltab)")
    q.add_argument("out", help="table set folder to write (replaced whole if it exists)")
    q.add_argument("--cell-m", type=float, default=2000.0, help="side of a cell, metres")
    q.set_defaults(func=run_split)


def run_split(args: argparse.Namespace) -> int:
    from .table_set import split_table

    try:
        out = split_table(args.table, args.out, shard_m=args.cell_m)
        t = open_table(out, verify=False)
    except (TableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {t.n_tiles:,} tiles in {len(t.shards)} cells of {args.cell_m:g} m")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        table = open_table(args.table, expected_fingerprint=args.fingerprint, verify=not args.no_verify)
    except TableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    h = table.header
    cells = getattr(table, "shards", None)
    if args.json:
        print(json.dumps({**dataclasses.asdict(h), "coverage": table.coverage(),
                          **({"cells": cells} if cells is not None else {})}, indent=1))
        return 0
    cov = table.coverage()
    if cells is not None:
        checked = "every cell's checksums verified" if not args.no_verify else "cell checksums not verified"
        print(f"{table.path}: valid table set (format {h.format_version}): {len(cells)} cells of "
              f"{h.provenance.get('shard_m')} m, {checked}")
    else:
        print(f"{table.path}: valid region table (format {h.format_version})")
    print(f"  tiles {h.n_tiles:,}, {h.bits} bits, {h.heading_bins} heading bin(s), tile {h.tile_size_m:g} m "
          f"every {h.stride_m:g} m")
    print(f"  origin {h.origin_lat:.7f}, {h.origin_lon:.7f}; extent east {cov['east_min']:.0f}..{cov['east_max']:.0f} "
          f"m, north {cov['north_min']:.0f}..{cov['north_max']:.0f} m")
    print(f"  encoder fingerprint {h.encoder_fingerprint}")
    for key, value in sorted(h.provenance.items()):
        print(f"  {key}: {value}")
    return 0
