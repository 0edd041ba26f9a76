"""The bounded memory of recent ids: redeliveries recognised within the window, flat cost past it."""

from __future__ import annotations

import time

from telemetry.recent import RecentIds


def test_an_id_is_fresh_once_within_the_window_and_the_oldest_is_forgotten_first() -> None:
    seen = RecentIds(3)
    assert [seen.fresh(i) for i in ("a", "b", "a", "c")] == [True, True, False, True]
    assert seen.fresh("d") and len(seen) == 3  # "a" is forgotten: the oldest
    assert "a" not in seen and "b" in seen
    assert seen.fresh("a") and not seen.fresh("d")


def test_the_cost_per_id_stays_flat_once_the_window_is_full() -> None:
    """A dict emptied from the front (the exporter's old way) took 39 µs an id here past 100,000 ids:
    12 s for these 300,000. A set with a deque of the ids in order takes well under a second."""
    seen = RecentIds(100_000)
    started = time.process_time()
    for i in range(400_000):
        seen.fresh(f"event-{i}")
    assert time.process_time() - started < 3.0
    assert len(seen) == 100_000 and "event-399999" in seen and "event-299999" not in seen
