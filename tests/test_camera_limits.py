"""A camera that never opens, or stays lost: the error names the limit that was hit."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge.config import SourceConfig
from edge.errors import SourceError
from edge.fakes import FakeClock, ListSource
from edge.capture.sources import Capture


class _Stop:
    """Capture's stop event whose waits move the clock and pass at once (the count of tries is exact
    on any CPU)."""

    def __init__(self, clock):
        self.clock, self.event = clock, threading.Event()

    def wait(self, timeout=None):
        self.clock.t += timeout
        return self.event.is_set()

    def __getattr__(self, name):
        return getattr(self.event, name)


def test_never_opens_names_open_timeout_as_the_limit_hit():
    """It stopped at 7.5 s of 10: the message says the next retry (4 s later) would pass the
    limit, not just the two numbers (the issue: "gave up after 7.5 s, open_timeout_s = 10")."""
    clock = FakeClock()
    cfg = SourceConfig(open_timeout_s=10.0, reconnect_initial_s=0.5, reconnect_max_s=4.0)
    cap = Capture(ListSource([], live=True, fail_open=1000, name="/dev/video0"), cfg, clock=clock)
    cap._stop = _Stop(clock)
    with pytest.raises(SourceError) as e:
        cap.start()
    assert str(e.value) == ("/dev/video0: no such camera (gave up after trying for 7.5 s, "
                            "source.open_timeout_s = 10 s is the limit hit: the next try, 4 s later, would "
                            "pass it)")


def test_lost_for_good_names_give_up_after():
    src = ListSource([np.zeros((4, 4, 3), np.uint8)] * 3, live=True, name="cam")
    cfg = SourceConfig(reconnect_initial_s=0.01, reconnect_max_s=0.02, read_timeout_s=5.0, give_up_after_s=0.05)
    cap = Capture(src, cfg).start()
    deadline = time.monotonic() + 30
    while not cap.ended:
        cap.get(0.05)
        assert time.monotonic() < deadline
    cap.stop()
    assert "giving up (source.give_up_after_s = 0.05 s is the limit hit)" in str(cap.error)
