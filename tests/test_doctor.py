"""`doorguard doctor` on a faked Raspberry Pi (root dir, command runner, groups, pins, models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge import doctor, pi_health
from edge.config import parse
from edge.doctor import FAIL, OK, WARN, Doctor, Host, decode_throttled
from edge.manifest import sha256_file

PI5 = b"Raspberry Pi 5 Model B Rev 1.0\x00"
CAMERAS = """Available cameras
-----------------
0 : imx708 [4608x2592 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)
    Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]
"""


def write_model(d: Path, name: str, task: str, labels=("a", "b", "c")) -> Path:
    tfl = d / f"{name}.int8.tflite"
    tfl.write_bytes(b"TFL3 fake " + name.encode())
    manifest = {
        "format_version": 1, "name": name, "task": task, "tflite": tfl.name, "sha256": sha256_file(tfl),
        "input": {"width": 96, "height": 96, "resize": "stretch", "scale": 1 / 255, "dtype": "int8",
                  "quant": {"scale": 0.0039, "zero_point": -128}},
        "outputs": [{"name": "out", "shape": [1, 3], "role": "probabilities", "dtype": "int8"}],
        "labels": list(labels), "source": {"kind": "keras"},
    }
    path = d / f"{name}.json"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def pi(tmp_path):
    """A fake Raspberry Pi 5: device tree, thermal zone, camera/GPIO device nodes, models, config."""
    root = tmp_path / "root"
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(PI5)
    (root / "sys/class/thermal/thermal_zone0").mkdir(parents=True)
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("48312\n")
    dev = root / "dev"
    (dev / "dma_heap").mkdir(parents=True)
    for n in ("video0", "video19", "media0", "media1", "gpiochip0", "gpiochip4", "dma_heap/linux,cma",
              "dma_heap/system"):
        (dev / n).write_text("")
    models = tmp_path / "models"
    models.mkdir()
    det = write_model(models, "faces", "detect", labels=("face",))
    cls = write_model(models, "masks", "classify", labels=("mask", "no_mask", "mask_incorrect"))
    state = tmp_path / "state"
    state.mkdir()
    cfg = parse(f"""
[models]
detector = "{det}"
classifier = "{cls}"
[source]
spec = "picamera"
[events]
state_dir = "{state}"
[gpio]
red_led = 17
green_led = 27
buzzer = 22
mute_button = 5
""")
    fake = FakePi(root)
    return fake, cfg


class FakePi:
    """Host seams backed by plain attributes the tests change."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.user, self.groups = "doorguard", {"doorguard", "video", "gpio"}
        self.outputs = {"rpicam-hello": (0, CAMERAS), "vcgencmd": (0, "throttled=0x0\n"),
                        "systemctl": (3, "inactive\n")}
        self.missing_modules: set[str] = set()
        self.denied: set[str] = set()
        self.busy: set[int] = set()
        self.claimed: list[int] = []
        self.bad_models: set[str] = set()
        self.commands: list[list[str]] = []
        # What the configured camera gives doctor's light check: a lit, coloured doorway.
        self.frames = [normal_frame(i) for i in range(5)]
        self.grabbed: list[str] = []

    def run(self, cmd):
        self.commands.append(cmd)
        if cmd[0] not in self.outputs:
            raise FileNotFoundError(cmd[0])
        return self.outputs[cmd[0]]

    def import_module(self, name):
        if name in self.missing_modules:
            raise ImportError(f"No module named {name!r}")
        return object()

    def can_open(self, path: Path) -> bool:
        return path.name not in self.denied and not (path.name.startswith(("video", "media", "linux", "system"))
                                                     and "video" not in self.groups) \
            and not (path.name.startswith("gpiochip") and "gpio" not in self.groups)

    def claim(self, pin: int) -> None:
        self.claimed.append(pin)
        if pin in self.busy:
            raise OSError(f"'GPIO busy' on pin {pin}")

    def load_model(self, path: Path, backend) -> str:
        if path.name in self.bad_models:
            raise RuntimeError("Model provided has model identifier 'xxxx', should be 'TFL3'")
        return "litert"

    def grab(self, spec, source_cfg, n):
        self.grabbed.append(spec)
        if isinstance(self.frames, Exception):
            raise self.frames
        return list(self.frames[:n])

    def host(self, **env) -> Host:
        return Host(root=self.root, run=self.run, identity=lambda: (self.user, set(self.groups)),
                    import_module=self.import_module, can_open=self.can_open, claim_pin=self.claim,
                    load_model=self.load_model, grab_frames=self.grab, env=dict(env))


