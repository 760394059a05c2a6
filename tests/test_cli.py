"""The command line: help, and errors as one line with the error's exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge import cli
from edge.errors import ModelError


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "doorguard" in out


def test_project_error_is_one_line(monkeypatch, capsys):
    def boom(args):
        raise ModelError("model file x.tflite does not match its manifest")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    sub = parser._subparsers._group_actions[0]
    p = sub.add_parser("boom")
    p.set_defaults(_main=boom)
    assert cli.main(["boom"]) == ModelError.exit_code
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "does not match its manifest" in err
    assert "Traceback" not in err


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "edge.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "doorguard" in r.stdout
