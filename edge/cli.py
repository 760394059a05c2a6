"""The ``doorguard`` command line.

Each subcommand lives in its own module, which exposes ``add_arguments(parser)``
and ``main(args) -> int``. Modules are imported only to build the parser (they
must stay light: tensorflow is imported inside ``main``), so ``doorguard run``
on a Pi never touches the workstation toolchain.

Project errors become one line on stderr and the error's exit code; an
unexpected exception too, unless ``--debug`` (or DOORGUARD_DEBUG=1) asks for
the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .errors import DoorguardError

# (command words, module, one-line help)
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("run",), "edge.service", "run the doorway pipeline"),
    (("check-config",), "edge.config", "validate a config file (exit 0/1)"),
    (("doctor",), "edge.doctor", "check camera, GPIO, interpreter, models, state dir"),
    (("zones",), "edge.zone_overlay", "where the zones and masks come from; --reset drops those the web page saved"),
    (("set-password",), "edge.web", "set the password of the local web page"),
    (("convert", "darknet"), "convert.darknet_cli", "darknet cfg+weights -> verified int8 TFLite"),
    (("convert", "keras"), "convert.keras", "Keras classifier -> verified int8 TFLite"),
    (("convert", "onnx"), "convert.onnx_import", "ONNX classifier -> verified int8 TFLite"),
    (("convert", "torch"), "convert.torch_import", "PyTorch state dict + architecture -> verified int8 TFLite"),
    (("train", "classifier"), "convert.train", "train a MobileNet classifier from an image folder"),
    (("train", "detector"), "convert.train_detector", "fine-tune a darknet YOLO face detector"),
    (("dataset", "crops"), "convert.dataset", "VOC boxes -> folder of face crops"),
    (("dataset", "voc"), "convert.dataset_voc", "dataroots CSV -> VOC xml folder"),
    (("eval",), "convert.evaluate", "evaluate the full pipeline on a VOC set"),
    (("bench",), "convert.bench", "benchmarks: speed, size, memory, peers"),
]

log = logging.getLogger("doorguard")


def _load(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        # A command whose module is not part of this install is left out; any
        # other missing import inside an existing module is a real error.
        if e.name == module or module.startswith(f"{e.name}."):
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="doorguard", description="Edge vision alarm for a doorway.")
    parser.add_argument("--version", action="version", version=f"doorguard {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--log-level", default=os.environ.get("DOORGUARD_LOG_LEVEL", "INFO"),
                        help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module, help_text in COMMANDS:
        mod = _load(module)
        if mod is None:
            continue
        if len(words) == 1:
            p = sub.add_parser(words[0], help=help_text, description=help_text)
        else:
            if words[0] not in groups:
                g = sub.add_parser(words[0], help=f"{words[0]} subcommands")
                groups[words[0]] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            p = groups[words[0]].add_parser(words[1], help=help_text, description=help_text)
        adder = getattr(mod, f"add_arguments_{words[-1].replace('-', '_')}", None) or mod.add_arguments
        adder(p)
        runner = getattr(mod, f"main_{words[-1].replace('-', '_')}", None) or mod.main
        p.set_defaults(_main=runner)
    return parser


def _quiet_toolchain(args: argparse.Namespace):
    """Workstation commands (convert.*) run with TensorFlow's own logging silenced unless
    ``--log-level DEBUG``; edge commands never import it, so they run as they are."""
    import contextlib

    if not getattr(args._main, "__module__", "").startswith("convert."):
        return contextlib.nullcontext()
    from convert.tflog import quiet

    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    return quiet(verbose=isinstance(level, int) and level <= logging.DEBUG)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``doorguard`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("DOORGUARD_DEBUG") == "1"
    try:
        with _quiet_toolchain(args):
            return int(args._main(args) or 0)
    except DoorguardError as e:
        if debug:
            raise
        print(f"doorguard: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("doorguard: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, never a traceback
        if debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"doorguard: error: {type(e).__name__}: {msg} (run with --debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
