"""``doorguard run``: the doorway loop.

    FrameSource (capture thread) -> Pipeline (privacy masks, motion gate, detector on the
        lores view or the frame, zones, tracker, then per-track votes: crop -> classifiers,
        hands) -> Rules -> arming (armed / muted / disarmed) -> Actuators (never block),
        door relay, EventStore (SQLite), MQTT, web live view [+ --annotate video]

(DESIGN.md has the whole flow with the module of each step.)

Start-up order fails fast with distinct exit codes (edge/errors.py): config (3),
source spec (2), state directory (6), models (4), GPIO (7), camera (5). READY
goes to systemd after the first frame went through the models, and after every
processed frame the watchdog is fed,
so a stuck loop or a lost camera lets systemd restart the service.
SIGTERM/SIGINT end the loop; outputs are switched off and a summary printed
(frames, FPS, dropped frames, per-stage latency percentiles, events by verdict).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import config as config_mod
from .errors import DoorguardError, ModelRuntimeError, UsageError
from .types import Event, Verdict

log = logging.getLogger("doorguard.run")

#: Frames in a row the models may fail on before the run stops (a real model fault, not a glitch).
MAX_MODEL_FAILURES = 25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard run``."""
    parser.add_argument("--config", metavar="PATH", help="config TOML (default: the embedded edge/default.toml)")
    parser.add_argument("--source", metavar="SPEC",
                        help="picamera | /dev/videoN | N | video file | rtsp://... | image folder | demo "
                             "(default: [source] spec of the config)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames")
    parser.add_argument("--annotate", metavar="OUT.mp4", help="write a video with boxes, labels and verdicts")
    parser.add_argument("--allow-failed-gate", action="store_true",
                        help="run a model whose manifest records a failed accuracy gate "
                             "(same as models.allow_failed_gate = true)")


@dataclass
class RunParts:
    """What one run is made of: built by :meth:`Runner.build_parts` and :meth:`Runner._start`
    (the composition root), used by the loop, closed by :meth:`close`.

    Attributes:
        source, pipeline, rules, store, writer, capture_cls, state_dir, notifier: from start-up.
        actuators, publisher, web, live, capture: started by ``Runner._start`` (None until then,
            or when off in the config).
        fault: the camera needed retries while opening (the fault LED is on).
        verdicts: track id -> the verdict shown for it (annotated video, web overlay).
    """

    source: Any
    pipeline: Any
    rules: Any
    store: Any
    writer: Any
    capture_cls: Any
    state_dir: Path
    notifier: Any
    actuators: Any = None
    publisher: Any = None
    web: Any = None
    live: Any = None
    capture: Any = None
    arming: Any = None
    door: Any = None
    hass: Any = None
    fault: bool = False
    verdicts: dict = field(default_factory=dict)

    def close(self, outputs_off: Callable[[], None] | None = None) -> None:
        """Outputs off first (stopping a hung camera can take seconds: Capture.stop joins its
        thread for up to 5 s, and systemctl stop must silence the buzzer now), then the camera,
        the web page, MQTT (may wait ~2 s for the last PUBACKs), the video and the store."""
        if self.door is not None:
            self.door.close()  # the door locks first
        if self.actuators is not None:
            self.actuators.close()
            if outputs_off is not None:
                outputs_off()
        if self.capture is not None:
            self.capture.stop()
        for part in (self.web, self.publisher, self.writer, self.store, self.arming):
            if part is not None:
                part.close()


