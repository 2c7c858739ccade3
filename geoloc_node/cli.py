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
    "table-split": ("geoloc_node.table_cli", "split a region table into a table set (cells by geography)"),
    "replay": ("geoloc_node.replay_cli", "replay a rosbag2 through the pipeline and write a report"),
    "bag-recover": ("geoloc_node.bag_recover", "recover an unfinished or damaged rosbag2 (cut MCAP, no metadata.yaml)"),
}

#: optional dependencies -> the extra of setup.py that installs them (a missing one is named in one line, not a
#: traceback: a runtime-only install has no torch)
EXTRAS = {"torch": "train", "torchvision": "train", "timm": "train", "onnx": "train", "onnxscript": "train",
          "rclpy": "ros"}


def missing_extra(exc: ImportError) -> str | None:
    """``"needs the train extra ..."`` when ``exc`` is a missing optional dependency, else None."""
    root = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(root)
    if extra is None:
        return None
    return f"needs the {extra} extra ({root} is not installed): pip install -e '.[{extra}]'"


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
            importlib.import_module(module_name).register(sub)
        except ImportError as exc:
            if only is not None:
                raise SystemExit(f"geoloc {name}: not available: {missing_extra(exc) or exc}") from None
            _placeholder(sub, name, f"{help_text} [unavailable: {exc.name or exc}]")
            continue
        except Exception as exc:  # noqa: BLE001 - the overview must list the other commands even if one module is broken
            if only is not None:
                raise
            _placeholder(sub, name, f"{help_text} [broken: {type(exc).__name__}: {exc}]")
            continue
        registered.add(module_name)
    return parser


def _placeholder(sub, name: str, help_text: str) -> None:
    if name not in sub.choices:  # a module may have registered some of its commands before failing
        sub.add_parser(name, help=help_text)


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
    except ImportError as exc:  # a command that needs an extra this install lacks (e.g. train without torch)
        hint = missing_extra(exc)
        if hint is None:
            raise
        print(f"geoloc {args.command}: {hint}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` or a closed pager: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
