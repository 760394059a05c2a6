"""Virtual time for gpiozero's pattern threads: actuator timing tests that no CPU load can break.

The buzzer/LED patterns run on gpiozero's background threads, which wait on
``threading.Event.wait(seconds)`` between pin changes, and MockPin stamps each
change with ``time.monotonic()``. Measured in real time, a pattern's durations
depend on how late a loaded (or emulated: ``make test-arm``) CPU wakes those
threads, so the tests needed a tolerance that a busy machine still broke
(issue 16). Here the threads run for real, but their waits and the pins' clock
use one virtual clock that only the test moves:

    vt = VirtualTime(); vt.install(monkeypatch)
    act.alert()
    vt.advance(0.2)      # wakes each waiting thread when its time comes, in order

``advance`` moves the clock from one wake-up to the next, and before each step
waits (in real time, as long as it takes) until every pattern thread is waiting
again or has ended, so a pin's history is exact and the same on any machine.

What it replaces, while installed: ``Event`` in gpiozero.threads and
gpiozero.mixins (GPIOThread.stopping, the button's events), ``monotonic`` in
gpiozero.pins.mock (pin timestamps, ticks), ``threading.Timer`` (the actuators'
fault-resume timer), and ``GPIOThread.start/run/stop`` to know which threads take
part. A thread that is not one of those and would wait on virtual time raises
(it would wait forever: only the test moves the clock), so a call that blocks the
caller on a pattern is caught too.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

INF = float("inf")


@dataclass(order=True)
class _Waiter:
    deadline: float
    seq: int
    event: object = field(compare=False)
    due: bool = field(default=False, compare=False)


class VirtualTime:
    def __init__(self, start: float = 1000.0, real_timeout: float = 120.0):
        self.now = start
        #: Longest real wait for the threads to settle before a step (a hang, not slowness).
        self.real_timeout = real_timeout
        self._cond = threading.Condition()
        self._threads: set[threading.Thread] = set()
        self._waiting: dict[threading.Thread, _Waiter] = {}
        self._seq = itertools.count()
        self.Event = self._event_class()
        self.Timer = self._timer_class()

    # -- the clock ------------------------------------------------------------------------
    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, waking each waiting thread at its deadline."""
        with self._cond:
            target = self.now + seconds
            while True:
                self._settle()
                if not self._waiting:
                    break
                thread, w = min(self._waiting.items(), key=lambda kv: kv[1])
                if w.deadline > target:
                    break
                self.now = max(self.now, w.deadline)
                self._wake(thread)
            self.now = target

    def settle(self) -> None:
        """Wait until every pattern thread waits on virtual time or has ended (no time passes)."""
        with self._cond:
            self._settle()

    @property
    def threads(self) -> set[threading.Thread]:
        with self._cond:
            return set(self._threads)

    # -- installing -----------------------------------------------------------------------
    def install(self, monkeypatch) -> "VirtualTime":
        import gpiozero.mixins
        import gpiozero.pins.mock
        import gpiozero.threads
        from gpiozero.threads import GPIOThread

        vt = self
        monkeypatch.setattr(gpiozero.threads, "Event", self.Event)
        monkeypatch.setattr(gpiozero.mixins, "Event", self.Event)
        monkeypatch.setattr(gpiozero.pins.mock, "monotonic", self.monotonic)
        monkeypatch.setattr(threading, "Timer", self.Timer)
        orig_start, orig_run, orig_stop = GPIOThread.start, GPIOThread.run, GPIOThread.stop

        def start(thread):
            vt._started(thread)
            try:
                orig_start(thread)
            except BaseException:
                vt._done(thread)
                raise

        def run(thread):
            try:
                orig_run(thread)
            finally:
                vt._done(thread)

        def stop(thread, timeout=10):
            # Set its stop event and cut short whatever it waits for (the button's hold thread
            # waits on another event, 0.1 s at a time: in real time it would notice soon).
            thread.stopping.set()
            vt._interrupt(thread)
            thread.join(timeout)

        monkeypatch.setattr(GPIOThread, "start", start)
        monkeypatch.setattr(GPIOThread, "run", run)
        monkeypatch.setattr(GPIOThread, "stop", stop)
        return self

    # -- internals ------------------------------------------------------------------------
    def _started(self, thread: threading.Thread) -> None:
        with self._cond:
            self._threads.add(thread)

    def _done(self, thread: threading.Thread) -> None:
        with self._cond:
            self._threads.discard(thread)
            self._waiting.pop(thread, None)
            self._cond.notify_all()

    def _wake(self, thread: threading.Thread) -> None:
        w = self._waiting.pop(thread, None)
        if w is not None:
            w.due = True
            self._cond.notify_all()

    def _interrupt(self, thread: threading.Thread) -> None:
        with self._cond:
            self._wake(thread)

    def _settle(self) -> None:
        give_up = time.monotonic() + self.real_timeout
        while True:
            running = [t for t in self._threads if t not in self._waiting]
            if not running:
                return
            left = give_up - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"threads neither wait on virtual time nor end after {self.real_timeout:g} s: "
                    f"{', '.join(t.name for t in running)}")
            self._cond.wait(min(left, 1.0))

    def _event_class(self):
        vt = self

        class Event:
            """threading.Event whose wait(timeout) passes in virtual time."""

            def __init__(self):
                self._flag = False

            def is_set(self) -> bool:
                return self._flag

            isSet = is_set

            def set(self) -> None:
                with vt._cond:
                    self._flag = True
                    for t, w in list(vt._waiting.items()):
                        if w.event is self:
                            vt._wake(t)
                    vt._cond.notify_all()

            def clear(self) -> None:
                with vt._cond:
                    self._flag = False

            def wait(self, timeout: float | None = None) -> bool:
                with vt._cond:
                    if self._flag:
                        return True
                    me = threading.current_thread()
                    if me not in vt._threads:
                        if timeout is not None and timeout <= 0:
                            return False
                        raise AssertionError(
                            f"thread {me.name!r} would wait {timeout} s for a pattern: only the "
                            "pattern threads may wait (nothing else moves the clock)")
                    w = _Waiter(INF if timeout is None else vt.now + max(timeout, 0.0), next(vt._seq), self)
                    vt._waiting[me] = w
                    vt._cond.notify_all()
                    while not (self._flag or w.due):
                        vt._cond.wait()
                    if vt._waiting.get(me) is w:
                        del vt._waiting[me]
                    return self._flag

        return Event

    def _timer_class(self):
        vt = self
        base = threading.Timer

        class Timer(base):
            def __init__(self, interval, function, args=None, kwargs=None):
                super().__init__(interval, function, args, kwargs)
                self.finished = vt.Event()

            def start(self):
                vt._started(self)
                super().start()

            def run(self):
                try:
                    super().run()
                finally:
                    vt._done(self)

        return Timer
