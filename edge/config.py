"""The doorguard configuration: one TOML file validated by pydantic models.

Every section forbids unknown keys (a typo is an error, not a silently ignored
setting) and every field carries a description, which is also what the
commented example ``config.example.toml`` says. The sections are in edge/settings/ (one
module each, importing nothing of the runtime); this module puts them together in
:class:`Config`. ``load(path)`` returns a :class:`Config`; errors name the key path and,
where it can be found, the line.

``doorguard check-config PATH`` validates a file and what it names (every model
loads, every rule label is one a configured model can output, the MQTT password
file is not readable by everyone) and exits 0 (valid) or 1.
Without ``--config``, ``doorguard run`` uses the embedded ``edge/default.toml``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from .errors import ConfigError

# Every section lives in edge/settings/ (which imports nothing of the runtime); import a section's
# classes from there (``from edge.settings.motion import MotionConfig``).
from .settings.arming import ArmingConfig
from .settings.base import _Section
from .settings.door import DoorConfig
from .settings.events import EventsConfig
from .settings.facetouch import FACETOUCH, FaceTouchConfig
from .settings.gpio import GpioConfig
from .settings.models import ModelsConfig
from .settings.motion import MotionConfig
from .settings.mqtt import MqttConfig
from .settings.rules import RulesConfig
from .settings.source import SourceConfig
from .settings.tracking import TrackingConfig
from .settings.web import WebConfig
from .settings.zones import MAX_POLYGONS, PrivacyConfig, ZoneConfig, check_frame, known_frame_size

#: Project root (the directory holding edge/ and models/): relative paths in the
#: embedded default config resolve against it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Config(_Section):
    """The whole doorguard configuration file."""

    models: ModelsConfig = Field(default_factory=ModelsConfig, description="[models] section")
    source: SourceConfig = Field(default_factory=SourceConfig, description="[source] section")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="[tracking] section")
    rules: RulesConfig = Field(default_factory=RulesConfig, description="[rules] section")
    events: EventsConfig = Field(default_factory=EventsConfig, description="[events] section")
    motion: MotionConfig = Field(default_factory=MotionConfig, description="[motion] section (edge/capture/motion.py)")
    gpio: GpioConfig = Field(default_factory=GpioConfig, description="[gpio] section (edge/act/actuators.py)")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="[mqtt] section (edge/act/mqtt/), off by default")
    web: WebConfig = Field(default_factory=WebConfig, description="[web] section (edge/act/web/), off by default")
    facetouch: FaceTouchConfig = Field(
        default_factory=FaceTouchConfig, description="[facetouch] section (edge/decide/facetouch.py), off by default")
    arming: ArmingConfig = Field(
        default_factory=ArmingConfig, description="[arming] section (edge/decide/arming.py): default state, schedules")
    door: DoorConfig = Field(
        default_factory=DoorConfig, description="[door] section (edge/act/door.py): optional door relay, off by default")
    zones: list[ZoneConfig] = Field(
        default_factory=list, max_length=MAX_POLYGONS,
        description="[[zones]] tables (edge/decide/zones.py): where faces count; none: the whole frame")
    privacy: PrivacyConfig = Field(
        default_factory=PrivacyConfig, description="[privacy] section (edge/decide/zones.py): masks, blurring")

    # Not part of the file: where relative paths in it resolve from.
    base_dir: Path = Field(PROJECT_ROOT, exclude=True, description="Directory relative paths resolve against")

    @field_validator("door")
    @classmethod
    def _door_pin_free(cls, door: DoorConfig, info: ValidationInfo) -> DoorConfig:
        gpio = info.data.get("gpio")
        if door.relay_pin is not None and gpio is not None:
            for name in ("red_led", "green_led", "buzzer", "mute_button"):
                if getattr(gpio, name) == door.relay_pin:
                    raise ValueError(f"relay_pin {door.relay_pin} is also gpio.{name}")
        return door

    def resolve(self, path: str | os.PathLike) -> Path:
        """A path from the file: absolute as is, relative against ``base_dir``.

        Relative paths are tried against the config file's directory first and
        then the project root (so ``models/...`` works from a checkout).
        """
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        first = self.base_dir / p
        if first.exists():
            return first
        fallback = PROJECT_ROOT / p
        return fallback if fallback.exists() else first

    def state_dir(self) -> Path:
        """The state directory: config, else $STATE_DIRECTORY (first entry), else ./state."""
        if self.events.state_dir:
            return Path(self.events.state_dir).expanduser()
        env = os.environ.get("STATE_DIRECTORY", "").strip()
        if env:
            # systemd passes a colon-separated list when several are configured.
            return Path(env.split(":")[0])
        return Path("state")


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number (1-based) of a key path in TOML text.

    tomllib gives no positions, so this walks table headers and ``key =``
    lines; good enough to point a person at the right place. An index after
    an array of tables (``zones.1.points``) picks that ``[[zones]]`` entry;
    other indices (an item of a list value) point at the list's line.
    """
    header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    assign = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")

    def split(name: str) -> list[str]:
        return [k.strip().strip("\"'") for k in name.split(".")]

    lines = text.splitlines()
    arrays = {tuple(split(m.group(2))) for m in map(header.match, lines) if m and m.group(1) == "[["}
    keys: list[str] = []
    for p in loc:
        if not isinstance(p, int) and not (isinstance(p, str) and p.isdigit()):
            keys.append(str(p))
        elif tuple(k.split("#")[0] for k in keys) in arrays:
            keys[-1] = f"{keys[-1]}#{p}"  # the p-th [[table]] of that name
    if not keys:
        return None
    table: list[str] = []
    seen: dict[tuple[str, ...], int] = {}
    best: int | None = None
    for no, line in enumerate(lines, 1):
        m = header.match(line)
        if m:
            table = split(m.group(2))
            if m.group(1) == "[[":
                base = tuple(table)
                n = seen[base] = seen.get(base, -1) + 1
                table[-1] = f"{table[-1]}#{n}"
            else:  # [a.b] inside the current [[a]] entry: a#k.b
                table = [f"{k}#{seen[tuple(table[:i + 1])]}" if tuple(table[:i + 1]) in seen else k
                         for i, k in enumerate(table)]
            if table == keys[: len(table)] and best is None and len(table) == len(keys):
                best = no
            continue
        m = assign.match(line)
        if m:
            key = table + split(m.group(1))
            if key == keys[: len(key)] and len(key) >= 1:
                # Deepest match wins: a.b.c beats a.b.
                if key == keys:
                    return no
                best = best or no
    return best


