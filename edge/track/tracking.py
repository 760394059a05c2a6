"""IoU tracker with N-of-M label voting (pure: no I/O, no clock).

A face seen in consecutive frames becomes one track. Each classification of
the track's crop is a vote; the track settles on a label once that label has
``votes_needed`` (N) of the last ``window`` (M) votes, as Frigate does with its
attempts/agreement and Hailo with its temporal filter. One noisy frame never
becomes a verdict, and a settled track only changes its mind when another
label reaches N votes.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from ..types import Box, Detection


#: The channel of a track's own verdict (its classifier's, or its detector label's).
MAIN = "main"


@dataclass
class Votes:
    """One verdict channel of a track: the last M votes and the label they settled on.

    A track has its main channel (the face classifier, or the detector label for
    a detector-judged track) and one per extra stage that judges the same face
    (another classifier, the face-touch check). Channels settle, change and cool
    down independently: a face can be ``no_mask`` and ``facetouch`` at once.

    Attributes:
        window: M.
        source: what votes here ("classifier", "detector", "hands"): picks the rules
            that map its label to a verdict, and is the event's source.
        votes: last M votes as (label or None for an uncertain vote, score).
        label / score: settled label and its mean vote score, None until settled.
        changed: the settled label changed in the last vote (a new verdict).
        last_voted: frame index of the last vote (-1: never).
    """

    window: int
    source: str = "classifier"
    votes: deque = field(init=False)
    label: str | None = None
    score: float = 0.0
    changed: bool = False
    last_voted: int = -1

    def __post_init__(self) -> None:
        self.votes = deque(maxlen=self.window)

    @property
    def settled(self) -> bool:
        return self.label is not None

    def add(self, label: str | None, score: float, frame_index: int, votes_needed: int) -> bool:
        """One vote; True when the settled label changed (see :meth:`Tracker.vote`)."""
        self.votes.append((label, float(score)))
        self.last_voted = frame_index
        counts = Counter(lab for lab, _ in self.votes if lab is not None)
        self.changed = False
        if not counts:
            return False
        best, n = counts.most_common(1)[0]
        # A tie at N keeps the current label: no flapping between two labels.
        if n >= votes_needed and best != self.label:
            if self.label is not None and counts.get(self.label, 0) >= n:
                return False
            self.label = best
            self.changed = True
        if self.label is not None:
            scores = [s for lab, s in self.votes if lab == self.label]
            if scores:
                self.score = sum(scores) / len(scores)
        return self.changed


def _main_field(name: str) -> property:
    def get(self):
        return getattr(self.channels[MAIN], name)

    def set_(self, value):
        setattr(self.channels[MAIN], name, value)

    return property(get, set_, doc=f"``{name}`` of the main channel")


@dataclass
class Track:
    """One object followed across frames.

    Attributes:
        id: unique, increasing track number.
        box: last matched box (frame pixels).
        detector_label / detector_score: of the last matched detection.
        channels: verdict channels by name; ``MAIN`` always exists. ``label``,
            ``score``, ``votes``, ``changed``, ``settled`` and ``last_classified``
            are the main channel's.
        hits: frames with a matching detection; missed: consecutive frames without.
    """

    id: int
    box: Box
    detector_label: str
    detector_score: float
    window: int
    channels: dict = field(init=False)
    hits: int = 1
    missed: int = 0
    first_frame: int = 0
    last_frame: int = 0

    def __post_init__(self) -> None:
        self.channels = {MAIN: Votes(self.window)}

    label = _main_field("label")
    score = _main_field("score")
    changed = _main_field("changed")
    votes = _main_field("votes")
    last_classified = _main_field("last_voted")

    @property
    def settled(self) -> bool:
        return self.channels[MAIN].settled

    def channel(self, name: str, source: str | None = None) -> Votes:
        """The named channel, made on first use (``source`` then sets what votes in it)."""
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = Votes(self.window, source or "classifier")
        elif source is not None:
            ch.source = source
        return ch


class Tracker:
    """Greedy IoU association plus N-of-M voting.

    Args:
        iou_threshold: minimum IoU between a track's last box and a detection.
        max_missed: frames a track survives unmatched before it is dropped.
        votes_needed: N.
        window: M.
        reclassify_every: settled tracks want a new vote every this many frames.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 8, votes_needed: int = 3,
                 window: int = 5, reclassify_every: int = 5):
        if not 1 <= votes_needed <= window:
            raise ValueError(f"need 1 <= votes_needed ({votes_needed}) <= window ({window})")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.votes_needed = votes_needed
        self.window = window
        self.reclassify_every = max(1, reclassify_every)
        self.tracks: list[Track] = []
        self.removed: list[Track] = []
        self._next_id = 1

    def update(self, detections: list[Detection], frame_index: int) -> list[Track]:
        """Associate this frame's detections with tracks.

        Matching is greedy on IoU (best pair first) and only between the same
        detector label. Unmatched detections start tracks; tracks unmatched for
        more than ``max_missed`` frames move to ``self.removed``.

        Returns:
            The tracks matched or started in this frame, in detection order.
        """
        pairs = []
        for ti, t in enumerate(self.tracks):
            for di, d in enumerate(detections):
                if d.label != t.detector_label:
                    continue
                iou = t.box.iou(d.box)
                if iou >= self.iou_threshold:
                    pairs.append((iou, ti, di))
        pairs.sort(key=lambda p: -p[0])
        used_t: set[int] = set()
        by_det: dict[int, Track] = {}
        for _, ti, di in pairs:
            if ti in used_t or di in by_det:
                continue
            used_t.add(ti)
            t = self.tracks[ti]
            d = detections[di]
            t.box, t.detector_score = d.box, d.score
            t.hits += 1
            t.missed = 0
            t.last_frame = frame_index
            by_det[di] = t
        self.removed = []
        kept = []
        for ti, t in enumerate(self.tracks):
            for ch in t.channels.values():
                ch.changed = False
            if ti not in used_t:
                t.missed += 1
                if t.missed > self.max_missed:
                    self.removed.append(t)
                    continue
            kept.append(t)
        self.tracks = kept
        for di, d in enumerate(detections):
            if di not in by_det:
                t = Track(self._next_id, d.box, d.label, d.score, self.window,
                          first_frame=frame_index, last_frame=frame_index)
                self._next_id += 1
                self.tracks.append(t)
                by_det[di] = t
        return [by_det[i] for i in range(len(detections))]

    def needs_vote(self, track: Track, frame_index: int, channel: str = MAIN, every: int | None = None) -> bool:
        """New and unsettled channels vote every frame; settled ones every ``every`` frames
        (default ``reclassify_every``)."""
        ch = track.channels.get(channel)
        if ch is None or not ch.settled or ch.last_voted < 0:
            return True
        return frame_index - ch.last_voted >= max(1, every or self.reclassify_every)

    def vote(self, track: Track, label: str | None, score: float, frame_index: int, channel: str = MAIN,
             source: str | None = None) -> bool:
        """Add one vote to a channel (label None: an uncertain vote that still fills the window).

        Args:
            channel: the track's verdict channel (default its main one).
            source: what votes in the channel (``Votes.source``); None keeps it.

        Returns:
            True when the channel's settled label changed (a new verdict).
        """
        return track.channel(channel, source).add(label, score, frame_index, self.votes_needed)
