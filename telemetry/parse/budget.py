"""The per-match time budget for the stdlib ``re`` engine.

``re`` is about twice as fast as the ``regex`` module on grok's expansions
but has no timeout. It does check for signals while it backtracks, though,
so a SIGALRM handler can stop a runaway match. Arming an interval timer per
match costs two system calls, so instead one ticking timer is armed around a
batch, and each match only notes when it started: the handler raises when the
current match has run past its budget (precision: budget + one tick).

Signals reach the main thread only; elsewhere (a worker thread) ``armed()``
is a no-op and the Grok falls back to the ``regex`` module's own timeout.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Expired", "armed", "watch"]


class Expired(Exception):
    """Raised inside a match that ran past its budget."""


class _Watch:
    __slots__ = ("active", "matching", "seq", "limit", "seen", "ticks", "tick")

    def __init__(self) -> None:
        self.active = False  # a timer ticks and our handler is installed
        self.matching = False
        self.seq = 0  # bumped by each match: the handler tells a new match from a long one
        self.limit = 0.0
        self.seen = -1
        self.ticks = 0
        self.tick = 0.02


watch = _Watch()


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    """Each tick: a match seen on the previous tick too has run for ``ticks`` ticks at least."""
    w = watch
    if not w.matching:
        return
    if w.seq != w.seen:
        w.seen, w.ticks = w.seq, 0
        return
    w.ticks += 1
    if w.ticks * w.tick >= w.limit:
        w.matching = False
        raise Expired()


@contextmanager
def armed(tick: float = 0.02) -> Iterator[bool]:
    """Own SIGALRM for a batch of matches; yields whether the fast path is available.

    A timer someone else armed (pytest-timeout, say) is put back afterwards.
    """
    if watch.active or threading.current_thread() is not threading.main_thread():
        yield watch.active
        return
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    watch.tick = tick
    old_timer = signal.setitimer(signal.ITIMER_REAL, tick, tick)
    began = time.monotonic()
    watch.active = True
    try:
        yield True
    finally:
        watch.active = False
        watch.matching = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_timer[0] > 0:
            left = max(old_timer[0] - (time.monotonic() - began), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, old_timer[1])
