"""Project exceptions.

Each error also inherits the builtin it refines (as gpiozero does), and carries
the process exit code the CLI uses, so systemd (and scripts) can tell a broken
config from a broken model from a missing camera.
"""

from __future__ import annotations

import sys
from typing import Callable


class DoorguardError(Exception):
    """Base of every error doorguard reports as one line and a non-zero exit.

    A subclass names its exit code in its header: ``class StateError(DoorguardError, OSError,
    exit_code=6)``; one without inherits its parent's.
    """

    exit_code = 1

    def __init_subclass__(cls, exit_code: int | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code


class UsageError(DoorguardError, ValueError, exit_code=2):
    """Bad command-line arguments or an unknown source spec."""


class ConfigError(DoorguardError, ValueError, exit_code=3):
    """The configuration file is missing, unreadable or invalid."""


class ModelError(DoorguardError, ValueError, exit_code=4):
    """A model or manifest is missing, corrupt, or does not match its hash."""


class ModelRuntimeError(ModelError, exit_code=10):
    """A model that loaded and verified kept failing while running (frames in a row).

    Not a broken file (exit 4, which systemd does not restart): the interpreter or
    the machine misbehaved (memory, a delegate glitch), and a restart may fix it.
    """


class SourceError(DoorguardError, OSError, exit_code=5):
    """The frame source (camera, file, stream) cannot be opened or read."""


class StateError(DoorguardError, OSError, exit_code=6):
    """The state directory or event store is unusable."""


class HardwareError(DoorguardError, RuntimeError, exit_code=7):
    """GPIO or another device is unavailable."""


class DataError(DoorguardError, ValueError, exit_code=8):
    """Input data (images, labels, darknet cfg/weights) is unusable."""


class AccuracyGateError(DoorguardError, exit_code=9):
    """A conversion or training run fell below its accuracy gate (report written)."""


def run_main(prog: str, body: Callable[[], int | None], debug: bool = False) -> int:
    """Run a command's body; a project error becomes one line and its exit code.

    The one tail of every ``main()`` (``doorguard``, ``make models``, the benchmarks):
    ``{prog}: error: {message}`` on stderr, never a traceback.

    Args:
        prog: the command's name, the line's prefix.
        body: the command; its return value (None meaning 0) is the exit code.
        debug: re-raise instead, for the traceback.

    Returns:
        The exit code: the body's, or the error's ``exit_code``.
    """
    try:
        return int(body() or 0)
    except DoorguardError as e:
        if debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters (its type if empty).

    How a third-party error (TensorFlow, h5py, onnx, torch) is quoted inside a project
    error's one line.
    """
    s = str(e).strip()
    return s.splitlines()[0][:limit] if s else type(e).__name__
