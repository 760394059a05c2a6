"""``doorguard set-password``: store the web page's password as an scrypt hash in a 0600 file."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from ...errors import UsageError
from ...settings.web import WebConfig
from .passwords import MIN_PASSWORD_LENGTH, hash_password, password_path, write_password_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard set-password``."""
    parser.add_argument("--config", metavar="PATH",
                        help="config TOML whose [web] password_file / state directory is used "
                             "(default: the embedded default config)")
    parser.add_argument("--password-file", metavar="PATH",
                        help="write the hash here (overrides the config)")


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

        cfg = config_mod.load(args.config)
        web_cfg = getattr(cfg, "web", None) or WebConfig()
        path = password_path(web_cfg, cfg.state_dir())
    pw = _read_new_password()
    write_password_file(path, hash_password(pw))
    print(f"doorguard: web page password set in {path.resolve()} (scrypt, mode 0600); "
          "the page reads it at each login")
    return 0
