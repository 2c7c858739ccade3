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
    p.add_argument("table", help="region table file (.gltab)")
    p.add_argument("--fingerprint", help="refuse the table unless it was made by the aerial encoder with this sha256")
    p.add_argument("--no-verify", action="store_true", help="skip the section checksums (faster on huge tables)")
    p.add_argument("--json", action="store_true", help="print the header as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        table = open_table(args.table, expected_fingerprint=args.fingerprint, verify=not args.no_verify)
    except TableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    h = table.header
    if args.json:
        print(json.dumps({**dataclasses.asdict(h), "coverage": table.coverage()}, indent=1))
        return 0
    cov = table.coverage()
    print(f"{table.path}: valid region table (format {h.format_version})")
    print(f"  tiles {h.n_tiles:,}, {h.bits} bits, {h.heading_bins} heading bin(s), tile {h.tile_size_m:g} m "
          f"every {h.stride_m:g} m")
    print(f"  origin {h.origin_lat:.7f}, {h.origin_lon:.7f}; extent east {cov['east_min']:.0f}..{cov['east_max']:.0f} "
          f"m, north {cov['north_min']:.0f}..{cov['north_max']:.0f} m")
    print(f"  encoder fingerprint {h.encoder_fingerprint}")
    for key, value in sorted(h.provenance.items()):
        print(f"  {key}: {value}")
    return 0
