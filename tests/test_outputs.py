"""convert.report.outputs.Staging: a model's files appear together at the end, or not at all."""

from __future__ import annotations

import pytest

from convert.report.outputs import Staging, output_name
from edge.errors import AccuracyGateError, DataError, UsageError


def _write(stage: Staging, name: str = "m") -> None:
    stage.path(f"{name}.tflite").write_text("new int8")
    stage.path(f"{name}.json").write_text("new manifest")
    (stage.path(f"{name}.report")).mkdir()
    (stage.path(f"{name}.report") / "report.md").write_text("new report")


def test_success_moves_everything_in_and_replaces_the_old_model(tmp_path):
    (tmp_path / "m.json").write_text("old manifest")
    (tmp_path / "m.report").mkdir()
    (tmp_path / "m.report" / "stale.png").write_text("old")
    with Staging(tmp_path, "m") as stage:
        _write(stage)
        assert not (tmp_path / "m.tflite").exists()  # nothing appears before the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.report", "m.tflite"]
    assert (tmp_path / "m.json").read_text() == "new manifest"
    assert [p.name for p in (tmp_path / "m.report").iterdir()] == ["report.md"]


def test_failure_leaves_nothing_and_keeps_the_old_model(tmp_path):
    (tmp_path / "m.json").write_text("old manifest")
    with pytest.raises(DataError):
        with Staging(tmp_path, "m") as stage:
            _write(stage)
            raise DataError("too few images")
    assert [(p.name, p.read_text()) for p in tmp_path.iterdir()] == [("m.json", "old manifest")]


def test_failed_gate_still_moves_the_files_in(tmp_path):
    with pytest.raises(AccuracyGateError):
        with Staging(tmp_path, "m") as stage:
            _write(stage)
            raise AccuracyGateError("int8 lost 3 points")
    assert (tmp_path / "m.report" / "report.md").is_file() and (tmp_path / "m.json").is_file()


def test_folders_it_made_go_again_and_unwritable_out(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with Staging(tmp_path / "a" / "b", "m"):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot write the output folder .*check --out"):
        Staging(tmp_path / "file" / "sub", "m")


def test_output_name():
    assert output_name("models/x.tflite")[1] == output_name("models/x.json")[1] == "x"
    with pytest.raises(UsageError):
        output_name("models/.tflite")
