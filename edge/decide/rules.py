"""Verdicts -> alerts: which settled labels alert, and the cooldowns (pure, no I/O).

Which stage judges a face (and so what a track votes) is decided in
``edge.pipeline.FaceJudge``; here only what a settled label means.

The clock is passed in (``now``), so the same code runs under test with a fake
time and in the service with ``time.monotonic()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..settings.rules import RulesConfig
from ..track.tracking import MAIN, Track, Votes
from ..types import Event, Verdict


def _fold(labels: list[str]) -> set[str]:
    return {lab.casefold() for lab in labels}


@dataclass
class _TrackState:
    last_alert: float | None = None
    last_verdict: str | None = None


#: Sources whose labels are judged by ``alert_on_detector`` (the label is the finding itself).
DETECTOR_SOURCES = frozenset({"detector", "hands"})


@dataclass
class Rules:
    """Map each settled channel of a track to a verdict and decide when to alert.

    A violation alerts when its channel settles on it; while the channel stays in
    violation it alerts again after its per-track cooldown (``track_cooldown_s``,
    or ``cooldowns[source]``: the face-touch check has its own). No alert follows
    another within ``global_cooldown_s``; a suppressed alert is still an event
    (``alerted=False``), so nothing goes unrecorded. A compliant verdict is an
    event (green LED) when the channel settles on it; with several classifiers
    (mask and identity), ``compliant_needs_all_classifiers`` holds it back until
    every classifier channel of the track has settled and no channel is in
    violation, so ``me`` + ``mask`` is green, ``me`` + ``no_mask`` and ``not_me``
    + ``mask`` alert and are never green (one green event per track and frame).

    Args:
        cfg: the [rules] section.
        cooldowns: source -> per-track cooldown in seconds, overriding ``track_cooldown_s``.
    """

    cfg: RulesConfig
    cooldowns: dict[str, float] = field(default_factory=dict)
    _tracks: dict[tuple[int, str], _TrackState] = field(default_factory=dict)
    _last_alert: float | None = None

    def verdict_of(self, label: str | None, source: str) -> str:
        """The verdict a label means; ``source`` is "classifier", "detector" or "hands".

        Labels compare case-insensitively (model label files differ: "Face", "face").
        Detector and hand-stage labels (``facetouch``) are judged by ``alert_on_detector``,
        classifier labels by ``alert_on_classifier`` / ``compliant_on_classifier``.
        """
        if label is None:
            return Verdict.NEUTRAL
        lab = label.casefold()
        cfg = self.cfg
        if source in DETECTOR_SOURCES:
            return Verdict.VIOLATION if lab in _fold(cfg.alert_on_detector) else Verdict.NEUTRAL
        if lab in _fold(cfg.alert_on_classifier):
            return Verdict.VIOLATION
        if lab in _fold(cfg.compliant_on_classifier):
            return Verdict.COMPLIANT
        return Verdict.NEUTRAL

    def track_verdict(self, track: Track) -> str | None:
        """The verdict to show for a track: violation if any settled channel is one, else the
        main channel's; None while nothing settled (drawn as "voting")."""
        verdicts = [self.verdict_of(ch.label, ch.source) for ch in track.channels.values() if ch.settled]
        if not verdicts:
            return None
        if Verdict.VIOLATION in verdicts:
            return Verdict.VIOLATION
        main = track.channels[MAIN]
        return self.verdict_of(main.label, main.source) if main.settled else Verdict.NEUTRAL

    def evaluate(self, tracks: list[Track], now: float, source_of: dict[int, str] | None = None,
                 frame_index: int = 0) -> list[Event]:
        """Events for this frame's tracks, one per channel that has something to say.

        Args:
            tracks: tracks seen this frame (each channel's ``changed`` flag marks a new settled label).
            now: current time in seconds (monotonic in the service).
            source_of: track id -> source of its main channel, overriding ``Votes.source``.

        Returns:
            New events, alerts first decided in track order.
        """
        events: list[Event] = []
        for t in tracks:
            green = False
            for name, ch in t.channels.items():
                if not ch.settled:
                    continue
                src = (source_of or {}).get(t.id, ch.source) if name == MAIN else ch.source
                if self.cfg.compliant_needs_all_classifiers and not self._may_be_green(t, name, ch, src):
                    continue  # not yet: its state stays as it was, so it is a new verdict when clear
                ev = self._channel_event(t, name, ch, src, now, frame_index)
                if ev is not None and ev.verdict == Verdict.COMPLIANT and self.cfg.compliant_needs_all_classifiers:
                    if green:
                        continue  # one green per track and frame (mask and me settling together)
                    green = True
                if ev is not None:
                    events.append(ev)
        return events

    def _may_be_green(self, t: Track, name: str, ch: Votes, src: str) -> bool:
        """False when this channel is compliant while another classifier channel of the track
        has not settled, or any settled channel is a violation."""
        if self.verdict_of(ch.label, src) != Verdict.COMPLIANT:
            return True
        for other_name, other in t.channels.items():
            if other_name == name:
                continue
            if not other.settled:
                if other.source == "classifier":
                    return False
                continue
            if self.verdict_of(other.label, other.source) == Verdict.VIOLATION:
                return False
        return True

    def _channel_event(self, t: Track, name: str, ch: Votes, src: str, now: float,
                       frame_index: int) -> Event | None:
        verdict = self.verdict_of(ch.label, src)
        st = self._tracks.setdefault((t.id, name), _TrackState())
        new_verdict = ch.changed or st.last_verdict != verdict
        st.last_verdict = verdict
        if verdict == Verdict.VIOLATION:
            cooldown = self.cooldowns.get(src, self.cfg.track_cooldown_s)
            due = new_verdict or st.last_alert is None or now - st.last_alert >= cooldown
            if not due:
                return None
            globally_ok = self._last_alert is None or now - self._last_alert >= self.cfg.global_cooldown_s
            if globally_ok:
                self._last_alert = now
                st.last_alert = now
            elif not new_verdict:
                # A repeat alert held back by the global cooldown: try again next frame.
                return None
            else:
                # Suppressed alert still counts for the per-track cooldown.
                st.last_alert = now
            return Event(now, t.id, verdict, ch.label or "", ch.score, t.box,
                         alerted=globally_ok, source=src, frame_index=frame_index)
        if new_verdict and verdict == Verdict.COMPLIANT:
            return Event(now, t.id, verdict, ch.label or "", ch.score, t.box,
                         alerted=True, source=src, frame_index=frame_index)
        return None

    def forget(self, track_ids) -> None:
        """Drop per-track state of tracks the tracker removed."""
        gone = set(track_ids)
        for key in [k for k in self._tracks if k[0] in gone]:
            del self._tracks[key]