class Runner:
    """The wired-up loop; every hardware seam can be passed in for tests.

    Args:
        cfg: validated config.
        source_spec: overrides ``cfg.source.spec``.
        max_frames: stop after this many processed frames (None: run until the source ends or a signal).
        annotate: path of an annotated .mp4, or None.
        source: a FrameSource to use instead of ``make_source(source_spec)``.
        pin_factory: gpiozero pin factory for the actuators (None: gpiozero's default).
        actuators / notifier: ready-made objects (tests pass fakes).
        detector_interpreter / classifier_interpreter / hand_interpreter: interpreter stubs.
        arming_clock / arming_tz: wall clock and time zone of the arming schedules and mutes
            (tests pass a fake clock and UTC).
        extra_interpreters: interpreter stubs for ``models.extra_classifiers``, in order.
        clock: monotonic clock (seconds) of every timing in the loop: the stages' latencies,
            FPS, the status and housekeeping intervals, the rules' cooldowns (tests pass
            ``edge.fakes.FakeClock``). The capture thread keeps its own (``Capture(clock=)``):
            it waits in real time.
        drain_outputs: at the end of the input or --max-frames, wait (at most 5 s) for a
            started alert/compliant pattern to finish before switching outputs off
            (the command line does; a signal always stops at once).
        allow_failed_gate: run models whose manifest records a failed accuracy gate
            (``--allow-failed-gate``; ``models.allow_failed_gate`` does the same).
        config_path: the file ``cfg`` came from; the web page's zone editor saves to it, or
            where it is read-only to the service to ``<state dir>/zones.toml``, which replaces
            the file's zones and masks when present (edge/act/web/zone_overlay.py; None: the embedded
            default, no overlay, nothing to save to).

    Raises:
        ConfigError: the zones overlay is invalid (one line naming it and the key path).
    """

    def __init__(self, cfg: config_mod.Config, source_spec: str | None = None, max_frames: int | None = None,
                 annotate: str | None = None, *, source: Any = None, pin_factory: Any = None,
                 actuators: Any = None, notifier: Any = None, detector_interpreter: Any = None,
                 classifier_interpreter: Any = None, hand_interpreter: Any = None,
                 extra_interpreters: Sequence[Any] = (), clock: Callable[[], float] = time.monotonic,
                 arming_clock: Callable[[], float] = time.time, arming_tz: Any = None,
                 drain_outputs: bool = False, allow_failed_gate: bool = False,
                 config_path: str | Path | None = None):
        from .act.web import zone_overlay
        from .decide.zones import Privacy

        self.config_path = Path(config_path) if config_path else None
        overlay = None
        if self.config_path is not None:
            cfg, overlay = zone_overlay.apply(cfg)
        self.cfg = cfg
        #: Where the zones and masks in use came from (the log, the status page).
        self.zones_from = zone_overlay.origin(self.config_path, overlay)
        #: What pictures leaving the loop may show (zones, masks, blurring; edge/decide/zones.py).
        self.privacy = Privacy(cfg.privacy, bool(cfg.zones))
        self._polygons = (cfg.zones, cfg.privacy.masks)
        self.allow_failed_gate = allow_failed_gate or cfg.models.allow_failed_gate
        self.per_image = False
        self.spec = source_spec or cfg.source.spec
        self.max_frames = max_frames
        self.annotate_path = annotate
        self._source = source
        self._pin_factory = pin_factory
        self._actuators = actuators
        self._notifier = notifier
        self._interps = (detector_interpreter, classifier_interpreter, hand_interpreter)
        self._extra_interps = tuple(extra_interpreters)
        self.clock = clock
        self._arming_clock, self._arming_tz = arming_clock, arming_tz
        # End of a clip or --max-frames: let a started LED/buzzer pattern finish
        # before switching everything off (a signal stops at once).
        self.drain_outputs = drain_outputs
        self._outputs_busy_until = 0.0
        self.stop_event = threading.Event()
        self.frames = 0
        self.events_by_verdict: Counter = Counter()
        self.alerts = 0
        self.suppressed = 0
        self.model_failures = 0
        self.stop_reason = "not started"
        self.summary_lines: list[str] = []

    def request_stop(self, reason: str) -> None:
        """Stop the loop (from a signal handler): also cuts short a camera still being opened."""
        if not self.stop_event.is_set():
            self.stop_reason = reason
            self.stop_event.set()
            cap = getattr(self, "_capture", None)
            if cap is not None:
                cap.request_stop()

    # -- start-up -------------------------------------------------------------------------
    def _build(self):
        from .act.events import EventStore, prepare_state_dir
        from .pipeline import Pipeline, make_rules
        from .capture.sources import Capture, make_source

        cfg = self.cfg
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"--max-frames must be at least 1, not {self.max_frames}")
        source = self._source if self._source is not None else make_source(self.spec, cfg.source)
        state_dir = cfg.state_dir()
        if cfg.events.enabled:
            prepare_state_dir(state_dir)
        extra = {"extra_interpreters": self._extra_interps} if self._extra_interps else {}
        pipeline = Pipeline.from_config(cfg, *self._interps, clock=self.clock, **extra)
        self._check_gates(pipeline)
        if cfg.source.lores and hasattr(source, "set_lores"):
            from .capture.sources import lores_size

            inp = pipeline.detector.manifest.input
            size = lores_size(inp.width, inp.height, cfg.source.width, cfg.source.height)
            source.set_lores(size)
            log.info("source %s: detector and motion gate on the camera's lores stream %dx%d (YUV420), faces "
                     "cropped from the %dx%d main stream", source.name, *size, cfg.source.width, cfg.source.height)
        self.per_image = cfg.source.per_image if cfg.source.per_image is not None else \
            bool(getattr(source, "per_image", False))
        if self.per_image:
            pipeline.tracker = per_image_tracker(cfg.tracking)
            pipeline.motion = None  # unrelated photos: there is no background to compare with
            log.info("source %s: per image (each image judged on its own: no track continues from the "
                     "previous one, every face classified, one vote settles)", source.name)
        clfs = [pipeline.classifier, *pipeline.extra_classifiers] if pipeline.classifier is not None else []
        for problem in config_mod.rule_label_problems(cfg, pipeline.detector.manifest.labels,
                                                      [lab for c in clfs for lab in c.manifest.labels] or None):
            # check-config (the unit's ExecStartPre) refuses these; here they are only a warning.
            log.warning("config: %s", problem)
        store = EventStore(state_dir, cfg.events, pipeline.model_hashes()) if cfg.events.enabled else None
        writer = None
        if self.annotate_path:
            from .act.annotate import AnnotatedVideo

            writer = AnnotatedVideo(self.annotate_path, cfg.source.fps or 15.0)
        return source, pipeline, make_rules(cfg), store, writer, Capture, state_dir

    def _check_gates(self, pipeline) -> None:
        """Refuse (exit 4) a model whose manifest records a failed accuracy gate, unless allowed."""
        from .manifest import check_gate, load_manifest

        for path in pipeline.model_paths().values():
            allowed = check_gate(load_manifest(path, verify_hash=False), path, self.allow_failed_gate)
            if allowed:
                log.warning("%s", allowed)

    def _make_actuators(self):
        if self._actuators is not None:
            return self._actuators
        from .act.actuators import Actuators

        return Actuators(self.cfg.gpio, pin_factory=self._pin_factory)

    def _make_notifier(self):
        if self._notifier is not None:
            return self._notifier
        from .notify import SystemdNotifier

        return SystemdNotifier()

    # -- the composition root ----------------------------------------------------------------
    def build_parts(self) -> "RunParts":
        """Every part of a run, built once in start-up order (config checks, source, state,
        models, event store, video writer, notifier); outputs and the camera come in
        :meth:`_start`, inside the run's cleanup.

        Raises:
            DoorguardError: as ``_build`` (usage, source spec, state dir, models).
        """
        source, pipeline, rules, store, writer, capture_cls, state_dir = self._build()
        return RunParts(source, pipeline, rules, store, writer, capture_cls, state_dir, self._make_notifier())

    def _start(self, p: "RunParts") -> bool:
        """GPIO, MQTT, the web page and the camera, in that order, onto ``p``.

        Returns:
            False when a stop was requested while the camera was still opening (a clean stop).

        Raises:
            DoorguardError: GPIO or a camera that never opened.
        """
        p.actuators = self._make_actuators()
        self._start_arming(p)
        pipeline, store = p.pipeline, p.store
        log.info("models: detector %s (%s), classifier %s%s, hand detector %s; %d interpreter thread(s), "
                 "backend %s", pipeline.cfg.models.detector, pipeline.detector.manifest.sha256[:12],
                 pipeline.cfg.models.classifier or "none",
                 "".join(f" + {m}" for m in pipeline.cfg.models.extra_classifiers if pipeline.classifier),
                 pipeline.cfg.facetouch.hand_detector if pipeline.hand_detector is not None else "none",
                 self.cfg.models.num_threads, pipeline.detector.model.backend)
        log.info("state: %s", f"{p.state_dir} (events {'on' if store else 'off'}, snapshots "
                 f"{'on' if store and store.snapshots_on else 'off'})")
        log.info("privacy: %s", self.privacy.describe(self.cfg.zones))
        log.info("zones: from %s", self.zones_from)
        if self.cfg.mqtt.enabled:
            from .act.mqtt.publisher import MqttPublisher

            from .act.hass import HomeAssistantLink

            p.publisher = MqttPublisher(self.cfg.mqtt, p.state_dir / self.cfg.events.database)
            rules = self.cfg.rules
            labels = rules.alert_on_classifier + rules.alert_on_detector
            p.hass = HomeAssistantLink(p.publisher, p.arming, event_types=labels,
                                       snapshots=bool(store and store.snapshots_on))
            p.publisher.start()
        if self.cfg.web.enabled:
            from .act.web.handover import LiveFrame
            from .act.web.server import WebServer

            p.live = LiveFrame()
            p.web = WebServer(self.cfg.web, self._status, p.live.get, p.actuators.alert,
                              state_dir=p.state_dir, arming=self._web_arming,
                              zone_editor=self._zone_editor(p)).start()
            log.info("web page on %s", p.web.url)
        p.capture = self._capture = p.capture_cls(p.source, self.cfg.source)
        retried: list[bool] = []

        def show_fault_while_opening() -> None:
            if not retried:
                p.actuators.set_fault(True)
            retried.append(True)

        try:
            p.capture.start(on_retry=show_fault_while_opening)
        except DoorguardError:
            if self.stop_event.is_set():
                return False  # SIGTERM while the camera was still opening: a clean stop
            self.stop_reason = f"source {p.source.name} never opened"
            raise
        p.fault = bool(retried)  # cleared by the loop once frames flow
        log.info("source %s open (%s)", p.source.name, "live" if p.source.live else "finite")
        return True

    def _start_arming(self, p: "RunParts") -> None:
        """The arming state (restored from the state directory), the door relay, and what a
        change does to the outputs; the mute button mutes through it."""
        from .decide.arming import Arming

        cfg = self.cfg
        db = p.state_dir / cfg.events.database if cfg.events.enabled else None
        # Kept in the state directory: with [events] off only when that directory exists
        # (a demo run leaves no ./state behind).
        keep = p.state_dir if cfg.events.enabled or p.state_dir.is_dir() else None
        p.arming = self._arming = Arming(cfg.arming, keep, db_path=db, mute_minutes=cfg.gpio.mute_minutes,
                                         clock=self._arming_clock, tz=self._arming_tz)
        if cfg.door.relay_pin is not None:
            from .act.door import DoorRelay

            p.door = self._door_relay = DoorRelay(cfg.door, pin_factory=self._pin_factory)
        p.actuators.on_mute_button = lambda: p.arming.mute("button")
        muted_until = [None]

        def outputs(snap: dict) -> None:
            # Mirror the mute into the outputs (they silence buzzer and sound themselves).
            if snap["muted_until"] != muted_until[0]:
                muted_until[0] = snap["muted_until"]
                if snap["mute_remaining_s"] > 0 and hasattr(p.actuators, "mute"):
                    p.actuators.mute(snap["mute_remaining_s"] / 60.0)
                elif hasattr(p.actuators, "unmute"):
                    p.actuators.unmute()
            if p.door is not None:
                p.door.set_armed(snap["armed"])
            if not snap["armed"] and hasattr(p.actuators, "off") and not getattr(p.actuators, "fault", False):
                p.actuators.off()  # a disarm silences an alert that is playing (the fault pattern stays)

        p.arming.add_listener(outputs)
        outputs(p.arming.snapshot())

    def _web_arming(self, action: str, who: str) -> dict:
        """The page's arm/disarm/schedule/mute/unmute buttons (from a web worker thread)."""
        return self._arming.command(action, by=f"web ({who})")

    def _zone_editor(self, p: "RunParts"):
        from .act.web.zone_editor import ZoneEditor
        from .act.web.zone_overlay import overlay_path

        def frame_size():
            item = p.live.get()
            return None if item is None else (item[0].shape[1], item[0].shape[0])

        return ZoneEditor(self.config_path, frame_size, lambda: self._polygons, self.use_polygons,
                          overlay_path(self.cfg) if self.config_path is not None else None)

    def use_polygons(self, cfg: config_mod.Config, saved_to: Path | None = None) -> None:
        """Switch to the zones and privacy masks of ``cfg`` from the next frame on (the zone
        editor's save, from the web page's thread: reference assignments only).

        Args:
            saved_to: the file the polygons were saved to (the config file or the overlay).
        """
        from .act.web import zone_overlay
        from .decide.zones import Privacy

        pipeline = getattr(self, "_pipeline", None)
        if pipeline is not None:
            pipeline.set_polygons(cfg.zones, cfg.privacy.masks)
        self.privacy = Privacy(cfg.privacy, bool(cfg.zones))
        self._polygons = (cfg.zones, cfg.privacy.masks)
        if saved_to is not None:
            overlay = None if self.config_path is not None and Path(saved_to) == self.config_path else Path(saved_to)
            self.zones_from = zone_overlay.origin(self.config_path, overlay)
        log.info("privacy: %s; zones from %s", self.privacy.describe(cfg.zones), self.zones_from)

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> int:
        """Run until max_frames, the end of a finite source, or stop; returns the exit code.

        Raises:
            DoorguardError: a fatal start-up or run-time fault (after switching outputs off).
        """
        p = self.build_parts()
        self._pipeline, self._source_name, self._store = p.pipeline, p.source.name, p.store
        error: DoorguardError | None = None
        started = None
        loop_end = None
        try:
            if not self._start(p):
                return 0
            started = self.clock()
            error = self._loop(p, started)
            loop_end = self.clock()
            if self.drain_outputs and error is None and not self.stop_event.is_set():
                wait = min(5.0, self._outputs_busy_until - self.clock())
                if wait > 0:
                    log.info("waiting %.1f s for the last LED/buzzer pattern to finish", wait)
                    self.stop_event.wait(wait)
        finally:
            if self.stop_event.is_set() and self.stop_reason == "not started":
                self.stop_reason = "stopped"
            try:
                p.notifier.stopping(f"stopping: {self.stop_reason}")
            except Exception as e:  # noqa: BLE001 - cleanup continues whatever fails
                log.debug("notify stopping: %s", e)
            p.close(self._log_mock_pins)
            # FPS counts the loop only, not the wait for the last pattern.
            end = loop_end if loop_end is not None else self.clock()
            elapsed = end - started if started is not None else 0.0
            self._summary(elapsed, p.capture, p.pipeline, p.writer)
        if error is not None:
            raise error
        return 0

    def _loop(self, p: "RunParts", started: float) -> DoorguardError | None:
        """Take frames until a stop, the end of the source, --max-frames or a lasting model fault.

        Returns:
            The fault that ended the loop (raised by ``run`` after cleanup), or None.
        """
        capture, notifier = p.capture, p.notifier
        fault = p.fault
        if p.door is not None:
            p.door.set_fault(fault)  # a camera that needed retries to open: no opening until frames flow
        last_status = last_housekeeping = self.clock()
        losses_seen = 0
        while not self.stop_event.is_set():
            if self.max_frames is not None and self.frames >= self.max_frames:
                self.stop_reason = f"--max-frames {self.max_frames} reached"
                return None
            frame = capture.get(timeout=0.5)
            lost = capture.lost or capture.losses != losses_seen
            if p.publisher is not None:
                # Every turn, frame or not: a lost camera must reach Home Assistant too
                # (cheap; the publisher rate-limits and never blocks).
                p.publisher.update_state({"fps": round(getattr(self, "_fps", 0.0), 1), "camera_ok": not lost})
            losses_seen = capture.losses
            if p.arming is not None:
                p.arming.tick()  # schedule changes and mute expiry, frame or not
            want_fault = lost or self.model_failures > 0
            if want_fault != fault:
                fault = want_fault
                p.actuators.set_fault(fault)
                if p.door is not None:
                    p.door.set_fault(fault)
                notifier.status("camera lost, reconnecting" if lost else
                                ("model fault" if fault else f"watching {p.source.name}"))
            if frame is None:
                if capture.ended:
                    self.stop_reason = "source failed" if capture.error is not None else "end of source"
                    return capture.error
                continue
            error = self._frame(p, frame, started)
            if error is not None:
                return error
            now = self.clock()
            if p.store is not None and now - last_housekeeping >= 3600.0:
                last_housekeeping = now
                p.store.housekeeping()
            if now - last_status >= 10.0:
                last_status = now
                elapsed = now - started
                notifier.status(f"{self.frames} frames, {self.frames / elapsed:.1f} fps, "
                                f"{self.alerts} alerts, dropped {capture.dropped}")
        return None

    def _frame(self, p: "RunParts", frame, started: float) -> DoorguardError | None:
        """One frame: the vision stages, the rules, the outputs, READY and the watchdog.

        Returns:
            A lasting model fault (the loop ends), else None.
        """
        pipeline, rules, verdicts = p.pipeline, p.rules, p.verdicts
        if self.per_image and pipeline.tracker.tracks:
            # A photo of its own: every track of the previous image ends here.
            ended, pipeline.tracker.tracks = pipeline.tracker.tracks, []
            rules.forget(t.id for t in ended)
            for t in ended:
                verdicts.pop(t.id, None)
        try:
            result = pipeline.process(frame)
        except Exception as e:  # an interpreter fault: show it, give up if it persists
            self.model_failures += 1
            log.error("frame %d: model failed (%d in a row): %s: %s", frame.index,
                      self.model_failures, type(e).__name__, e)
            if self.model_failures >= MAX_MODEL_FAILURES:
                # Restartable (exit 10), unlike a broken model file at start (exit 4).
                self.stop_reason = "model fault"
                return ModelRuntimeError(f"models failed on {self.model_failures} frames in a row: "
                                         f"{type(e).__name__}: {e}")
            return None
        if self.model_failures:
            self.model_failures = 0
        frame = result.frame  # privacy masks blacked out: all that follows sees only this
        privacy = self.privacy
        now = self.clock()  # the rules' time, and the start of "rules+io"
        events = rules.evaluate(result.tracks, now, result.sources, frame.index)
        rules.forget(t.id for t in pipeline.tracker.removed)
        for t in pipeline.tracker.removed:
            verdicts.pop(t.id, None)
        for t in result.tracks:
            shown = rules.track_verdict(t)
            if shown is not None:
                verdicts[t.id] = shown
        arming = p.arming.state if p.arming is not None else "armed"
        if arming == "disarmed" and events:
            # Disarmed: nothing sounds, lights or opens; recorded only when configured (alerted false).
            events = [dataclasses.replace(ev, alerted=False) for ev in events] \
                if self.cfg.arming.record_when_disarmed else []
        for ev in events:
            snap = privacy.for_snapshot(result, ev.track_id) if p.store and p.store.wants_snapshot(ev) else None
            row = self._handle(ev, frame, p.store, p.actuators, snap, outputs=arming != "disarmed")
            if p.door is not None:
                self._door(p, ev)
            if p.publisher is not None:
                p.publisher.enqueue(ev, store_id=row, model_hashes=pipeline.model_hashes(),
                                    wall_time=frame.timestamp, extra={"arming": arming})
                if p.hass is not None and ev.alerted and ev.verdict == Verdict.VIOLATION and row is not None:
                    p.hass.violation(ev, self._snapshot_of(p.store, row), frame.timestamp, row)
        pipeline.latency.add("rules+io", (self.clock() - now) * 1000.0)
        # Faces outside the zones (and, with privacy.blur_other_faces, all but the alerting
        # ones) are pixelated in every picture that leaves the loop.
        shown = privacy.shown(result, verdicts) if p.writer is not None or p.live is not None else None
        if p.writer is not None:
            from dataclasses import replace

            from .act.annotate import draw

            elapsed = self.clock() - started
            p.writer.write(draw(replace(result, frame=replace(frame, image=shown)), verdicts,
                                f"frame {frame.index}  {self.frames / elapsed if elapsed else 0:.1f} fps"))
        if p.live is not None:
            from .act.web.handover import overlays_from_tracks

            p.live.put(shown, overlays_from_tracks(result.tracks, verdicts))
        self.frames += 1
        if self.frames == 1:
            # READY only once the camera delivers frames and the models ran on one:
            # a camera that opens but never yields keeps the unit "activating", and
            # systemd's start timeout acts on it.
            p.notifier.ready(f"watching {p.source.name}")
            # `doorguard bench` times start-up to this line (time to first inference).
            log.info("first frame processed %.2f s after the source opened", self.clock() - started)
        self._fps = self.frames / max(self.clock() - started, 1e-9)
        p.notifier.watchdog()
        return None

    def _log_mock_pins(self) -> None:
        """On gpiozero's mock pins (no Pi: ``make run``), log each output pin's history:
        when it went on and for how long, so a dry run shows what the LEDs and buzzer did."""
        try:
            from gpiozero import Device
            from gpiozero.pins.mock import MockFactory
        except ImportError:
            return
        factory = self._pin_factory or Device.pin_factory
        if not isinstance(factory, MockFactory):
            return
        names = {getattr(self.cfg.gpio, k): k for k in ("red_led", "green_led", "buzzer", "mute_button")}
        names[self.cfg.door.relay_pin] = "door_relay"
        for info, pin in sorted(factory.pins.items(), key=lambda kv: kv[1].info.name):
            t, on_at, spans = 0.0, None, []
            for st in pin.states[1:]:
                t += st.timestamp  # MockPin stores the time since the previous change
                if st.state and on_at is None:
                    on_at = t
                elif not st.state and on_at is not None:
                    spans.append((on_at, t - on_at))
                    on_at = None
            number = next((n for n in info.names if isinstance(n, int)), None)
            role = names.get(number, "pin")
            shown = ", ".join(f"{a:.2f}+{d:.2f}" for a, d in spans[:8]) + (" ..." if len(spans) > 8 else "")
            log.info("mock pin %s (%s): %d on-period(s)%s%s; now %s", info.name, role, len(spans),
                     f" at s+dur: {shown}" if spans else "", " (still on)" if on_at is not None else "",
                     "on" if pin.state else "off")

    def _status(self) -> dict:
        """The runner's state for the web page (called from its thread, never by the loop)."""
        cap = getattr(self, "_capture", None)
        out = {"fps": round(getattr(self, "_fps", 0.0), 1), "frames": self.frames,
               "camera_ok": cap is not None and not cap.lost, "dropped": cap.dropped if cap else 0,
               "source": getattr(self, "_source_name", ""),
               "models": [{"name": str(p), "sha256": self._pipeline.model_hashes().get(k, "")}
                          for k, p in self._pipeline.model_paths().items()],
               "snapshots": bool(self._store and self._store.snapshots_on),
               "privacy": self.privacy.describe(self._polygons[0]), "zones_from": self.zones_from}
        arming = getattr(self, "_arming", None)
        if arming is not None:
            out["arming"] = {**arming.snapshot(), "history": arming.history(5)}
        door = getattr(self, "_door_relay", None)
        if door is not None:
            out["door"] = door.status()
        if self._store is not None:
            try:
                out["events"] = [
                    {"id": r["id"], "time": r["time"], "track_id": r["track"], "verdict": r["verdict"],
                     "label": r["label"], "score": r["score"],
                     "snapshot": str(self._store.snap_dir / r["snapshot"]) if r["snapshot"] else None}
                    for r in self._store.recent(20)]
            except Exception as e:  # noqa: BLE001 - a status page must not fail on a busy database
                log.debug("status: %s", e)
        return out

    def _door(self, p: "RunParts", ev: Event) -> None:
        """A compliant face opens the door (the relay refuses while disarmed or faulted); a
        violation shuts it at once."""
        if ev.verdict == Verdict.VIOLATION:
            p.door.shut(f"violation {ev.label} track {ev.track_id}")
        elif ev.verdict == Verdict.COMPLIANT and ev.alerted and \
                p.door.may_open(ev.label, self.cfg.rules.compliant_on_classifier):
            p.door.open(f"{ev.label} track {ev.track_id}")

    @staticmethod
    def _snapshot_of(store, row: int):
        """The snapshot file the event store wrote for event ``row``, or None."""
        if store is None or not store.snapshots_on:
            return None
        for r in store.recent(5):
            if r["id"] == row:
                return store.snap_dir / r["snapshot"] if r["snapshot"] else None
        return None

    def _handle(self, ev: Event, frame, store, actuators, snapshot=None, outputs: bool = True) -> int | None:
        self.events_by_verdict[ev.verdict] += 1
        b = ev.box
        state = "alert" if ev.alerted else "suppressed (cooldown)"
        if ev.verdict == Verdict.COMPLIANT:
            state = "green"
        if not outputs:
            state = "recorded while disarmed (no outputs)"
        log.info("event: %s %s %.2f track %d frame %d box [%d,%d,%d,%d] (%s) %s",
                 ev.verdict, ev.label, ev.score, ev.track_id, ev.frame_index,
                 b.x1, b.y1, b.x2, b.y2, ev.source, state)
        # snapshot: the frame with every other face hidden (edge.decide.zones.Privacy.for_snapshot).
        row = store.add(ev, snapshot if snapshot is not None else frame.image, wall_time=frame.timestamp) \
            if store is not None else None
        if not outputs:
            return row
        if ev.verdict == Verdict.VIOLATION:
            if ev.alerted:
                self.alerts += 1
                actuators.alert()
                self._outputs_busy_until = max(self._outputs_busy_until,
                                               self.clock() + self.cfg.gpio.alert_seconds)
            else:
                self.suppressed += 1
        elif ev.verdict == Verdict.COMPLIANT:
            actuators.compliant()
            self._outputs_busy_until = max(self._outputs_busy_until,
                                           self.clock() + self.cfg.gpio.compliant_seconds)
        return row

    def _summary(self, elapsed: float, capture, pipeline, writer) -> None:
        fps = self.frames / elapsed if elapsed > 0 else 0.0
        lines = [f"summary: {self.frames} frames in {elapsed:.1f} s = {fps:.1f} FPS; stop: {self.stop_reason}"]
        if capture is not None:
            lines.append(f"summary: captured {capture.captured}, dropped {capture.dropped}, "
                         f"unreadable {capture.unreadable}, reconnects {capture.reconnects}")
        lines.append("summary: latency per stage in ms (per frame: det_pre = resize/letterbox + quantize, "
                     "det_infer = detector invoke, det_post = YOLO decode + NMS, detect = the three, "
                     "track = tracking + crops + votes, pipeline = all vision stages; per face: classify "
                     "= preprocess + invoke, classify:NAME = an extra classifier, hands = hand detector on the "
                     "region around the face; rules+io = rules, event store, actuator calls):")
        lines += [f"  {line}" for line in pipeline.latency.summary()]
        gate = getattr(pipeline, "motion", None)
        if gate is not None:
            st = gate.stats
            lines.append(f"summary: motion gate: detector skipped on {st.skipped} of {st.frames} frames without a "
                         f"track ({st.moving} with motion, {st.rechecks} periodic checks)")
        ev = ", ".join(f"{k} {v}" for k, v in sorted(self.events_by_verdict.items())) or "none"
        lines.append(f"summary: events by verdict: {ev}; alerts {self.alerts}, "
                     f"held back by cooldown {self.suppressed}")
        if writer is not None:
            lines.append(f"summary: annotated video {writer.path} ({writer.frames} frames)")
        self.summary_lines = lines
        for line in lines:
            log.info("%s", line)


def per_image_tracker(t: config_mod.TrackingConfig):
    """The tracker of per-image mode: one vote settles a verdict, no track outlives its image.

    The loop ends the previous image's tracks before each image, so every face is a new
    track (classified at once); ids stay unique over the run, so cooldowns and events never
    mix two photos' faces.
    """
    from .track.tracking import Tracker

    return Tracker(t.iou_threshold, max_missed=0, votes_needed=1, window=1, reclassify_every=1)


def main(args: argparse.Namespace) -> int:
    """``doorguard run``: load the config, wire the loop, stop cleanly on SIGTERM/SIGINT."""
    cfg = config_mod.load(args.config)
    runner = Runner(cfg, args.source, args.max_frames, args.annotate, drain_outputs=True,
                    allow_failed_gate=getattr(args, "allow_failed_gate", False), config_path=args.config)
    previous = {}

    def on_signal(signum, _frame):
        runner.request_stop(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        return runner.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
