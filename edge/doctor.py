"""``doorguard doctor``: what is wrong with this device, in words a non-expert can act on.

Each check prints ``OK``, ``WARN`` or ``FAIL`` with one sentence saying what was
found and what to do. The exit status is 1 when any check fails.

Checks: config, OS release (Raspberry Pi OS Bookworm or Trixie, with the numpy and OpenCV
that fit it), camera (picamera2, /dev/video*, /dev/media*, /dev/dma_heap and
group video, the camera seen by libcamera), GPIO (pin factory, /dev/gpiochip* and
group gpio, configured pins busy: [gpio] and the [door] relay), interpreter backend, models (manifest +
sha256 + loads + a passed accuracy gate), rules (every rule label is one the models output), the MQTT
password file's mode, state directory writable, and on a Raspberry Pi the CPU
temperature and ``vcgencmd get_throttled`` decoded into words. When the camera
checks pass, a few frames are grabbed from the configured camera and a night
hint is given when they are all very dark or near-greyscale (an IR-lit or
unlit doorway), saying what to do.

Everything the checks touch goes through :class:`Host` (a root directory for
/proc, /sys, /dev, a command runner, the user's groups, importing, opening
devices, claiming pins, loading models), so tests fake a Raspberry Pi on any
machine.
"""

from __future__ import annotations

import argparse
import grp
import importlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import installed
from .pi_health import decode_throttled

OK, WARN, FAIL = "OK", "WARN", "FAIL"

TEMP_WARN_C = 70.0
TEMP_FAIL_C = 80.0  # the Pi 4/5 firmware starts throttling at 80-85 C
MIN_FREE_BYTES = 200 * 1024 * 1024

#: The releases systemd/install.sh installs on and `make test-arm` runs (VERSION_CODENAME ->
#: name, apt's Python, apt's numpy major version). OpenCV >= 4.12 needs numpy 2, so Bookworm's
#: venv has OpenCV 4.11 and Trixie's a later one (pyproject.toml's markers on python_version).
RELEASES = {
    "bookworm": ("Bookworm (Debian 12)", (3, 11), 1),
    "trixie": ("Trixie (Debian 13)", (3, 13), 2),
}
OPENCV_NEEDS_NUMPY2 = (4, 12)
#: night hint: frames grabbed, and the limits under which every one of them counts as dark / grey.
NIGHT_FRAMES = 5
DARK_MEAN_LUMA = 40.0      # of 255: a lit doorway gives 80-160; faces under 40 are mostly missed
GREY_MEAN_CHROMA = 6.0     # mean max(R,G,B) - min(R,G,B): a colour scene gives 20+, an IR-lit one 0-4


@dataclass
class Check:
    """One result line."""

    name: str
    status: str
    message: str


