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
from .errors import UsageError, run_main

# (command words, module, one-line help)
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("run",), "edge.service", "run the doorway pipeline"),
    (("check-config",), "edge.config", "validate a config file (exit 0/1)"),
    (("doctor",), "edge.doctor", "check camera, GPIO, interpreter, models, state dir"),
    (("enroll",), "edge.enroll", "collect face crops for an identity model (me / not_me)"),
    (("zones",), "edge.act.web.zone_overlay", "where the zones and masks come from; --reset drops those the web page saved"),
    (("set-password",), "edge.act.web.set_password", "set the password of the local web page"),
    (("convert", "darknet"), "convert.pipeline.darknet_cli", "darknet cfg+weights -> verified int8 TFLite"),
    (("convert", "keras"), "convert.pipeline.keras", "Keras classifier -> verified int8 TFLite"),
    (("convert", "onnx"), "convert.pipeline.onnx_import", "ONNX classifier -> verified int8 TFLite"),
    (("convert", "torch"), "convert.pipeline.torch_import", "PyTorch state dict + architecture -> verified int8 TFLite"),
    (("train", "classifier"), "convert.train.train_classifier", "train a MobileNet classifier from an image folder"),
    (("train", "detector"), "convert.train.train_detector", "fine-tune a darknet YOLO face detector"),
    (("dataset", "crops"), "convert.data.dataset", "VOC boxes -> folder of face crops"),
    (("dataset", "voc"), "convert.data.dataset_voc", "dataroots CSV -> VOC xml folder"),
    (("eval",), "convert.verify.evaluate", "evaluate the full pipeline on a VOC set"),
    (("models",), "convert.build_models", "rebuild the default models in models/ from ../shared (make models)"),
    (("bench",), "benchmarks.bench.command", "benchmarks: speed, size, memory, peers"),
    (("bench-arm",), "benchmarks.arm.bench_arm", "guest instructions per frame on an emulated Pi 4 / Pi 5 (root)"),
]

log = logging.getLogger("doorguard")


#: Global options that take a value (skipped when finding the command in argv).
_VALUE_OPTIONS = ("--log-level",)
#: The packages of the workstation toolchain: their commands need the workstation extra.
_TOOLCHAIN = ("convert.", "benchmarks.")
#: What a toolchain command needs beyond the Pi install, found without importing it:
#: every convert.* and benchmarks.* command needs the workstation extra (TensorFlow); some one more.
_EXTRA_NEEDS = {"convert.pipeline.onnx_import": ("onnx", "onnxruntime"), "convert.pipeline.torch_import": ("torch", "onnx")}
_EXTRAS = {"tensorflow": "workstation", "onnx": "onnx", "onnxruntime": "onnx", "torch": "torch"}


def missing_extra(module: str) -> str | None:
    """The pip extra a command's module needs and this install lacks, or None.

    Looked up with ``importlib.util.find_spec`` (nothing is imported): a Pi-only install
    never loads the toolchain to print its help.
    """
    import importlib.util

    if not module.startswith(_TOOLCHAIN):
        return None
    for dist in ("tensorflow", *_EXTRA_NEEDS.get(module, ())):
        if importlib.util.find_spec(dist) is None:
            return _EXTRAS[dist]
    return None


def _command_words(argv: list[str]) -> list[str]:
    """The command (and subcommand) words of ``argv``, global options skipped."""
    words, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in _VALUE_OPTIONS:
            skip = True
        elif not a.startswith("-"):
            words.append(a)
            if len(words) == 2:
                break
        elif words:
            break  # an option of the command itself
    return words


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of the one command ``argv`` names (only its module is imported).

    Every command is listed by name and help text; a toolchain command whose extra is not
    installed is left out of the listing, with a hint at the end.
    """
    words = _command_words(sys.argv[1:] if argv is None else argv)
    lacking: dict[str, list[str]] = {}
    for cmd, module, _ in COMMANDS:
        extra = missing_extra(module)
        if extra:
            lacking.setdefault(extra, []).append(" ".join(cmd))
    epilog = ("not installed here: " + "; ".join(f"{', '.join(cmds)} (pip install 'doorguard[{extra}]')"
                                                   for extra, cmds in lacking.items())) if lacking else None
    parser = argparse.ArgumentParser(prog="doorguard", description="Edge vision alarm for a doorway.",
                                     epilog=epilog)
    parser.add_argument("--version", action="version", version=f"doorguard {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--log-level", default=os.environ.get("DOORGUARD_LOG_LEVEL", "INFO"),
                        help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for cmd, module, help_text in COMMANDS:
        chosen = list(cmd) == words[:len(cmd)]
        extra = missing_extra(module)
        if extra and not chosen:
            continue
        if len(cmd) == 1:
            p = sub.add_parser(cmd[0], help=help_text, description=help_text)
        else:
            if cmd[0] not in groups:
                g = sub.add_parser(cmd[0], help=f"{cmd[0]} subcommands")
                groups[cmd[0]] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            p = groups[cmd[0]].add_parser(cmd[1], help=help_text, description=help_text)
        if not chosen:
            continue
        if extra:
            # Its options are unknown here: main() refuses the command before parsing them.
            continue
        mod = importlib.import_module(module)
        adder = getattr(mod, f"add_arguments_{cmd[-1].replace('-', '_')}", None) or mod.add_arguments
        adder(p)
        runner = getattr(mod, f"main_{cmd[-1].replace('-', '_')}", None) or mod.main
        p.set_defaults(_main=runner)
    return parser


def lacking_toolchain(argv: list[str]) -> str | None:
    """The one-line refusal for a toolchain command this install cannot run, or None."""
    words = _command_words(argv)
    for cmd, module, _ in COMMANDS:
        if list(cmd) == words[:len(cmd)] and len(words) >= len(cmd):
            extra = missing_extra(module)
            if extra:
                return (f"doorguard {' '.join(cmd)} is part of the workstation toolchain: "
                        f"pip install 'doorguard[{extra}]' (not needed on the Pi)")
    return None


def _quiet_toolchain(args: argparse.Namespace):
    """Workstation commands (convert.*, benchmarks.*) run with TensorFlow's own logging silenced
    unless ``--log-level DEBUG``; edge commands never import it, so they run as they are."""
    import contextlib

    if not getattr(args._main, "__module__", "").startswith(_TOOLCHAIN):
        return contextlib.nullcontext()
    # By name, like the command's own module: edge never imports the toolchain itself.
    quiet = importlib.import_module("convert.tflite.tflog").quiet
    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    return quiet(verbose=isinstance(level, int) and level <= logging.DEBUG)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``doorguard`` console script."""
    refusal = lacking_toolchain(sys.argv[1:] if argv is None else argv)
    if refusal:
        print(f"doorguard: error: {refusal}", file=sys.stderr)
        return UsageError.exit_code
    parser = build_parser(argv)
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

    def command() -> int | None:
        with _quiet_toolchain(args):
            return args._main(args)

    try:
        return run_main("doorguard", command, debug=debug)
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
