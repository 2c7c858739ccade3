"""The ``geoloc`` command line: one sub-command per stage, each defined next to the code it runs.

Each entry of ``COMMANDS`` names a module with ``register(subparsers)``; the module is imported only when its command
is asked for (or for ``--help``), so that ``geoloc replay`` never pays for torch and a missing optional extra gives a
clear message instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command -> (module that registers it, one-line help)
COMMANDS = {
    "demo": ("geoloc_node.demo", "the whole chain on a synthetic world: build, drive, GPS outage, replay, report"),
    "synth": ("geoloc_node.synth.cli", "synthetic world, training pairs and drive bags"),
    "train": ("geoloc_node.model.cli", "train the cross-view hashing model"),
    "eval": ("geoloc_node.model.cli", "evaluate a model: recall, localisation error, speed"),
    "export": ("geoloc_node.model.cli", "export a trained model to ONNX"),
    "build-engine": ("geoloc_node.encoders.cli", "build a TensorRT engine from an ONNX model (cached)"),
    "build-table": ("geoloc_node.table_builder", "encode aerial imagery into a region table"),
    "table-info": ("geoloc_node.table_cli", "show and validate a region table"),
    "replay": ("geoloc_node.replay_cli", "replay a rosbag2 through the pipeline and write a report"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoloc", description="geoloc_node: GPS-fallback localisation by "
                                     "cross-view hashing. Each command has its own --help.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registered = set()
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue
        if module_name in registered:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if only is not None:
                raise SystemExit(f"geoloc {name}: not available ({exc}); "
                                 "install the extra it needs, see README") from None
            sub.add_parser(name, help=f"{help_text} [unavailable: {exc.name or exc}]")
            continue
        except Exception as exc:  # noqa: BLE001 - the overview must list the other commands even if one module is broken
            if only is not None:
                raise
            sub.add_parser(name, help=f"{help_text} [broken: {type(exc).__name__}: {exc}]")
            continue
        module.register(sub)
        registered.add(module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` or a closed pager: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
