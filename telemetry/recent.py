"""A bounded memory of recently seen record ids: redeliveries are recognised, memory stays flat.

A set to look ids up in and a deque of the same ids in arrival order to forget the
oldest: neither is ever walked. A plain dict emptied from the front (its oldest key
found with ``next(iter(d))``) walks over the deleted entries it keeps until it is next
resized: with a 100,000-id window that was 39 µs per record once the window was full,
so the exporter's log counters, which remembered ids that way, cost more than the rest
of the daemon per log line after its first 100,000 lines. An OrderedDict does not walk,
but keeps a linked node per id: 0.27-0.31 µs an id against 0.13 for the set and the
deque (a million ids through a 100,000 window, one process), and the rules stage and the
exporter each ask once per log event.

``fresh_many`` takes a batch (the rules stage's and the exporter's, a few hundred
events each) in a few C calls when none of its ids is known and none repeats, the
usual case: asked one id at a time the two spent 6% of the all-in-one daemon's time
here (its profile with ``--gil``, ``benchmarks/pipeline.py``); 400,000 uuid4 ids in
batches of 500 through a 100,000 window cost 0.28 µs an id that way, 0.15 by the batch.
Such a batch is remembered, and forgotten, as one entry: the window may hold up to
a batch fewer ids than ``window``, and always holds the newest entry.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence

__all__ = ["RecentIds"]


class RecentIds:
    """The last ``window`` ids seen (whole batches), oldest forgotten first."""

    __slots__ = ("_ids", "_order", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self._ids: set[str] = set()
        #: What was remembered, oldest first: an id alone, or a batch's ids as one set.
        self._order: deque[str | Collection[str]] = deque()

    def fresh(self, record_id: str) -> bool:
        """True the first time ``record_id`` comes within the window; it is remembered either way."""
        ids = self._ids
        if record_id in ids:
            return False
        ids.add(record_id)
        self._order.append(record_id)
        if len(ids) > self.window:
            self._forget()
        return True

    def fresh_many(self, record_ids: Sequence[str]) -> list[bool]:
        """``[self.fresh(i) for i in record_ids]``, without a call per id when the batch is all new."""
        if not record_ids:
            return []  # nothing to remember: no empty entry in the order either
        batch = set(record_ids)
        ids = self._ids
        if len(batch) != len(record_ids) or not ids.isdisjoint(batch):
            return [self.fresh(i) for i in record_ids]
        ids |= batch
        self._order.append(batch)
        if len(ids) > self.window:
            self._forget()
        return [True] * len(record_ids)

    def _forget(self) -> None:
        ids, order = self._ids, self._order
        while len(ids) > self.window and len(order) > 1:
            old = order.popleft()
            if old.__class__ is str:
                ids.discard(old)
            else:
                ids.difference_update(old)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
