"""make models: fails in one line without ../shared; model cards keep all but their eval section."""

from __future__ import annotations

import subprocess
import sys

from convert import build_models
from edge.errors import DataError


def test_missing_shared_is_one_line(tmp_path, capsys):
    rc = build_models.main(["--shared", str(tmp_path / "nope"), "--out", str(tmp_path / "models")])
    assert rc == DataError.exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs ../shared" in err


def test_unknown_step_is_refused(tmp_path, capsys):
    assert build_models.main(["--shared", str(tmp_path), "--steps", "detector,fly"]) == 2
    assert "unknown step(s) fly" in capsys.readouterr().err


def test_card_refresh_replaces_only_the_eval_section(tmp_path):
    card = tmp_path / "m.md"
    card.write_text(f"# m\nwritten by hand\n\n{build_models.BEGIN}\nold figures\n{build_models.END}\n\n## Notes\nkeep\n")
    build_models.write_card(tmp_path / "m.json", f"{build_models.BEGIN}\nnew figures\n{build_models.END}\n")
    text = card.read_text()
    assert "written by hand" in text and "new figures" in text and "keep" in text
    assert "old figures" not in text
    assert text.count(build_models.BEGIN) == 1


def test_module_runs_as_make_models_calls_it(tmp_path):
    r = subprocess.run([sys.executable, "-m", "convert.build_models", "--shared", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == DataError.exit_code
    assert "Traceback" not in r.stderr