def _run_command(cmd: list[str], timeout: float = 15.0) -> tuple[int, str]:
    """Run a command; (exit status, stdout+stderr). Raises FileNotFoundError when it is not installed."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return 124, f"{cmd[0]} timed out after {timeout:g}s"
    return r.returncode, (r.stdout or "") + (r.stderr or "")


def _user_groups() -> tuple[str, set[str]]:
    user = pwd.getpwuid(os.geteuid()).pw_name
    names = set()
    for gid in {os.getegid(), *os.getgroups()}:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.add(str(gid))
    return user, names


def _claim_input_pin(pin: int) -> None:
    """Claim a pin as a floating input and release it: detects "GPIO busy" without driving anything."""
    from gpiozero import InputDevice

    InputDevice(pin, pull_up=None, active_state=True).close()


def _grab_frames(spec: str, source_cfg: Any, n: int) -> list[Any]:
    """Up to ``n`` RGB frames from the configured source (after two warm-up frames: auto exposure)."""
    from .capture.sources import make_source

    src = make_source(spec, source_cfg)
    src.open()
    try:
        frames = []
        for _ in range(n + 2):
            f = src.read()
            if f is not None:
                frames.append(f)
        return frames[2:] if len(frames) > n else frames
    finally:
        src.close()


def frame_light(rgb: Any) -> tuple[float, float]:
    """(mean luminance, mean chroma) of an RGB uint8 frame, both 0..255.

    Luminance is Rec. 601 Y; chroma is max(R,G,B) - min(R,G,B) per pixel (the
    colour saturation that survives in the dark, unlike HSV's S), averaged.
    Measured on a 4x-subsampled copy: a doctor check, not an exposure meter.
    """
    import numpy as np

    x = np.asarray(rgb)[::4, ::4, :3].astype(np.float32)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    return float(y.mean()), float((x.max(axis=2) - x.min(axis=2)).mean())


def _load_model(path: Path, backend: str | None) -> str:
    from .infer.runtime import load_interpreter

    _, name = load_interpreter(path, num_threads=1, backend=backend)
    return name


@dataclass
class Host:
    """The seams between the checks and the machine (tests replace every one)."""

    root: Path = Path("/")
    run: Callable[[list[str]], tuple[int, str]] = _run_command
    identity: Callable[[], tuple[str, set[str]]] = _user_groups
    import_module: Callable[[str], Any] = importlib.import_module
    can_open: Callable[[Path], bool] = lambda p: os.access(p, os.R_OK | os.W_OK)
    claim_pin: Callable[[int], None] = _claim_input_pin
    load_model: Callable[[Path, str | None], str] = _load_model
    grab_frames: Callable[[str, Any, int], list[Any]] = _grab_frames
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    python: tuple[int, int] = (sys.version_info.major, sys.version_info.minor)

    def path(self, absolute: str) -> Path:
        """A system path (/sys/..., /dev/...) under the root."""
        return self.root / absolute.lstrip("/")

    def glob(self, absolute_pattern: str) -> list[Path]:
        parent, _, pattern = absolute_pattern.rpartition("/")
        d = self.path(parent or "/")
        return sorted(d.glob(pattern)) if d.is_dir() else []


def pi_model(host: Host) -> str | None:
    """The Raspberry Pi model string from the device tree, or None when this is not a Pi."""
    for p in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        f = host.path(p)
        try:
            model = f.read_bytes().rstrip(b"\0").decode(errors="replace").strip()
        except OSError:
            continue
        if model.startswith("Raspberry Pi"):
            return model
    return None


def os_release(host: Host) -> dict[str, str]:
    """The fields of /etc/os-release (else /usr/lib/os-release); empty when neither can be read."""
    for p in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = host.path(p).read_text(errors="replace")
        except OSError:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.lstrip().startswith("#"):
                fields[key.strip()] = value.strip().strip("\"'")
        return fields
    return {}


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split("."):
        digits = p[:len(p) - len(p.lstrip("0123456789"))]
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


class Doctor:
    """Runs the checks against one config and one host."""

    def __init__(self, cfg: Any | None, host: Host | None = None, config_note: Check | None = None,
                 allow_failed_gate: bool = False) -> None:
        self.cfg = cfg
        self.allow_failed_gate = allow_failed_gate or bool(
            getattr(getattr(cfg, "models", None), "allow_failed_gate", False))
        self.host = host or Host()
        self.config_note = config_note
        self.pi = pi_model(self.host)
        self.user, self.groups = self.host.identity()

    # -- helpers ----------------------------------------------------------------------------------

    def _group_hint(self, group: str) -> str:
        if group in self.groups or self.user == "root":
            return f"check the permissions with `ls -l` and that the device belongs to group {group}"
        return (f"user {self.user} is not in group {group}: run `sudo usermod -aG {group} {self.user}` and log "
                f"in again (the doorguard service gets the group from its unit file)")

    def _devices_access(self, name: str, paths: list[Path], group: str, what: str) -> Check | None:
        denied = [p for p in paths if not self.host.can_open(p)]
        if not denied:
            return None
        shown = ", ".join("/" + str(p.relative_to(self.host.root)) for p in denied[:3])
        more = f" and {len(denied) - 3} more" if len(denied) > 3 else ""
        return Check(name, FAIL, f"cannot open {shown}{more} ({what}): {self._group_hint(group)}.")

    def _source_spec(self) -> str:
        try:
            return str(self.cfg.source.spec)
        except AttributeError:
            return "auto"

    # -- checks -----------------------------------------------------------------------------------

    def check_platform(self) -> list[Check]:
        if self.pi:
            return [Check("platform", OK, f"{self.pi}; running as {self.user}.")]
        return [Check("platform", OK, f"not a Raspberry Pi (no device-tree model); running as {self.user}: "
                                      "the Pi-only checks are skipped.")]

    def check_os(self) -> list[Check]:
        """The OS release, and whether the venv's Python, numpy and OpenCV are the ones that fit it."""
        rel = os_release(self.host)
        py = "%d.%d" % tuple(self.host.python)
        if not rel:
            return [Check("os", OK, f"release not checked: no /etc/os-release here; Python {py}.")]
        name = rel.get("PRETTY_NAME") or rel.get("NAME") or "unknown"
        codename = rel.get("VERSION_CODENAME", "")
        versions: dict[str, str | None] = {}
        for label, module in (("numpy", "numpy"), ("OpenCV", "cv2")):
            try:
                versions[label] = getattr(self.host.import_module(module), "__version__", None)
            except Exception as e:  # noqa: BLE001 - OpenCV built for numpy 2 fails to import under 1.x
                fix = ("run `sudo apt install python3-numpy`, then `sudo ./systemd/install.sh` again"
                       if module == "numpy" else
                       "run `sudo ./systemd/install.sh` again: it installs the OpenCV that fits this "
                       "release's numpy (below 4.12 for numpy 1.x)")
                return [Check("os", FAIL, f"{name}, Python {py}: {label} cannot be imported "
                                          f"({type(e).__name__}: {e}): {fix}.")]
        stack = ", ".join([f"Python {py}"] + [f"{k} {v}" for k, v in versions.items() if v])
        if codename not in RELEASES:
            known = " or ".join(f"Raspberry Pi OS {n}" for n, _, _ in RELEASES.values())
            return [Check("os", WARN if self.pi else OK,
                          f"{name} ({stack}) is neither {known}, the releases doorguard is installed on "
                          "and tested for: it may work, but install.sh's numpy and OpenCV choice is "
                          "untested here (OpenCV 4.12 and later need numpy 2).")]
        release, want_py, want_np = RELEASES[codename]
        if not self.pi:
            # A workstation: pip chose numpy and OpenCV together; apt's numpy matters for picamera2 only.
            return [Check("os", OK, f"{name}: {stack} (not a Raspberry Pi: numpy and OpenCV as pip chose them).")]
        problems = []
        if tuple(self.host.python) != want_py:
            problems.append(f"{release} has Python {want_py[0]}.{want_py[1]} but the venv runs {py} "
                            "(make it with the system python3: `sudo ./systemd/install.sh`)")
        np_v, cv_v = versions.get("numpy"), versions.get("OpenCV")
        if np_v and _version_tuple(np_v)[:1] != (want_np,):
            problems.append(f"numpy {np_v} is not apt's {want_np}.x (picamera2 is built against apt's numpy; "
                            "`sudo ./systemd/install.sh` pins the venv to it)")
        if np_v and cv_v and _version_tuple(cv_v)[:2] >= OPENCV_NEEDS_NUMPY2 and _version_tuple(np_v)[:1] < (2,):
            problems.append(f"OpenCV {cv_v} needs numpy 2 but numpy {np_v} is here "
                            "(`sudo ./systemd/install.sh` picks OpenCV below 4.12 on Bookworm)")
        if problems:
            return [Check("os", WARN, f"{name} ({stack}): " + "; ".join(problems) + ".")]
        return [Check("os", OK, f"{name}: {stack}, the combination doorguard is tested with on {release}.")]

    def check_camera(self) -> list[Check]:
        out = self._camera_access()
        if any(c.status == FAIL for c in out) or not self._is_camera():
            return out
        return out + self._night_hint()

    def _is_camera(self) -> bool:
        from .capture.sources import parse_source_spec

        src = parse_source_spec(self._source_spec())
        if src.kind in ("camera", "picamera"):
            return True
        return src.kind == "auto" and (bool(self.pi) or bool(self.host.glob("/dev/video*")))

    def _night_hint(self) -> list[Check]:
        """Grab a few frames; warn when all are very dark or near-greyscale, and say what to do."""
        try:
            frames = self.host.grab_frames(self._source_spec(), getattr(self.cfg, "source", None), NIGHT_FRAMES)
        except Exception as e:  # noqa: BLE001 - a busy or broken camera is reported above, not here
            return [Check("camera light", WARN, f"could not grab frames to check the light ({type(e).__name__}: "
                                                f"{e}); if the doorguard service holds the camera, stop it "
                                                "(`sudo systemctl stop doorguard`) and run doctor again.")]
        if not frames:
            return [Check("camera light", WARN, "the camera opened but gave no frames to check the light.")]
        light = [frame_light(f) for f in frames]
        luma = max(v[0] for v in light)
        chroma = max(v[1] for v in light)
        n = len(frames)
        if luma < DARK_MEAN_LUMA:
            return [Check("camera light", WARN,
                          f"all {n} frames are very dark (mean brightness at most {luma:.0f}/255): faces will be "
                          "missed. Light the doorway, or add an 850 nm IR illuminator with a NoIR camera; "
                          "raise the exposure (picamera2: AeExposureMode long, a higher AnalogueGain / "
                          "ExposureTime; USB: `v4l2-ctl -d /dev/video0 -l` for exposure and gain), and keep "
                          "the shutter at or under 1/fps.")]
        if chroma < GREY_MEAN_CHROMA:
            return [Check("camera light", WARN,
                          f"all {n} frames are near-greyscale (mean colour {chroma:.1f}/255): an IR-lit or "
                          "monochrome picture. Mask colours are lost and the mask classifier errs more (see "
                          "the 'ir' rows of models/mask-classifier.md): light the doorway with visible light "
                          "where you can, or use a camera with a switchable IR-cut filter so it sees colour "
                          "whenever there is light; check the camera is not set to greyscale "
                          "(picamera2 Saturation > 0).")]
        return [Check("camera light", OK, f"{n} frames: brightness up to {luma:.0f}/255, colour up to "
                                          f"{chroma:.0f}/255.")]

    def _camera_access(self) -> list[Check]:
        from .capture.sources import parse_source_spec

        spec = self._source_spec()
        src = parse_source_spec(spec)
        out: list[Check] = []
        if src.kind == "camera":
            node = self.host.path(src.target if isinstance(src.target, str) else f"/dev/video{src.target}")
            shown = "/" + str(node.relative_to(self.host.root))
            if not node.exists():
                return [Check("camera", FAIL, f"{shown} does not exist: plug the USB camera in (check with "
                                              "`ls /dev/video*`) or change [source] spec in the config.")]
            bad = self._devices_access("camera", [node], "video", "USB camera")
            return [bad] if bad else [Check("camera", OK, f"{shown} is present and can be opened.")]
        if src.kind not in ("auto", "picamera"):
            return [Check("camera", OK, f"source is {spec!r} (not a camera): no camera needed.")]
        if not self.pi:
            if src.kind == "picamera":
                return [Check("camera", FAIL, "source is picamera but this is not a Raspberry Pi: use a "
                                              "/dev/videoN, file or demo source here.")]
            nodes = self.host.glob("/dev/video*")
            if nodes:
                bad = self._devices_access("camera", nodes[:1], "video", "camera")
                return [bad] if bad else [Check("camera", OK, f"no Pi camera here; auto uses {nodes[0].name}.")]
            return [Check("camera", WARN, "no Pi camera and no /dev/video* here: `doorguard run` needs "
                                          "--source demo, a video file or an image folder on this machine.")]
        # A Raspberry Pi with the picamera2 stack.
        try:
            self.host.import_module("picamera2")
        except Exception as e:  # ImportError, or libcamera's own errors
            out.append(Check("camera", FAIL, f"picamera2 cannot be imported ({type(e).__name__}: {e}): run "
                                             "`sudo apt install python3-picamera2` and make sure the venv was "
                                             "made with --system-site-packages (make install does both)."))
        media = self.host.glob("/dev/media*")
        video = self.host.glob("/dev/video*")
        heaps = self.host.glob("/dev/dma_heap/*")
        if not media and not video:
            out.append(Check("camera", FAIL, "no /dev/media* or /dev/video* devices: the camera driver is not "
                                             "loaded; check camera_auto_detect=1 in /boot/firmware/config.txt "
                                             "and reboot."))
        for bad in (self._devices_access("camera", media + video, "video", "camera devices"),
                    self._devices_access("camera", heaps, "video", "camera buffers in /dev/dma_heap")):
            if bad:
                out.append(bad)
        out.extend(self._list_cameras())
        return out

    def _list_cameras(self) -> list[Check]:
        for tool in ("rpicam-hello", "libcamera-hello"):
            try:
                rc, text = self.host.run([tool, "--list-cameras"])
            except FileNotFoundError:
                continue
            cams = [line.strip() for line in text.splitlines() if line.strip()[:1].isdigit() and " : " in line]
            if cams:
                names = ", ".join(c.split(" : ", 1)[1].split(" ")[0] for c in cams)
                return [Check("camera", OK, f"{len(cams)} camera(s) found by libcamera: {names}.")]
            if "busy" in text.lower():
                return [Check("camera", WARN, "the camera is busy: another program (the doorguard service?) "
                                              "is using it; `sudo systemctl stop doorguard` and run doctor again.")]
            return [Check("camera", FAIL, "no camera detected. Power the Pi off, reseat the ribbon cable at "
                                          "both ends (contacts facing the right way, latch closed; a Pi 5 "
                                          "needs the narrow 22-pin cable), check camera_auto_detect=1 in "
                                          "/boot/firmware/config.txt, and power on again.")]
        return [Check("camera", WARN, "cannot list cameras: rpicam-apps is not installed "
                                      "(`sudo apt install rpicam-apps` to let doctor check the cable).")]

    def _gpio_pins(self) -> dict[str, int]:
        """Every configured pin by role: the [gpio] outputs and button, and the [door] relay (edge/act/door.py)."""
        gpio = getattr(self.cfg, "gpio", None)
        pins = {} if gpio is None else {k: v for k in ("red_led", "green_led", "buzzer", "mute_button")
                                        if (v := getattr(gpio, k, None)) is not None}
        relay = getattr(getattr(self.cfg, "door", None), "relay_pin", None)
        if relay is not None:
            pins["door_relay"] = relay
        return pins

    @staticmethod
    def _pin_key(name: str) -> str:
        """Where the pin of a role is set: ``[gpio] buzzer``, ``[door] relay_pin``."""
        return "[door] relay_pin" if name == "door_relay" else f"[gpio] {name}"

    def check_gpio(self) -> list[Check]:
        factory = self.host.env.get("GPIOZERO_PIN_FACTORY", "")
        if not self.pi:
            if factory and factory != "mock":
                return [Check("gpio", WARN, f"GPIOZERO_PIN_FACTORY={factory} but this is not a Raspberry Pi: "
                                            "unset it, doorguard uses mock pins here.")]
            return [Check("gpio", OK, "not a Raspberry Pi: `doorguard run` drives gpiozero's mock pins "
                                      "(pin activity in the log).")]
        out: list[Check] = []
        pi5 = "Raspberry Pi 5" in self.pi
        try:
            self.host.import_module("lgpio")
        except Exception:
            out.append(Check("gpio", FAIL if pi5 else WARN,
                             "lgpio is missing" + (" (the only pin factory that works on a Pi 5)" if pi5 else "")
                             + ": run `sudo apt install python3-lgpio` (make install does it)."))
        if factory and factory not in ("lgpio", "mock") and pi5:
            out.append(Check("gpio", FAIL, f"GPIOZERO_PIN_FACTORY={factory} does not work on a Pi 5: "
                                           "unset it or set it to lgpio."))
        chips = self.host.glob("/dev/gpiochip*")
        if not chips:
            out.append(Check("gpio", FAIL, "no /dev/gpiochip* devices: this kernel has no GPIO character "
                                           "device; update Raspberry Pi OS (`sudo apt full-upgrade`)."))
            return out
        bad = self._devices_access("gpio", chips, "gpio", "GPIO")
        if bad:
            out.append(bad)
            return out
        pins = self._gpio_pins()
        if self._service_active():
            out.append(Check("gpio", OK, "the doorguard service is running and holds the pins "
                                         f"({', '.join(f'{k}=GPIO{v}' for k, v in pins.items())})."))
            return out
        for name, pin in pins.items():
            try:
                self.host.claim_pin(pin)
            except Exception as e:  # gpiozero/lgpio raise many kinds
                text = f"{type(e).__name__}: {e}"
                if "busy" in text.lower() or "in use" in text.lower():
                    out.append(Check("gpio", FAIL, f"GPIO{pin} ({name}) is in use by another program: stop "
                                                   f"it, or choose a free pin for {self._pin_key(name)}."))
                else:
                    out.append(Check("gpio", FAIL, f"cannot claim GPIO{pin} ({name}): {text}."))
        if not any(c.status != OK for c in out):
            out.append(Check("gpio", OK, "pin factory available; pins free: "
                                         + (", ".join(f"{k}=GPIO{v}" for k, v in pins.items()) or "none set")
                                         + "."))
        return out

    def _service_active(self) -> bool:
        try:
            rc, text = self.host.run(["systemctl", "is-active", "doorguard.service"])
        except FileNotFoundError:
            return False
        return rc == 0 and text.strip() == "active"

    def _backend_pref(self) -> str | None:
        b = getattr(getattr(self.cfg, "models", None), "backend", "auto")
        return None if b in (None, "auto") else b

    def check_interpreter(self) -> list[Check]:
        from .errors import ModelError
        from .infer.runtime import available_backend

        try:
            name = available_backend(self._backend_pref())
        except ModelError as e:
            return [Check("interpreter", FAIL, f"{e}.")]
        if name == "litert":
            return [Check("interpreter", OK, "ai-edge-litert (XNNPACK int8 kernels).")]
        if name == "tflite_runtime":
            # make bench-arm: a frame of the default pipeline costs 1.7-2.2x (Pi 4) and 3.2x (Pi 5) the instructions.
            return [Check("interpreter", WARN, "using tflite-runtime: it has no XNNPACK int8 kernels, so a frame "
                                               "costs 1.7-3.2x the CPU of ai-edge-litert; `pip install ai-edge-litert` "
                                               "in the venv.")]
        return [Check("interpreter", WARN if self.pi else OK,
                      "using tensorflow's tf.lite (workstation fallback); on a Pi install ai-edge-litert.")]

    def _model_paths(self) -> list[tuple[str, Path]]:
        models = getattr(self.cfg, "models", None)
        if models is not None and hasattr(self.cfg, "resolve"):
            out = [("detector", self.cfg.resolve(models.detector))]
            if models.classifier:
                out.append(("classifier", self.cfg.resolve(models.classifier)))
                out += [("classifier", self.cfg.resolve(p)) for p in getattr(models, "extra_classifiers", [])]
            touch = getattr(self.cfg, "facetouch", None)
            if touch is not None and touch.enabled:
                out.append(("hand detector", self.cfg.resolve(touch.hand_detector)))
            return out
        # No config module: the default models shipped in models/.
        from .manifest import manifest_paths

        base = Path(__file__).resolve().parent.parent / "models"
        return [(p.stem, p) for p in manifest_paths(base)]

    def check_models(self) -> list[Check]:
        from .errors import DoorguardError
        from .manifest import GATE_OVERRIDE, gate_problem, load_manifest

        paths = self._model_paths()
        if not paths:
            return [Check("models", FAIL, "no model manifests found in models/: run `make models` on a "
                                          "workstation, then deploy again.")]
        out = []
        for role, path in paths:
            try:
                m = load_manifest(path, verify_hash=True)
                backend = self.host.load_model(m.tflite_path(Path(path)), self._backend_pref())
            except DoorguardError as e:
                out.append(Check("models", FAIL, f"{role}: {str(e).rstrip('.')}. Copy the models again (`make deploy` from "
                                                 "the workstation, or `make install` on the Pi), or rebuild "
                                                 "them with `make models`."))
                continue
            except Exception as e:  # noqa: BLE001 - an interpreter that crashes on the file is a broken model
                out.append(Check("models", FAIL, f"{role}: {path} does not load ({type(e).__name__}: {e}); "
                                                 "copy the models again."))
                continue
            gate = gate_problem(m, path)
            if gate and not self.allow_failed_gate:
                out.append(Check("models", FAIL, f"{role}: {gate}: run refuses it (exit 4); re-convert or "
                                                 f"retrain it, or set {GATE_OVERRIDE} to run it anyway."))
                continue
            if gate:
                out.append(Check("models", WARN, f"{role}: {gate}; allowed by models.allow_failed_gate / "
                                                 "--allow-failed-gate, so run uses it."))
                continue
            out.append(Check("models", OK, f"{role} {m.name}: {m.task}, {m.input.width}x{m.input.height} "
                                           f"{m.input.dtype}, sha256 matches, loads with {backend}."))
        return out

    def check_rules(self) -> list[Check]:
        """Rule labels no configured model outputs (check-config refuses them; run only warns)."""
        cfg = self.cfg
        if cfg is None or not hasattr(cfg, "rules") or not hasattr(cfg, "resolve"):
            return []
        from .config import rule_label_problems
        from .errors import DoorguardError
        from .manifest import load_manifest

        try:
            det = load_manifest(cfg.resolve(cfg.models.detector), verify_hash=False)
            clf = load_manifest(cfg.resolve(cfg.models.classifier), verify_hash=False) \
                if cfg.models.classifier else None
        except DoorguardError:
            return []  # the models check says what is wrong with them
        problems = rule_label_problems(cfg, det.labels, clf.labels if clf is not None else None)
        if not problems:
            return [Check("rules", OK, "every label in [rules] is one the models output.")]
        return [Check("rules", WARN, f"{p}; fix the config (`doorguard check-config` refuses it).")
                for p in problems]

    def check_mqtt(self) -> list[Check]:
        """The MQTT password file exists and is not open to every user."""
        mqtt = getattr(self.cfg, "mqtt", None)
        if mqtt is None or not mqtt.enabled or not mqtt.password_file:
            return []
        from .act.mqtt.client import password_file_problem

        path = Path(mqtt.password_file).expanduser()
        if not path.is_file():
            return [Check("mqtt", FAIL, f"password_file {path} does not exist: write it (README, MQTT) or "
                                        "remove [mqtt] password_file.")]
        problem = password_file_problem(path)
        if problem is None:
            return [Check("mqtt", OK, f"password file {path} is not readable by other users.")]
        return [Check("mqtt", FAIL if problem[0] == "error" else WARN, f"password_file {problem[1]}.")]

    def _state_dir(self) -> Path:
        if self.cfg is not None and hasattr(self.cfg, "events") and self.cfg.events.state_dir:
            return Path(self.cfg.events.state_dir).expanduser()
        env = self.host.env.get("STATE_DIRECTORY", "").strip()
        if env:
            return Path(env.split(":")[0])
        unit_dir = self.host.path(str(installed.STATE_DIR))
        return unit_dir if unit_dir.is_dir() else Path("state")

    def check_state_dir(self) -> list[Check]:
        d = self._state_dir().absolute()
        if not d.exists():
            parent = next((p for p in d.parents if p.exists()), Path("/"))
            if os.access(parent, os.W_OK):
                return [Check("state dir", OK, f"{d} does not exist yet; doorguard will create it.")]
            return [Check("state dir", FAIL, f"{d} does not exist and {parent} is not writable: create it "
                                             f"(`sudo install -d -o doorguard {d}`) or set events.state_dir.")]
        try:
            with tempfile.NamedTemporaryFile(dir=d, prefix=".doctor-"):
                pass
        except OSError as e:
            return [Check("state dir", FAIL, f"cannot write in {d} ({e.strerror or e}): run doctor as the "
                                             f"service user (`sudo -u doorguard doorguard doctor`) or fix the "
                                             f"owner (`sudo chown -R doorguard: {d}`); a read-only SD card "
                                             "needs replacing.")]
        free = shutil.disk_usage(d).free
        if free < MIN_FREE_BYTES:
            return [Check("state dir", WARN, f"{d} is writable but only {free // 2**20} MB are free: delete "
                                             "old files or use a larger SD card (snapshots stop when full).")]
        return [Check("state dir", OK, f"{d} is writable, {free // 2**20} MB free.")]

    def check_temperature(self) -> list[Check]:
        """The SoC's temperature (on a Pi only: ``run_all``)."""
        f = self.host.path("/sys/class/thermal/thermal_zone0/temp")
        try:
            c = int(f.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            return [Check("temperature", WARN, "cannot read the CPU temperature from "
                                               "/sys/class/thermal/thermal_zone0/temp.")]
        if c >= TEMP_FAIL_C:
            return [Check("temperature", FAIL, f"CPU at {c:.1f} C: the Pi is slowing itself down. Give it a "
                                               "heatsink or fan (Pi 5: the Active Cooler) and keep its case "
                                               "out of the sun.")]
        if c >= TEMP_WARN_C:
            return [Check("temperature", WARN, f"CPU at {c:.1f} C: close to throttling at {TEMP_FAIL_C:.0f} C; "
                                               "add a heatsink or fan.")]
        return [Check("temperature", OK, f"CPU at {c:.1f} C.")]

    def check_throttling(self) -> list[Check]:
        """Under-voltage and throttling now and since boot, from ``vcgencmd get_throttled`` (on a Pi only)."""
        try:
            rc, text = self.host.run(["vcgencmd", "get_throttled"])
        except FileNotFoundError:
            return [Check("power", WARN, "vcgencmd is missing, so power problems cannot be checked: "
                                         "`sudo apt install libraspberrypi-bin`.")]
        value = None
        if rc == 0 and "=" in text:
            try:
                value = int(text.strip().split("=", 1)[1], 0)
            except ValueError:
                value = None
        if value is None:
            return [Check("power", WARN, f"vcgencmd get_throttled failed ({text.strip()[:80]}): "
                                         f"{self._group_hint('video')}.")]
        now, past = decode_throttled(value)
        if "under-voltage" in now:
            return [Check("power", FAIL, f"under-voltage right now (get_throttled={value:#x}: "
                                         f"{', '.join(now)}): use the official power supply (5V 3A for a Pi 4, "
                                         "5V 5A for a Pi 5) and a short, thick cable.")]
        if now:
            return [Check("power", FAIL, f"{', '.join(now)} right now (get_throttled={value:#x}): the Pi is "
                                         "running slower than it can; cool it (heatsink/fan) and check the "
                                         "power supply.")]
        if past:
            return [Check("power", WARN, f"since boot: {', '.join(past)} (get_throttled={value:#x}); not now. "
                                         + ("Check the power supply and cable." if "under-voltage" in past
                                            else "Improve cooling."))]
        return [Check("power", OK, "no under-voltage or throttling since boot.")]

    def run_all(self) -> list[Check]:
        """Every check, in the order they are printed."""
        results: list[Check] = []
        if self.config_note:
            results.append(self.config_note)
        checks = [self.check_platform, self.check_os, self.check_camera, self.check_gpio, self.check_interpreter,
                  self.check_models, self.check_rules, self.check_mqtt, self.check_state_dir]
        if self.pi:  # the SoC's thermal zone and vcgencmd: only a Pi has them
            checks += [self.check_temperature, self.check_throttling]
        for check in checks:
            try:
                results.extend(check())
            except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
                name = check.__name__.removeprefix("check_").replace("_", " ")
                results.append(Check(name, FAIL, f"the check itself failed ({type(e).__name__}: {e}); "
                                                 "run with --debug and report it."))
        return results


def load_config(path: str | None, host: Host) -> tuple[Any | None, Check]:
    """The config to check against (given path, else the installed one, else the default) and a result line."""
    try:
        from . import config as config_mod
    except ImportError:
        return None, Check("config", WARN, "edge.config is not available: checking the default models in models/.")
    from .errors import ConfigError

    target = installed.config_file(path, host.path(str(installed.CONFIG)))
    try:
        cfg = config_mod.load(target)
    except ConfigError as e:
        return config_mod.load(None), Check(
            "config", FAIL, f"{e}. Fix it (`doorguard check-config FILE` lists every problem); the other "
                            "checks use the default config.")
    where = target or "the built-in default config"
    return cfg, Check("config", OK, f"{where} is valid.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard doctor``."""
    installed.add_config_argument(parser)
    parser.add_argument("--allow-failed-gate", action="store_true",
                        help="a model whose manifest records a failed accuracy gate is a WARN, not a FAIL "
                             "(as run --allow-failed-gate)")


def _writable_lg_wd() -> None:
    # lgpio creates notification pipes in the working directory (or $LG_WD) when it is
    # imported; `sudo -u doorguard doorguard doctor` often runs from a directory that user
    # cannot write, which would make the GPIO check fail for the wrong reason.
    if os.environ.get("LG_WD") or os.access(os.getcwd(), os.W_OK):
        return
    for d in ("/run/doorguard", tempfile.gettempdir()):
        if os.access(d, os.W_OK):
            os.environ["LG_WD"] = d
            return


def main(args: argparse.Namespace, host: Host | None = None) -> int:
    """Print one line per check; exit 1 when any check FAILs."""
    if host is None:
        _writable_lg_wd()
        host = Host()
    cfg, note = load_config(getattr(args, "config", None), host)
    results = Doctor(cfg, host, note, allow_failed_gate=getattr(args, "allow_failed_gate", False)).run_all()
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{r.status:<4}  {r.name:<{width}}  {r.message}")
    fails = sum(r.status == FAIL for r in results)
    warns = sum(r.status == WARN for r in results)
    print(f"doctor: {fails} FAIL, {warns} WARN, {len(results) - fails - warns} OK")
    return 1 if fails else 0
