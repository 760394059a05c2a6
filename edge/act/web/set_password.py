"""``doorguard set-password``: store the web page's password as an scrypt hash in a 0600 file."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from ... import installed
from ...errors import UsageError
from ...settings.web import WebConfig
from .passwords import MIN_PASSWORD_LENGTH, hash_password, password_path, write_password_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard set-password``."""
    installed.add_config_argument(parser)
    parser.add_argument("--password-file", metavar="PATH",
                        help="write the hash here (default: the config's [web] password_file, relative "
                             "to the state directory: events.state_dir, else $STATE_DIRECTORY, else "
                             f"{installed.STATE_DIR} when it exists, else ./state)")


def _read_new_password(stdin=None) -> str:
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("New web page password: ")
        again = getpass.getpass("Repeat it: ")
        if first != again:
            raise UsageError("the two passwords differ; nothing changed")
        pw = first
    else:
        # Scripts: the first line of stdin is the password (no echo concerns, no repeat).
        pw = stdin.readline().rstrip("\r\n")
    if len(pw) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters; nothing changed")
    return pw


def main(args: argparse.Namespace) -> int:
    """Prompt for a password (twice; or read stdin's first line) and store its scrypt hash with mode 0600."""
    if args.password_file:
        path = Path(args.password_file).expanduser()
    else:
        from ... import config as config_mod

        cfg = config_mod.load(installed.config_file(args.config))
        web_cfg = getattr(cfg, "web", None) or WebConfig()
        path = password_path(web_cfg, installed.state_dir(cfg))
    pw = _read_new_password()
    write_password_file(path, hash_password(pw))
    print(f"doorguard: web page password set in {path.resolve()} (scrypt, mode 0600); "
          "the page reads it at each login")
    return 0
