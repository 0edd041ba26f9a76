"""The bounded memory of recent ids: redeliveries recognised within the window, flat cost past it."""

from __future__ import annotations

from collections import deque

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


def _twin(seen: RecentIds) -> RecentIds:
    """Another memory holding the same ids in the same order (a compiled class has no deepcopy:
    telemetry._native); the order's entries, ids and batches' sets, are only ever dropped, never changed."""
    twin = RecentIds(seen.window)
    twin._ids = set(seen._ids)
    twin._order = deque(seen._order)
    return twin


def test_a_batch_is_told_apart_as_one_id_at_a_time_would_be() -> None:
    """``fresh_many`` answers what ``fresh`` would for each id in turn from the same memory: batches all
    new, batches with ids seen before or repeated within them, ids forgotten past the window; random input."""
    import random

    rng = random.Random(5)
    seen = RecentIds(50)
    for _ in range(400):
        batch = [f"id-{rng.randrange(300)}" for _ in range(rng.randrange(0, 12))]
        if rng.random() < 0.5:  # mostly new ids, as a log path's batches are
            batch = [f"new-{rng.random()}" for _ in batch]
        one_by_one = _twin(seen)
        answers = seen.fresh_many(batch)
        assert answers == [one_by_one.fresh(i) for i in batch]
        assert all(i in seen for i, new in zip(batch, answers) if new)  # what came last is remembered
        assert len(seen) <= 50 or len(seen._order) == 1


def test_a_batch_all_new_is_remembered_and_forgotten_as_one() -> None:
    seen = RecentIds(4)
    assert seen.fresh_many(["a", "b", "c"]) == [True, True, True]
    assert seen.fresh_many(["a", "d"]) == [False, True]  # one known: one at a time
    assert seen.fresh_many(["e", "e"]) == [True, False]  # a repeat within the batch
    assert "a" not in seen and len(seen) <= 4  # the first batch went whole
    assert seen.fresh_many(["x", "y", "z", "w", "v"]) == [True] * 5
    assert len(seen) == 5 and all(i in seen for i in "xyzwv")  # the newest batch stays, even past the window
    assert seen.fresh_many(["v"]) == [False]
    for _ in range(1000):  # empty batches leave nothing behind
        assert seen.fresh_many([]) == []
    assert len(seen._order) == 1
