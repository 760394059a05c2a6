"""IoU tracker and N-of-M voting."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.track.tracking import Tracker
from edge.types import Box, Detection


def det(x, y, s=50, label="face", score=0.9):
    return Detection(Box(x, y, x + s, y + s), score, 0, label)


def test_same_face_keeps_its_track_across_frames():
    t = Tracker(iou_threshold=0.3)
    a = t.update([det(100, 100)], 0)[0]
    b = t.update([det(105, 102)], 1)[0]
    assert a is b and b.hits == 2 and b.box.x1 == 105


def test_two_faces_two_tracks_and_greedy_best_iou():
    t = Tracker()
    a, b = t.update([det(0, 0), det(200, 0)], 0)
    b2, a2 = t.update([det(205, 0), det(3, 0)], 1)
    assert a2 is a and b2 is b


def test_label_must_match():
    t = Tracker()
    a = t.update([det(0, 0, label="face")], 0)[0]
    p = t.update([det(0, 0, label="person")], 1)[0]
    assert p is not a


def test_track_dropped_after_max_missed():
    t = Tracker(max_missed=2)
    a = t.update([det(0, 0)], 0)[0]
    t.update([], 1)
    t.update([], 2)
    assert a in t.tracks
    t.update([], 3)
    assert a not in t.tracks and t.removed == [a]
    new = t.update([det(0, 0)], 4)[0]
    assert new.id != a.id


def test_n_of_m_settles_only_with_n_votes():
    t = Tracker(votes_needed=3, window=5)
    tr = t.update([det(0, 0)], 0)[0]
    assert not t.vote(tr, "no_mask", 0.9, 0)
    assert not t.vote(tr, "mask", 0.9, 1)
    assert not t.vote(tr, "no_mask", 0.8, 2)
    assert tr.label is None
    assert t.vote(tr, "no_mask", 0.7, 3)
    assert tr.label == "no_mask" and tr.changed
    assert abs(tr.score - 0.8) < 1e-9
    assert not t.vote(tr, "no_mask", 0.9, 4)  # same label: no new verdict


def test_single_noisy_vote_never_changes_a_settled_label():
    t = Tracker(votes_needed=3, window=5)
    tr = t.update([det(0, 0)], 0)[0]
    for i in range(3):
        t.vote(tr, "mask", 0.9, i)
    assert tr.label == "mask"
    assert not t.vote(tr, "no_mask", 0.99, 3)
    assert tr.label == "mask"
    t.vote(tr, "no_mask", 0.99, 4)
    # window now mask,mask,no_mask,no_mask -> 2 and 2 of the last 4? window holds last 5.
    assert tr.label == "mask"
    assert t.vote(tr, "no_mask", 0.99, 5)  # last 5: mask, mask, nm, nm, nm -> 3 of 5
    assert tr.label == "no_mask"


def test_uncertain_votes_fill_the_window():
    t = Tracker(votes_needed=2, window=3)
    tr = t.update([det(0, 0)], 0)[0]
    t.vote(tr, "mask", 0.9, 0)
    t.vote(tr, None, 0.2, 1)
    t.vote(tr, None, 0.2, 2)
    assert not t.vote(tr, "mask", 0.9, 3)  # first vote slid out: 1 of 3
    assert tr.label is None


def test_needs_vote_schedule():
    t = Tracker(votes_needed=1, window=1, reclassify_every=5)
    tr = t.update([det(0, 0)], 0)[0]
    assert t.needs_vote(tr, 0)
    t.vote(tr, "mask", 0.9, 0)
    assert not t.needs_vote(tr, 4)
    assert t.needs_vote(tr, 5)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), max_size=4), max_size=15))
def test_ids_unique_and_one_track_per_detection(frames):
    t = Tracker()
    for i, boxes in enumerate(frames):
        dets = [det(x, y) for x, y in boxes]
        out = t.update(dets, i)
        assert len(out) == len(dets)
        assert len({id(x) for x in out}) == len(out)
        ids = [x.id for x in t.tracks]
        assert len(ids) == len(set(ids))
