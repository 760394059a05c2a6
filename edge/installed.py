"""Where ``systemd/install.sh`` puts doorguard on a Pi, for the commands run there by hand.

``doorguard doctor`` and ``doorguard zones`` run from a shell (``sudo doorguard doctor``),
not from the unit: without ``--config`` they look at the config file the unit runs with,
and at the unit's state directory, when those exist. Stdlib only: doctor must start on a
broken install.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

#: The config file install.sh writes and the unit runs with (``run --config``).
CONFIG = Path("/etc/doorguard/config.toml")
#: The unit's state directory (``StateDirectory=doorguard``).
STATE_DIR = Path("/var/lib/doorguard")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config PATH`` of a command run by hand, defaulting as :func:`config_file` does."""
    parser.add_argument("--config", metavar="PATH",
                        help=f"config file (default: {CONFIG} if present, else built-in)")


def config_file(given: str | None, installed: Path | None = None) -> str | None:
    """The config such a command reads: ``given``, else the installed one when it exists.

    Args:
        given: ``--config``, or None.
        installed: where the installed config is looked for (default :data:`CONFIG`; doctor's
            tests use a fake root).

    Returns:
        The path, or None for the built-in default config.
    """
    installed = CONFIG if installed is None else installed
    return given or (str(installed) if installed.is_file() else None)


def state_dir(cfg: Any, given: str | None = None, installed: Path | None = None) -> Path:
    """The state directory such a command works in.

    ``given`` (``--state-dir``), else the config's ``events.state_dir`` or $STATE_DIRECTORY
    (as the unit sees it: ``cfg.state_dir()``); from a shell (sudo), where $STATE_DIRECTORY is
    unset, the unit's folder (``installed``, default :data:`STATE_DIR`) when it exists; else
    ``cfg.state_dir()`` (./state).
    """
    if given:
        return Path(given).expanduser()
    if cfg.events.state_dir or os.environ.get("STATE_DIRECTORY", "").strip():
        return Path(cfg.state_dir())
    installed = STATE_DIR if installed is None else installed
    return installed if installed.is_dir() else Path(cfg.state_dir())
