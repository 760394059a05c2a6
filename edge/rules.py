"""Verdicts -> alerts: which settled labels alert, and the cooldowns (pure, no I/O).

The clock is passed in (``now``), so the same code runs under test with a fake
time and in the service with ``time.monotonic()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import RulesConfig
from .tracking import Track
from .types import Event, Verdict


def _fold(labels: list[str]) -> set[str]:
    return {lab.casefold() for lab in labels}


@dataclass
class _TrackState:
    last_alert: float | None = None
    last_verdict: str | None = None


@dataclass
class Rules:
    """Map a track's settled label to a verdict and decide when to alert.

    A violation alerts when its track settles on it; while the track stays in
    violation it alerts again after ``track_cooldown_s``. No alert follows
    another within ``global_cooldown_s``; a suppressed alert is still an event
    (``alerted=False``), so nothing goes unrecorded. A compliant verdict is an
    event (green LED) when the track settles on it.
    """

    cfg: RulesConfig
    _tracks: dict[int, _TrackState] = field(default_factory=dict)
    _last_alert: float | None = None

    def verdict_of(self, label: str | None, source: str) -> str:
        """The verdict a label means; ``source`` is "classifier" or "detector".

        Labels compare case-insensitively (model label files differ: "Face", "face").
        """
        if label is None:
            return Verdict.NEUTRAL
        lab = label.casefold()
        cfg = self.cfg
        if source == "detector":
            return Verdict.VIOLATION if lab in _fold(cfg.alert_on_detector) else Verdict.NEUTRAL
        if lab in _fold(cfg.alert_on_classifier):
            return Verdict.VIOLATION
        if lab in _fold(cfg.compliant_on_classifier):
            return Verdict.COMPLIANT
        return Verdict.NEUTRAL

    def source_of(self, detector_label: str, classify_labels: list[str]) -> str:
        """Whether a detector label's tracks are judged by the classifier or by the label itself."""
        return "classifier" if detector_label.casefold() in _fold(classify_labels) else "detector"

    def evaluate(self, tracks: list[Track], now: float, source_of: dict[int, str] | None = None,
                 frame_index: int = 0) -> list[Event]:
        """Events for this frame's tracks.

        Args:
            tracks: tracks seen this frame (their ``changed`` flag marks a new settled label).
            now: current time in seconds (monotonic in the service).
            source_of: track id -> "classifier" | "detector" (default classifier).

        Returns:
            New events, alerts first decided in track order.
        """
        events: list[Event] = []
        for t in tracks:
            if not t.settled:
                continue
            src = (source_of or {}).get(t.id, "classifier")
            verdict = self.verdict_of(t.label, src)
            st = self._tracks.setdefault(t.id, _TrackState())
            new_verdict = t.changed or st.last_verdict != verdict
            st.last_verdict = verdict
            if verdict == Verdict.VIOLATION:
                due = new_verdict or st.last_alert is None or now - st.last_alert >= self.cfg.track_cooldown_s
                if not due:
                    continue
                globally_ok = self._last_alert is None or now - self._last_alert >= self.cfg.global_cooldown_s
                if globally_ok:
                    self._last_alert = now
                    st.last_alert = now
                elif not new_verdict:
                    # A repeat alert held back by the global cooldown: try again next frame.
                    continue
                else:
                    # Suppressed alert still counts for the per-track cooldown.
                    st.last_alert = now
                events.append(Event(now, t.id, verdict, t.label or "", t.score, t.box,
                                    alerted=globally_ok, source=src, frame_index=frame_index))
            elif new_verdict and verdict == Verdict.COMPLIANT:
                events.append(Event(now, t.id, verdict, t.label or "", t.score, t.box,
                                    alerted=True, source=src, frame_index=frame_index))
        return events

    def forget(self, track_ids) -> None:
        """Drop per-track state of tracks the tracker removed."""
        for i in track_ids:
            self._tracks.pop(i, None)
