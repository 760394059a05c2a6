"""Config: defaults, the example file, errors naming key path and line, check-config 0/1."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edge import config
from edge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_embedded_default_loads_and_points_at_default_models():
    cfg = config.load()
    assert cfg.models.detector.endswith("yoloface-500k-v2-facemask.json")
    assert cfg.models.classifier.endswith("mask-classifier.json")
    assert cfg.resolve(cfg.models.detector) == ROOT / "models" / "yoloface-500k-v2-facemask.json"
    assert cfg.events.snapshots.enabled is False  # faces are personal data


def test_example_file_is_valid_and_complete():
    text = (ROOT / "config.example.toml").read_text()
    assert config.all_errors(text) == []
    cfg = config.parse(text)
    # Every field of every section appears in the example, so it documents them all.
    for section in ("models", "source", "tracking", "rules", "events", "gpio", "mqtt", "web"):
        model = getattr(cfg, section)
        for name in type(model).model_fields:
            assert f"{name} =" in text or f"# {name} =" in text or f"[{section}.{name}]" in text, (section, name)


def test_every_field_has_a_description():
    def walk(model_cls, seen):
        for name, f in model_cls.model_fields.items():
            assert f.description, f"{model_cls.__name__}.{name} has no description"
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, config.BaseModel) and ann not in seen:
                seen.add(ann)
                walk(ann, seen)
    walk(config.Config, set())


def test_unknown_key_names_path_and_line():
    text = "[models]\nnum_threads = 2\n\n[rules]\nglobal_cooldown_s = 1\ntrack_coldown_s = 5\n"
    with pytest.raises(ConfigError) as e:
        config.parse(text, "door.toml")
    msg = str(e.value)
    assert "door.toml" in msg and "rules.track_coldown_s" in msg and "line 6" in msg
    assert "unknown key" in msg


def test_bad_value_names_path_and_line():
    text = "[tracking]\nvotes_needed = 3\nwindow = 'five'\n"
    with pytest.raises(ConfigError) as e:
        config.parse(text, "x.toml")
    assert "tracking.window (line 3)" in str(e.value)


def test_nested_table_line():
    text = "[events]\nenabled = true\n[events.snapshots]\nmax_count = -1\n"
    errs = config.all_errors(text, "x")
    assert errs == ["x: events.snapshots.max_count (line 4): Input should be greater than or equal to 1"]


def test_n_of_m_checked():
    with pytest.raises(ConfigError, match="votes_needed"):
        config.parse("[tracking]\nvotes_needed = 6\nwindow = 5\n")


def test_not_toml():
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.parse("[models\n")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml")


def test_relative_paths_resolve_against_config_dir(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "det.json").write_text("{}")
    p = tmp_path / "c.toml"
    p.write_text('[models]\ndetector = "m/det.json"\nclassifier = ""\n')
    cfg = config.load(p)
    assert cfg.resolve(cfg.models.detector) == tmp_path / "m" / "det.json"
    assert cfg.models.classifier is None


def test_state_dir_precedence(monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert config.load().state_dir() == Path("state")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/doorguard:/other")
    assert config.load().state_dir() == Path("/var/lib/doorguard")
    cfg = config.parse('[events]\nstate_dir = "/tmp/x"\n')
    assert cfg.state_dir() == Path("/tmp/x")


def test_check_config_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text("[models]\nnum_threads = 1\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("[models]\nnum_thread = 1\n")
    assert config.main(argparse.Namespace(path=str(good))) == 0
    assert config.main(argparse.Namespace(path=str(bad))) == 1
    err = capsys.readouterr().err
    assert "models.num_thread (line 2): unknown key" in err
    assert config.main(argparse.Namespace(path=str(tmp_path / "missing.toml"))) == 1


def test_check_config_via_cli(tmp_path, capsys):
    from edge import cli

    bad = tmp_path / "bad.toml"
    bad.write_text("[source]\nspec = 3\n")
    assert cli.main(["check-config", str(bad)]) == 1
    assert "Traceback" not in capsys.readouterr().err
