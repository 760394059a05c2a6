"""Config: defaults, the example file, errors naming key path and line, check-config 0/1."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import BaseModel

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
    for name in type(cfg.events.snapshots).model_fields:
        assert f"\n{name} =" in text, name
    for name in config.ZoneConfig.model_fields:  # the commented [[zones]] example shows every key
        assert f"# {name} =" in text, name
    # Every field of every section appears in the example, so it documents them all.
    for section in ("models", "source", "tracking", "rules", "events", "gpio", "mqtt", "web", "facetouch",
                    "arming", "door", "privacy"):
        model = getattr(cfg, section)
        for name in type(model).model_fields:
            assert f"{name} =" in text or f"# {name} =" in text or f"[{section}.{name}]" in text, (section, name)


def test_every_field_has_a_description():
    def walk(model_cls, seen):
        for name, f in model_cls.model_fields.items():
            assert f.description, f"{model_cls.__name__}.{name} has no description"
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel) and ann not in seen:
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


# ---- valid TOML, absurd values (issue 17): each silently disabled the alarm before -----------------

@pytest.mark.parametrize("text, key", [
    ("[tracking]\nvotes_needed = 1e9\nwindow = 1e9\n", "tracking.votes_needed"),  # no face ever settled
    ("[tracking]\nwindow = 1e19\n", "tracking.window"),  # 25 "model failed" lines, exit 10, forever
    ("[tracking]\nmax_missed = 1e9\n", "tracking.max_missed"),
    ("[tracking]\nreclassify_every = 1e9\n", "tracking.reclassify_every"),
    ("[gpio]\nalert_repeats = 1e12\n", "gpio.alert_repeats"),  # the buzzer never stops
    ("[gpio]\nalert_on_seconds = 1e-300\n", "gpio.alert_on_seconds"),  # a beep nobody hears
    ("[gpio]\nalert_repeats = 50\nalert_on_seconds = 10\nalert_off_seconds = 10\n", "gpio"),  # 1000 s
    ("[gpio]\nmute_minutes = 1e9\n", "gpio.mute_minutes"),
    ("[gpio]\nbuzzer_tone = 1e9\n", "gpio.buzzer_tone"),
    ("[gpio]\nbuzzer_tone = 'Z9'\n", "gpio.buzzer_tone"),
    ("[gpio]\nfault_off_seconds = inf\n", "gpio.fault_off_seconds"),
    ("[rules]\nmin_score = nan\n", "rules.min_score"),
    ("[rules]\ntrack_cooldown_s = 1e12\n", "rules.track_cooldown_s"),
    ("[rules]\nalert_on_classifier = ['no_mask']\ncompliant_on_classifier = ['No_Mask']\n", "rules"),
    ("[source]\nopen_timeout_s = inf\n", "source.open_timeout_s"),
    ("[source]\nreconnect_initial_s = 1e-300\n", "source.reconnect_initial_s"),
    ("[source]\nreconnect_initial_s = 10\nreconnect_max_s = 1\n", "source"),
    ("[source]\nread_timeout_s = 1e308\n", "source.read_timeout_s"),
    ("[events]\nkeep_days = 1e300\n", "events.keep_days"),
    ("[events.snapshots]\nmax_count = 1e15\n", "events.snapshots.max_count"),
    ("[events.snapshots]\nmin_free_bytes = -1\n", "events.snapshots.min_free_bytes"),
    ("[mqtt]\noutbox_cap = 1e12\n", "mqtt.outbox_cap"),
    ("[mqtt]\nreconnect_min_s = 1e-300\n", "mqtt.reconnect_min_s"),
    ("[mqtt]\nstate_interval_s = inf\n", "mqtt.state_interval_s"),
    ("[web]\nidle_timeout_s = 0\n", "web.idle_timeout_s"),
    ("[models]\nmin_face_px = 1e9\n", "models.min_face_px"),
    ("[models]\nscore_threshold = 1.0\n", "models.score_threshold"),  # nothing is ever detected
    ("[rules]\nmin_score = 1.0\n", "rules.min_score"),  # every vote is ignored
    ("[tracking]\niou_threshold = 1.0\n", "tracking.iou_threshold"),  # no track survives a step
])
def test_absurd_values_are_refused(text, key):
    with pytest.raises(ConfigError) as e:
        config.parse(text, "door.toml")
    assert f"door.toml: {key}" in str(e.value) and "\n" not in str(e.value)


def test_every_number_has_a_range():
    """Every int/float setting has both bounds: none can be set to 1e12 or 1e-300."""
    import typing

    def walk(model_cls, path, seen):
        for name, f in model_cls.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                if ann not in seen:
                    seen.add(ann)
                    yield from walk(ann, f"{path}{name}.", seen)
                continue
            args = set(typing.get_args(ann)) or {ann}
            if args & {int, float} and bool not in args:
                bounds = {type(m).__name__ for m in f.metadata}
                yield f"{path}{name}", bool(bounds & {"Ge", "Gt"}) and bool(bounds & {"Le", "Lt"})

    unbounded = [k for k, ok in walk(config.Config, "", set()) if not ok]
    # buzzer_tone is a note name or Hz: checked by its own validator (20-20000 Hz).
    assert unbounded == ["gpio.buzzer_tone"]


def test_deeply_nested_config_is_a_config_error(tmp_path, capsys):
    """5000 levels of nesting ended in a RecursionError (a traceback)."""
    from edge import cli

    for text in ("x = " + "[" * 5000 + "]" * 5000 + "\n", "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
                 "[models]\ndetector = " + "[" * 5000 + "]" * 5000 + "\n"):
        with pytest.raises(ConfigError, match="nested too deeply"):
            config.parse(text, "deep.toml")
        errors = config.all_errors(text, "deep.toml")
        assert len(errors) == 1 and "nested too deeply" in errors[0]
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert cli.main(["run", "--config", str(deep)]) == ConfigError.exit_code
    assert cli.main(["check-config", str(deep)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RecursionError" not in err and "nested too deeply" in err


# ---- what the config names: models load, rule labels can fire ----------------------------------

DEFAULT_MODELS = all((ROOT / "models" / f"{n}.{s}").is_file()
                     for n in ("yoloface-500k-v2-facemask", "mask-classifier") for s in ("json", "tflite"))
needs_models = pytest.mark.skipif(not DEFAULT_MODELS, reason="needs the default models in models/ (make models)")


def test_rule_label_problems():
    cfg = config.parse("")
    assert config.rule_label_problems(cfg, ["face"], ["mask", "no_mask", "mask_incorrect"]) == []
    assert config.rule_label_problems(cfg, ["Face"], ["MASK", "No_Mask", "mask_incorrect"]) == []  # case
    cfg = config.parse("[rules]\nalert_on_classifier = ['nomask', 'no_mask']\n"
                       "alert_on_detector = ['facetouch', 'person', 'face']\ncompliant_on_classifier = ['me']\n")
    problems = config.rule_label_problems(cfg, ["face", "person"], ["mask", "no_mask"])
    assert [p.split(":")[0] for p in problems] == ["rules.alert_on_classifier", "rules.compliant_on_classifier",
                                                  "rules.alert_on_detector", "rules.alert_on_detector"]
    assert "'nomask' is not a label of the classifier (labels: mask, no_mask)" in problems[0]
    assert "'facetouch' is not a label of the detector" in problems[2]
    assert "'face' is in models.classify_labels" in problems[3]  # its boxes go to the classifier
    # No classifier: classifier rules can never fire; a classify label the detector lacks neither.
    cfg = config.parse("[models]\nclassifier = ''\nclassify_labels = ['face']\n")
    assert [p.split(":")[0] for p in config.rule_label_problems(cfg, ["face"], None)] == [
        "rules.alert_on_classifier", "rules.alert_on_classifier", "rules.compliant_on_classifier"]
    cfg = config.parse("[models]\nclassify_labels = ['head']\n")
    assert config.rule_label_problems(cfg, ["face"], ["mask", "no_mask", "mask_incorrect"])[0].startswith(
        "models.classify_labels: 'head' is not a label of the detector")
    cfg = config.parse("[rules]\nalert_on_classifier = []\ncompliant_on_classifier = ['mask']\n")
    assert "the alarm never sounds" in config.rule_label_problems(cfg, ["face"], ["mask"])[0]


@needs_models
def test_check_config_refuses_labels_no_model_outputs(tmp_path, capsys):
    cases = {
        "typo": ("[rules]\nalert_on_classifier = ['nomask']\n",
                 "rules.alert_on_classifier (line 2): 'nomask' is not a label of the classifier"),
        "old default": ("[rules]\nalert_on_detector = ['facetouch', 'person']\n",
                        "rules.alert_on_detector (line 2): 'facetouch' is not a label of the detector"),
    }
    for name, (text, needle) in cases.items():
        p = tmp_path / f"{name.replace(' ', '_')}.toml"
        p.write_text(text)
        assert config.main(argparse.Namespace(path=str(p))) == 1, name
        assert needle in capsys.readouterr().err, name
    for p in (ROOT / "config.example.toml", ROOT / "edge" / "default.toml"):
        assert config.main(argparse.Namespace(path=str(p))) == 0, p
        assert capsys.readouterr().out.strip().endswith(": ok")


@needs_models
def test_check_config_refuses_missing_or_broken_models(tmp_path, capsys):
    """check-config said ok for a config naming a missing model; run then exited 4 (issue 24 item 6)."""
    import shutil

    p = tmp_path / "c.toml"
    p.write_text("[models]\ndetector = 'models/nothing-here.json'\n")
    assert config.main(argparse.Namespace(path=str(p))) == 1
    err = capsys.readouterr().err
    assert "models.detector (line 2): model manifest not found" in err
    d = tmp_path / "m"
    d.mkdir()
    for s in ("json", "tflite"):
        shutil.copy(ROOT / "models" / f"mask-classifier.{s}", d / f"mask-classifier.{s}")
    (d / "mask-classifier.tflite").write_bytes(b"not a model")
    p.write_text(f"[models]\nclassifier = '{d / 'mask-classifier.json'}'\n")
    assert config.main(argparse.Namespace(path=str(p))) == 1
    assert "models.classifier (line 2): model file" in capsys.readouterr().err  # sha256 mismatch
    import hashlib
    import json

    m = json.loads((d / "mask-classifier.json").read_text())
    m["sha256"] = hashlib.sha256(b"not a model").hexdigest()  # a matching manifest: the load itself fails
    (d / "mask-classifier.json").write_text(json.dumps(m))
    assert config.main(argparse.Namespace(path=str(p))) == 1
    assert "models.classifier (line 2): cannot load model" in capsys.readouterr().err


def test_run_warns_about_rule_labels_no_model_outputs(tmp_path, caplog):
    import logging

    from edge.fakes import (BlobDetectorInterpreter, ColourClassifierInterpreter, FakeActuators, FakeNotifier,
                            ListSource, frame_with, write_classifier_manifest, write_detector_manifest)

    from edge import service

    p = tmp_path / "c.toml"
    p.write_text(f'[models]\ndetector = "{write_detector_manifest(tmp_path)}"\n'
                 f'classifier = "{write_classifier_manifest(tmp_path)}"\n'
                 f'[events]\nenabled = false\n[rules]\nalert_on_classifier = ["nomask"]\n')
    caplog.set_level(logging.INFO)
    r = service.Runner(config.load(p), source=ListSource([frame_with([])] * 2), actuators=FakeActuators(),
                       notifier=FakeNotifier(), detector_interpreter=BlobDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter())
    assert r.run() == 0
    warned = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any(m.startswith("config: rules.alert_on_classifier: 'nomask' is not a label of the classifier")
               for m in warned), warned