def _format_errors(e: ValidationError, text: str, where: str) -> str:
    parts = []
    for err in e.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(root)"
        line = _line_of(text, loc)
        at = f" (line {line})" if line else ""
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{path}{at}: {msg}")
    more = f" (+{len(parts) - 1} more)" if len(parts) > 1 else ""
    return f"{where}: {parts[0]}{more}"


_TOO_DEEP = "nested too deeply (arrays or inline tables inside each other hundreds of levels deep)"


def _load_toml(text: str, where: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from e
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise ConfigError(f"{where}: not valid TOML: {_TOO_DEEP}") from None


def _validate(raw: dict, where: str) -> Config:
    try:
        return Config.model_validate(raw)
    except RecursionError:
        raise ConfigError(f"{where}: {_TOO_DEEP}") from None


def parse(text: str, where: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate TOML text into a Config.

    Raises:
        ConfigError: not TOML, nested too deeply, or a key is unknown/invalid (message
            names the key path and line).
    """
    raw = _load_toml(text, where)
    try:
        cfg = _validate(raw, where)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, text, where)) from e
    if base_dir is not None:
        cfg.base_dir = base_dir
    return cfg


def all_errors(text: str, where: str = "<config>") -> list[str]:
    """Every problem in a config text, one line each (empty when valid).

    Only the text itself: :func:`model_problems` checks what it names.
    """
    try:
        raw = _load_toml(text, where)
        _validate(raw, where)
    except ConfigError as e:
        return [str(e)]
    except ValidationError as e:
        out = []
        for err in e.errors():
            loc = tuple(err["loc"])
            line = _line_of(text, loc)
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            out.append(f"{where}: {'.'.join(map(str, loc)) or '(root)'}"
                       f"{f' (line {line})' if line else ''}: {msg}")
        return out
    return []


def rule_label_problems(cfg: Config, detector_labels: list[str],
                        classifier_labels: list[str] | None) -> list[str]:
    """Rule labels no configured model can output: settings that silently never fire.

    Args:
        cfg: the config.
        detector_labels: the detector manifest's labels.
        classifier_labels: the labels of every configured classifier, None without a classifier.

    Returns:
        One line per problem, starting with the key path (``rules.alert_on_classifier: ...``);
        empty when every label can be output. ``check-config`` makes them errors, ``run``
        and ``doctor`` warnings.
    """
    def fold(labels) -> dict[str, str]:
        return {lab.casefold(): lab for lab in labels}

    det = fold(detector_labels)
    classify = fold(cfg.models.classify_labels)
    out = []
    shown_det = ", ".join(detector_labels)
    if classifier_labels is not None:
        for lab in cfg.models.classify_labels:
            if lab.casefold() not in det:
                out.append(f"models.classify_labels: {lab!r} is not a label of the detector (labels: {shown_det}): "
                           "no box ever reaches the classifier through it")
        clf = fold(classifier_labels)
        shown = ", ".join(classifier_labels)
        for key in ("alert_on_classifier", "compliant_on_classifier"):
            for lab in getattr(cfg.rules, key):
                if lab.casefold() not in clf:
                    out.append(f"rules.{key}: {lab!r} is not a label of the classifier (labels: {shown}): "
                               "it never fires")
    else:
        for key in ("alert_on_classifier", "compliant_on_classifier"):
            for lab in getattr(cfg.rules, key):
                out.append(f"rules.{key}: {lab!r} needs a classifier, and models.classifier is empty: it "
                           "never fires (make the list empty)")
    touch = cfg.facetouch.enabled
    for lab in cfg.rules.alert_on_detector:
        if touch and lab.casefold() == FACETOUCH:
            continue  # the face-touch check (hand detector) outputs it
        if lab.casefold() not in det:
            out.append(f"rules.alert_on_detector: {lab!r} is not a label of the detector (labels: {shown_det}): "
                       "it never fires")
        elif lab.casefold() in classify and classifier_labels is not None:
            out.append(f"rules.alert_on_detector: {lab!r} is in models.classify_labels, so its boxes go to the "
                       "classifier and this rule never fires")
    if touch and FACETOUCH not in {lab.casefold() for lab in cfg.rules.alert_on_detector}:
        out.append(f"rules.alert_on_detector: lacks {FACETOUCH!r} while facetouch.hand_detector is set: the "
                   "face-touch check runs and never alerts")
    if not cfg.rules.alert_on_classifier and not cfg.rules.alert_on_detector:
        out.append("rules: alert_on_classifier and alert_on_detector are both empty: the alarm never sounds")
    return out


def model_problems(cfg: Config) -> list[str]:
    """What ``run`` would refuse or never act on, found by loading what the config names.

    Every configured model is built as ``run`` builds it (manifest, sha256, interpreter,
    tensors against the manifest); then :func:`rule_label_problems`; then the MQTT
    password file's mode.

    Returns:
        One line per problem, starting with the key path; empty when all is well.
    """
    from .errors import DoorguardError
    from .infer.models import Classifier, Detector

    out: list[str] = []
    backend = None if cfg.models.backend == "auto" else cfg.models.backend
    loaded: dict[str, Any] = {}
    from .infer.ssd import SsdDetector

    wanted = [("models.detector", Detector, cfg.models.detector),
              ("models.classifier", Classifier, cfg.models.classifier)]
    if cfg.models.classifier:
        wanted += [("models.extra_classifiers", Classifier, p) for p in cfg.models.extra_classifiers]
    if cfg.facetouch.enabled:
        wanted.append(("facetouch.hand_detector", SsdDetector, cfg.facetouch.hand_detector))
    failed = False
    for key, cls, name in wanted:
        if not name:
            continue
        try:
            loaded.setdefault(key, []).append(cls(cfg.resolve(name), num_threads=1, backend=backend))
        except DoorguardError as e:
            failed = True
            out.append(f"{key}: {e}")
    if not failed:
        classifiers = loaded.get("models.classifier", []) + loaded.get("models.extra_classifiers", [])
        out += rule_label_problems(cfg, loaded["models.detector"][0].manifest.labels,
                                   [lab for c in classifiers for lab in c.manifest.labels] if classifiers else None)
    if cfg.mqtt.enabled and cfg.mqtt.password_file:
        from .act.mqtt.client import password_file_problem

        problem = password_file_problem(Path(cfg.mqtt.password_file).expanduser())
        if problem is not None and problem[0] == "error":
            out.append(f"mqtt.password_file: {problem[1]}")
    return out


def zone_problems(cfg: Config, frame_size: tuple[int, int] | None = None) -> list[str]:
    """Zone and mask corners outside the frame, when its size is known.

    Args:
        cfg: the config (each polygon's own geometry is already checked by the models).
        frame_size: (width, height) of the frames; None: a camera's ``[source]`` width x height,
            else unknown (files, folders, the demo) and nothing to check.

    Returns:
        One line per polygon with corners outside, starting with the key path.
    """
    size = frame_size or known_frame_size(cfg.source)
    return check_frame(cfg.zones, cfg.privacy.masks, *size) if size else []


def default_text() -> str:
    """The embedded default configuration (edge/default.toml)."""
    return resources.files("edge").joinpath("default.toml").read_text(encoding="utf-8")


def load(path: str | os.PathLike | None = None) -> Config:
    """Read and validate a config file; None gives the embedded default.

    Relative paths in a file resolve against the file's directory (then the
    project root); in the embedded default, against the project root.

    Raises:
        ConfigError: missing/unreadable file, bad TOML, or invalid keys.
    """
    if path is None:
        return parse(default_text(), "default config (edge/default.toml)", PROJECT_ROOT)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} is unreadable: {e}") from e
    return parse(text, str(p), p.resolve().parent)


# ---- doorguard check-config ---------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard check-config``."""
    parser.add_argument("path", help="config TOML file to validate")


def main(args: argparse.Namespace) -> int:
    """Validate a config file and what it names: print every problem, exit 0 when valid, else 1.

    The zones the web page saved to the state directory (``<state dir>/zones.toml``,
    edge/act/web/zone_overlay.py) replace the file's zones and masks, as in ``run``, and are checked too.
    """
    p = Path(args.path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"doorguard: error: cannot read config {p}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return 1
    errors = all_errors(text, str(p))
    overlay = None
    if not errors:
        from .act.web import zone_overlay

        cfg = parse(text, str(p), p.resolve().parent)
        try:
            cfg, overlay = zone_overlay.apply(cfg)
        except ConfigError as e:
            errors.append(str(e))
        else:
            # Zone problems are in the overlay when there is one: name it and its line.
            zones_at = (overlay, overlay.read_text(encoding="utf-8")) if overlay is not None else (p, text)
            for where, src, problems in (zones_at + (zone_problems(cfg),), (p, text, model_problems(cfg))):
                for problem in problems:
                    key = problem.split(":", 1)[0]
                    line = _line_of(src, tuple(key.split(".")))
                    errors.append(f"{where}: {key}{f' (line {line})' if line else ''}:{problem.split(':', 1)[1]}")
    if errors:
        for line in errors:
            print(line, file=sys.stderr)
        return 1
    print(f"{p}: ok" + (f" (zones and privacy masks from {overlay})" if overlay is not None else ""))
    return 0
