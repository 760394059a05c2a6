"""Rules: labels -> verdicts, alert decisions and both cooldowns."""

from __future__ import annotations

from edge.config import RulesConfig
from edge.decide.rules import Rules
from edge.track.tracking import Track
from edge.types import Box, Verdict


def track(i, label, changed=True, det_label="face"):
    t = Track(i, Box(0, 0, 10, 10), det_label, 0.9, 5)
    t.label, t.score, t.changed = label, 0.9, changed
    return t


def rules(**kw):
    return Rules(RulesConfig(**{"track_cooldown_s": 10.0, "global_cooldown_s": 2.0, **kw}))


def test_default_rules_are_the_default_models_labels():
    """The defaults name only labels the default models output (check-config refuses others)."""
    r = rules()
    assert r.verdict_of("no_mask", "classifier") == Verdict.VIOLATION
    assert r.verdict_of("mask_incorrect", "classifier") == Verdict.VIOLATION
    assert r.verdict_of("mask", "classifier") == Verdict.COMPLIANT
    assert r.verdict_of("face", "detector") == Verdict.NEUTRAL
    assert r.cfg.alert_on_detector == []


def test_verdict_mapping():
    r = rules(alert_on_classifier=["no_mask", "mask_incorrect", "not_me"], compliant_on_classifier=["mask", "me"],
              alert_on_detector=["facetouch", "person"])
    assert r.verdict_of("no_mask", "classifier") == Verdict.VIOLATION
    assert r.verdict_of("mask_incorrect", "classifier") == Verdict.VIOLATION
    assert r.verdict_of("not_me", "classifier") == Verdict.VIOLATION
    assert r.verdict_of("mask", "classifier") == Verdict.COMPLIANT
    assert r.verdict_of("me", "classifier") == Verdict.COMPLIANT
    assert r.verdict_of("facetouch", "detector") == Verdict.VIOLATION
    assert r.verdict_of("person", "detector") == Verdict.VIOLATION
    assert r.verdict_of("face", "detector") == Verdict.NEUTRAL
    assert r.verdict_of("facetouch", "classifier") == Verdict.NEUTRAL
    assert r.verdict_of(None, "classifier") == Verdict.NEUTRAL
    # The face-touch check's votes are judged like detector labels.
    assert r.verdict_of("facetouch", "hands") == Verdict.VIOLATION
    assert r.verdict_of("no_facetouch", "hands") == Verdict.NEUTRAL


def test_rules_are_configuration():
    r = rules(alert_on_classifier=["mask"], compliant_on_classifier=["no_mask"])
    assert r.verdict_of("mask", "classifier") == Verdict.VIOLATION
    assert r.verdict_of("no_mask", "classifier") == Verdict.COMPLIANT


def test_unsettled_tracks_give_nothing():
    r = rules()
    assert r.evaluate([track(1, None)], 0.0) == []


def test_violation_alerts_once_then_after_track_cooldown():
    r = rules()
    t = track(1, "no_mask")
    ev = r.evaluate([t], 100.0)
    assert [(e.verdict, e.alerted, e.label) for e in ev] == [(Verdict.VIOLATION, True, "no_mask")]
    t.changed = False
    assert r.evaluate([t], 105.0) == []
    ev = r.evaluate([t], 110.0)
    assert len(ev) == 1 and ev[0].alerted


def test_global_cooldown_suppresses_but_records():
    r = rules()
    a, b = track(1, "no_mask"), track(2, "mask_incorrect")
    ev = r.evaluate([a, b], 50.0)
    assert [(e.track_id, e.alerted) for e in ev] == [(1, True), (2, False)]
    a.changed = b.changed = False
    assert r.evaluate([a, b], 51.0) == []
    c = track(3, "no_mask")
    assert [e.alerted for e in r.evaluate([c], 52.5)] == [True]


def test_repeat_alert_waits_for_global_cooldown():
    r = rules(track_cooldown_s=5.0, global_cooldown_s=3.0)
    a, b = track(1, "no_mask"), track(2, "no_mask")
    r.evaluate([a], 0.0)
    a.changed = False
    r.evaluate([b], 4.0)  # b alerts at 4
    b.changed = False
    assert r.evaluate([a], 5.0) == []  # a is due but the global cooldown holds it
    ev = r.evaluate([a], 7.0)
    assert len(ev) == 1 and ev[0].track_id == 1 and ev[0].alerted


def test_compliant_once_per_settle_and_on_change():
    r = rules()
    t = track(1, "mask")
    ev = r.evaluate([t], 0.0)
    assert [(e.verdict, e.alerted) for e in ev] == [(Verdict.COMPLIANT, True)]
    t.changed = False
    assert r.evaluate([t], 1.0) == []
    t.label, t.changed = "no_mask", True
    ev = r.evaluate([t], 2.0)
    assert [e.verdict for e in ev] == [Verdict.VIOLATION]


def test_detector_label_rule():
    r = rules(alert_on_detector=["facetouch"])
    t = track(1, "facetouch", det_label="facetouch")
    ev = r.evaluate([t], 0.0, source_of={1: "detector"})
    assert ev[0].verdict == Verdict.VIOLATION and ev[0].source == "detector"


def test_forget():
    r = rules()
    t = track(1, "no_mask")
    r.evaluate([t], 0.0)
    r.forget([1])
    t.changed = False
    assert len(r.evaluate([t], 3.0)) == 1  # a forgotten track id starts fresh


def test_labels_case_insensitive():
    r = rules()
    assert r.verdict_of("No_Mask", "classifier") == Verdict.VIOLATION
    assert r.verdict_of("FaceTouch", "detector") == Verdict.NEUTRAL  # not in the default alert_on_detector
