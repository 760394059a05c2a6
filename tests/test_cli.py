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
    monkeypatch.setattr(cli, "build_parser", lambda argv=None: parser)
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


def _in_fresh_python(code: str) -> str:
    """stdout of ``code`` in a new interpreter, then the convert/tensorflow modules it loaded."""
    code = ("import sys; from edge import cli\n" + code +
            "\nprint('LOADED', sorted(m for m in sys.modules if m.startswith(('convert', 'tensorflow'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_help_lists_every_command_without_importing_their_modules():
    out = _in_fresh_python("try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass")
    for words, _, _ in cli.COMMANDS:
        assert words[0] in out
    assert "LOADED []" in out


def test_a_command_imports_only_its_own_module():
    assert "LOADED []" in _in_fresh_python("cli.build_parser(['check-config', 'x.toml'])")


def test_command_words_skip_global_options():
    assert cli._command_words(["--log-level", "DEBUG", "convert", "darknet", "--cfg", "x"]) == ["convert", "darknet"]
    assert cli._command_words(["--debug", "run", "--source", "demo"]) == ["run"]
    assert cli._command_words(["--help"]) == []


def test_toolchain_commands_without_their_extra_are_hidden_and_refused_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(cli, "missing_extra",
                        lambda m: "workstation" if m.startswith(("convert.", "benchmarks.")) else None)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "check-config" in out and "pip install 'doorguard[workstation]'" in out
    assert "\n    eval " not in out and "train" not in out.split("not installed here")[0]
    assert cli.main(["convert", "darknet", "--cfg", "a.cfg"]) == 2
    err = capsys.readouterr().err
    assert "doorguard convert darknet is part of the workstation toolchain" in err and err.count("\n") == 1


def test_benchmark_commands_need_the_workstation_extra_like_the_converters(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else object())
    modules = {words: module for words, module, _ in cli.COMMANDS}
    assert modules[("bench",)].startswith("benchmarks.")
    for words in (("bench",), ("eval",)):
        assert cli.missing_extra(modules[words]) == "workstation", words
    assert cli.missing_extra(modules[("run",)]) is None
    assert "doorguard bench is part of the workstation toolchain" in cli.lacking_toolchain(["bench", "--quick"])


def test_run_main_is_the_one_error_tail(capsys):
    # doorguard, make models and the benchmarks end the same way (issue 23).
    from edge.errors import run_main

    def broken():
        raise ModelError("models/x.json: no such manifest")

    assert run_main("make models", broken) == ModelError.exit_code
    assert capsys.readouterr().err == "make models: error: models/x.json: no such manifest\n"
    assert run_main("p", lambda: None) == 0 and run_main("p", lambda: 3) == 3
    with pytest.raises(ModelError):
        run_main("p", broken, debug=True)