def normal_frame(seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    """A daylight doorway: mid brightness, clearly coloured (a warm wall, a blue door)."""
    rng = np.random.default_rng(seed)
    f = np.empty((h, w, 3), np.uint8)
    f[:, : w // 2] = (170, 120, 90)
    f[:, w // 2:] = (60, 90, 150)
    return np.clip(f + rng.normal(0, 6, f.shape), 0, 255).astype(np.uint8)


def dark_frame(seed: int) -> np.ndarray:
    """Night without light: the same scene at a tenth of the light, plus sensor noise."""
    rng = np.random.default_rng(seed)
    f = normal_frame(seed).astype(np.float32) * 0.1 + rng.normal(0, 3, (120, 160, 3))
    return np.clip(f, 0, 255).astype(np.uint8)


def grey_frame(seed: int) -> np.ndarray:
    """IR-lit (NoIR camera under an 850 nm lamp): bright enough, but the three channels almost equal."""
    rng = np.random.default_rng(seed)
    g = normal_frame(seed).mean(axis=2, keepdims=True)
    f = np.repeat(g, 3, axis=2) + rng.normal(0, 1.0, (120, 160, 3))
    return np.clip(f, 0, 255).astype(np.uint8)


def statuses(results, name):
    return [(r.status, r.message) for r in results if r.name == name]


def test_healthy_pi5(pi, capsys):
    fake, cfg = pi
    results = Doctor(cfg, fake.host()).run_all()
    bad = [r for r in results if r.status != OK]
    assert bad == []
    text = "\n".join(f"{r.name}: {r.message}" for r in results)
    assert "Raspberry Pi 5 Model B" in text
    assert "1 camera(s) found by libcamera: imx708" in text
    assert "pins free: red_led=GPIO17, green_led=GPIO27, buzzer=GPIO22, mute_button=GPIO5" in text
    assert "detector faces: detect, 96x96 int8, sha256 matches, loads with litert" in text
    assert "CPU at 48.3 C" in text
    assert fake.claimed == [17, 27, 22, 5]


def test_user_not_in_video_and_gpio_groups(pi):
    fake, cfg = pi
    fake.user, fake.groups = "pi", {"pi"}
    results = Doctor(cfg, fake.host()).run_all()
    cam = statuses(results, "camera")
    assert any(s == FAIL and "sudo usermod -aG video pi" in m and "/dev/media0" in m for s, m in cam), cam
    assert any(s == FAIL and "/dev/dma_heap/linux,cma" in m for s, m in cam), cam
    gpio = statuses(results, "gpio")
    assert gpio == [(FAIL, gpio[0][1])] and "sudo usermod -aG gpio pi" in gpio[0][1]
    assert fake.claimed == []  # no pin claims without access


def test_no_camera_detected_says_reseat_the_cable(pi):
    fake, cfg = pi
    fake.outputs["rpicam-hello"] = (0, "No cameras available!\n")
    cam = statuses(Doctor(cfg, fake.host()).run_all(), "camera")
    assert cam and cam[-1][0] == FAIL and "reseat the ribbon cable" in cam[-1][1]


def test_camera_listing_falls_back_and_warns_without_rpicam_apps(pi):
    fake, cfg = pi
    del fake.outputs["rpicam-hello"]
    fake.outputs["libcamera-hello"] = (0, CAMERAS)
    assert statuses(Doctor(cfg, fake.host()).run_all(), "camera")[-1][0] == OK
    del fake.outputs["libcamera-hello"]
    cam = statuses(Doctor(cfg, fake.host()).run_all(), "camera")
    assert cam[-1][0] == WARN and "apt install rpicam-apps" in cam[-1][1]


def test_picamera2_missing(pi):
    fake, cfg = pi
    fake.missing_modules.add("picamera2")
    cam = statuses(Doctor(cfg, fake.host()).run_all(), "camera")
    assert cam[0][0] == FAIL and "python3-picamera2" in cam[0][1] and "--system-site-packages" in cam[0][1]


def test_gpio_busy_names_the_pin_and_role(pi):
    fake, cfg = pi
    fake.busy.add(22)
    gpio = statuses(Doctor(cfg, fake.host()).run_all(), "gpio")
    assert gpio == [(FAIL, gpio[0][1])]
    assert "GPIO22 (buzzer) is in use by another program" in gpio[0][1]


def test_door_relay_pin_is_checked_and_listed_with_the_others(pi):
    fake, cfg = pi
    cfg = cfg.model_copy(update={"door": cfg.door.model_copy(update={"relay_pin": 23})})
    results = Doctor(cfg, fake.host()).run_all()
    assert fake.claimed == [17, 27, 22, 5, 23]
    assert "mute_button=GPIO5, door_relay=GPIO23." in " | ".join(m for _, m in statuses(results, "gpio"))
    fake.claimed.clear()
    fake.busy.add(23)
    gpio = statuses(Doctor(cfg, fake.host()).run_all(), "gpio")
    assert gpio == [(FAIL, gpio[0][1])]
    assert "GPIO23 (door_relay) is in use by another program" in gpio[0][1] and "[door] relay_pin" in gpio[0][1]
    fake.outputs["systemctl"] = (0, "active\n")
    gpio = statuses(Doctor(cfg, fake.host()).run_all(), "gpio")
    assert gpio[0][0] == OK and "door_relay=GPIO23" in gpio[0][1]


def test_running_service_holds_the_pins(pi):
    fake, cfg = pi
    fake.outputs["systemctl"] = (0, "active\n")
    fake.busy.update({17, 27, 22, 5})
    gpio = statuses(Doctor(cfg, fake.host()).run_all(), "gpio")
    assert gpio[0][0] == OK and "service is running" in gpio[0][1]
    assert fake.claimed == []


def test_lgpio_missing_on_pi5_fails(pi):
    fake, cfg = pi
    fake.missing_modules.add("lgpio")
    gpio = statuses(Doctor(cfg, fake.host(GPIOZERO_PIN_FACTORY="rpigpio")).run_all(), "gpio")
    msgs = " | ".join(m for _, m in gpio)
    assert all(s == FAIL for s, _ in gpio[:2])
    assert "python3-lgpio" in msgs and "does not work on a Pi 5" in msgs


def test_throttling_decoded_into_words(pi):
    fake, cfg = pi
    fake.outputs["vcgencmd"] = (0, "throttled=0x50005\n")
    power = statuses(Doctor(cfg, fake.host()).run_all(), "power")
    assert power[0][0] == FAIL and "under-voltage right now" in power[0][1] and "power supply" in power[0][1]
    fake.outputs["vcgencmd"] = (0, "throttled=0x80000\n")
    power = statuses(Doctor(cfg, fake.host()).run_all(), "power")
    assert power == [(WARN, power[0][1])] and "since boot: soft temperature limit" in power[0][1]
    fake.outputs["vcgencmd"] = (255, "VCHI initialization failed\n")
    power = statuses(Doctor(cfg, fake.host()).run_all(), "power")
    assert power[0][0] == WARN and "VCHI initialization failed" in power[0][1]


def test_decode_throttled():
    assert decode_throttled(0) == ([], [])
    assert decode_throttled(0x50005) == (["under-voltage", "throttled"], ["under-voltage", "throttled"])
    assert decode_throttled(0xF000F) == ([*pi_health.THROTTLE_BITS.values()], [*pi_health.THROTTLE_BITS.values()])


@pytest.mark.parametrize("milli,status", [(69_999, OK), (72_500, WARN), (83_000, FAIL)])
def test_temperature(pi, milli, status):
    fake, cfg = pi
    (fake.root / "sys/class/thermal/thermal_zone0/temp").write_text(str(milli))
    temp = statuses(Doctor(cfg, fake.host()).run_all(), "temperature")
    assert temp[0][0] == status


def test_models_hash_mismatch_and_unloadable(pi):
    fake, cfg = pi
    det = Path(cfg.models.detector)
    (det.parent / "faces.int8.tflite").write_bytes(b"corrupted")
    fake.bad_models.add("masks.int8.tflite")
    models = statuses(Doctor(cfg, fake.host()).run_all(), "models")
    assert [s for s, _ in models] == [FAIL, FAIL]
    assert "does not match its manifest" in models[0][1] and "make deploy" in models[0][1]
    assert "does not load" in models[1][1] and "TFL3" in models[1][1]


def _record_gate(manifest: Path, passed: bool) -> None:
    raw = json.loads(manifest.read_text())
    raw["gate"] = {"passed": passed, "checks": [{"metric": "int8_float_top1_agreement", "value": 0.9, "op": ">=",
                                                 "threshold": 0.98, "passed": passed}]}
    manifest.write_text(json.dumps(raw))


def test_model_with_a_failed_gate_fails_unless_allowed(pi, capsys):
    fake, cfg = pi
    _record_gate(Path(cfg.models.classifier), passed=False)
    _record_gate(Path(cfg.models.detector), passed=True)
    models = statuses(Doctor(cfg, fake.host()).run_all(), "models")
    assert [s for s, _ in models] == [OK, FAIL]
    msg = models[1][1]
    assert "failed its accuracy gate" in msg and "int8_float_top1_agreement 0.9 < 0.98 (min)" in msg
    assert "models.allow_failed_gate = true" in msg and "--allow-failed-gate" in msg
    # The override (flag or config) turns it into a warning.
    allowed = statuses(Doctor(cfg, fake.host(), allow_failed_gate=True).run_all(), "models")
    assert [s for s, _ in allowed] == [OK, WARN] and "allowed by" in allowed[1][1]
    cfg.models.allow_failed_gate = True
    assert [s for s, _ in statuses(Doctor(cfg, fake.host()).run_all(), "models")] == [OK, WARN]


def test_legacy_manifest_gate_records(pi):
    """Manifests from before ``gate``: a classifier's metrics.gate.passed, a detector's F1 against
    min_agreement; none of them at all is "not recorded" (the shipped models), never a failure."""
    fake, cfg = pi
    cls = Path(cfg.models.classifier)
    raw = json.loads(cls.read_text())
    raw["metrics"] = {"gate": {"max_drop_points": 1.0, "basis": "x", "passed": False},
                      "int8_accuracy_drop_points": 3.2}
    cls.write_text(json.dumps(raw))
    det = Path(cfg.models.detector)
    raw = json.loads(det.read_text())
    raw["metrics"] = {"agreement": {"f1": 0.455}, "min_agreement": 0.9}
    det.write_text(json.dumps(raw))
    models = statuses(Doctor(cfg, fake.host()).run_all(), "models")
    assert [s for s, _ in models] == [FAIL, FAIL]
    assert "int8_float_detection_f1 0.455 < 0.9 (min)" in models[0][1]
    assert "int8_accuracy_drop_points 3.2 > 1 (max)" in models[1][1]


def test_shipped_models_have_no_failed_gate():
    from edge.manifest import gate_problem, load_manifest, manifest_paths

    root = Path(__file__).resolve().parent.parent / "models"
    for path in manifest_paths(root):
        assert gate_problem(load_manifest(path, verify_hash=False), path) is None, path


def test_state_dir_not_writable(pi, tmp_path):
    fake, cfg = pi
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cfg.events.state_dir = str(blocker)
    st = statuses(Doctor(cfg, fake.host()).run_all(), "state dir")
    assert st[0][0] == FAIL and "cannot write" in st[0][1]


def test_not_a_pi_skips_pi_checks(tmp_path):
    cfg = parse('[source]\nspec = "picamera"\n')
    host = FakePi(tmp_path).host()
    results = Doctor(cfg, host).run_all()
    names = {r.name for r in results}
    assert "temperature" not in names and "power" not in names
    assert statuses(results, "gpio")[0][0] == OK
    cam = statuses(results, "camera")
    assert cam[0][0] == FAIL and "not a Raspberry Pi" in cam[0][1]


def test_usb_camera_spec(pi):
    fake, cfg = pi
    cfg.source.spec = "/dev/video3"
    assert statuses(Doctor(cfg, fake.host()).run_all(), "camera")[0][0] == FAIL
    cfg.source.spec = "0"
    assert statuses(Doctor(cfg, fake.host()).run_all(), "camera") == [
        (OK, "/dev/video0 is present and can be opened.")]


@pytest.mark.parametrize("alias", ["picam", "picamera2", " picamera "])
def test_camera_check_reads_the_spec_as_the_run_does(pi, tmp_path, alias):
    # doctor reads the spec with edge.capture.sources.parse_source_spec (issue 23): it used to take
    # picam/picamera2, which `doorguard run` opens as the Pi camera, for "not a camera".
    fake, cfg = pi
    cfg.source.spec = alias
    cam = statuses(Doctor(cfg, fake.host()).run_all(), "camera")
    assert cam == [(OK, cam[0][1])] and "found by libcamera" in cam[0][1]
    not_pi = parse(f'[source]\nspec = "{alias}"\n')
    cam = statuses(Doctor(not_pi, FakePi(tmp_path / "x").host()).run_all(), "camera")
    assert cam[0][0] == FAIL and "not a Raspberry Pi" in cam[0][1]


def test_main_prints_lines_and_exits_nonzero_on_fail(pi, tmp_path, capsys):
    fake, cfg = pi
    bad = tmp_path / "bad.toml"
    bad.write_text("[gpio]\nred_ledd = 3\n")

    class Args:
        config = str(bad)

    rc = doctor.main(Args(), host=fake.host())
    out = capsys.readouterr().out
    assert rc == 1
    first = out.splitlines()[0]
    assert first.startswith("FAIL") and "gpio.red_ledd" in first and "check-config" in first
    assert out.rstrip().splitlines()[-1].startswith("doctor: ")


def test_cli_doctor_never_tracebacks(tmp_path, capsys):
    from edge.cli import main

    bad = tmp_path / "c.toml"
    bad.write_text("not toml [")
    rc = main(["doctor", "--config", str(bad)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "Traceback" not in out + err
    assert "not valid TOML" in out


def test_rule_labels_no_model_outputs_are_warned(pi):
    """The default face-only detector with rules for facetouch/person (the old default): WARN,
    each label named (check-config refuses them; issue 17)."""
    fake, cfg = pi
    cfg.rules.alert_on_detector = ["facetouch", "person"]
    cfg.rules.alert_on_classifier = ["nomask"]
    results = Doctor(cfg, fake.host()).run_all()
    rules = statuses(results, "rules")
    assert [s for s, _ in rules] == [WARN, WARN, WARN]
    text = " | ".join(m for _, m in rules)
    assert "'nomask' is not a label of the classifier (labels: mask, no_mask, mask_incorrect)" in text
    assert "'facetouch' is not a label of the detector (labels: face)" in text and "'person'" in text
    cfg.rules.alert_on_detector, cfg.rules.alert_on_classifier = [], ["no_mask"]
    assert statuses(Doctor(cfg, fake.host()).run_all(), "rules")[0][0] == OK


def test_mqtt_password_file_mode(pi, tmp_path):
    import os

    fake, cfg = pi
    pw = tmp_path / "mqtt.pass"
    pw.write_text("secret\n")
    cfg.mqtt.enabled, cfg.mqtt.username, cfg.mqtt.password_file = True, "doorguard", str(pw)
    pw.chmod(0o644)
    (status, msg), = statuses(Doctor(cfg, fake.host()).run_all(), "mqtt")
    assert status == FAIL and "open to every user" in msg and "0644" in msg and f"chmod o-rwx {pw}" in msg
    pw.chmod(0o640)
    os.chown(pw, -1, os.getegid())  # the service's own group: the README's setup
    assert statuses(Doctor(cfg, fake.host()).run_all(), "mqtt")[0][0] == OK
    pw.unlink()
    assert statuses(Doctor(cfg, fake.host()).run_all(), "mqtt")[0][0] == FAIL


def test_night_hint_normal_frames_are_ok(pi):
    fake, cfg = pi
    light = statuses(Doctor(cfg, fake.host()).run_all(), "camera light")
    assert len(light) == 1 and light[0][0] == OK and "5 frames" in light[0][1]
    assert fake.grabbed == ["picamera"]


def test_night_hint_dark_frames_say_what_to_do(pi):
    fake, cfg = pi
    fake.frames = [dark_frame(i) for i in range(5)]
    (status, msg), = statuses(Doctor(cfg, fake.host()).run_all(), "camera light")
    assert status == WARN and "very dark" in msg
    assert "IR illuminator" in msg and "NoIR" in msg and "exposure" in msg


def test_night_hint_grey_frames_say_ir(pi):
    fake, cfg = pi
    fake.frames = [grey_frame(i) for i in range(5)]
    (status, msg), = statuses(Doctor(cfg, fake.host()).run_all(), "camera light")
    assert status == WARN and "near-greyscale" in msg and "IR" in msg


def test_night_hint_needs_every_frame_dark(pi):
    # One lit frame among dark ones (a light switched on, a car passing): not "consistently" dark.
    fake, cfg = pi
    fake.frames = [dark_frame(0), dark_frame(1), normal_frame(2), dark_frame(3)]
    assert statuses(Doctor(cfg, fake.host()).run_all(), "camera light")[0][0] == OK


def test_night_hint_camera_that_cannot_be_read_is_a_warning_not_a_crash(pi):
    fake, cfg = pi
    fake.frames = RuntimeError("Device or resource busy")
    (status, msg), = statuses(Doctor(cfg, fake.host()).run_all(), "camera light")
    assert status == WARN and "busy" in msg and "systemctl stop doorguard" in msg


def test_night_hint_skipped_without_a_camera_or_after_a_camera_failure(pi):
    fake, cfg = pi
    cfg.source.spec = "demo"
    assert statuses(Doctor(cfg, fake.host()).run_all(), "camera light") == []
    cfg.source.spec = "/dev/video3"   # does not exist: FAIL above, no frames tried
    assert statuses(Doctor(cfg, fake.host()).run_all(), "camera light") == []
    assert fake.grabbed == []


def test_frame_light_figures():
    lum, chroma = doctor.frame_light(np.full((8, 8, 3), (200, 100, 0), np.uint8))
    assert lum == pytest.approx(0.299 * 200 + 0.587 * 100, abs=0.01) and chroma == pytest.approx(200)
    assert doctor.frame_light(np.zeros((8, 8, 3), np.uint8)) == (0.0, 0.0)


def test_grab_frames_reads_the_configured_source_after_warm_up(tmp_path):
    # The real seam, on an image-folder source (the same make_source a camera goes through).
    import cv2

    from edge.config import SourceConfig

    for i in range(8):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((24, 32, 3), 10 * i, np.uint8))
    frames = doctor._grab_frames(str(tmp_path), SourceConfig(), 5)
    assert len(frames) == 5 and frames[0].shape == (24, 32, 3)
    assert int(frames[0][0, 0, 0]) == 20   # the first two frames are skipped (auto exposure settling)
