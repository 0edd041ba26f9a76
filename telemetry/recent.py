"""A bounded memory of recently seen record ids: redeliveries are recognised, memory stays flat.

An OrderedDict, not a dict: a plain dict emptied from the front keeps its deleted
entries in place until it is next resized, and finding the oldest key
(``next(iter(d))``) walks over all of them. With a 100,000-id window that was
39 µs per record here once the window was full (``popitem(last=False)``: 0.4 µs),
so the exporter's log counters, which remembered ids that way, cost more than
the rest of the daemon per log line after its first 100,000 lines.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RecentIds"]


class RecentIds:
    """The last ``window`` ids seen, oldest forgotten first."""

    __slots__ = ("_ids", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self._ids: OrderedDict[str, None] = OrderedDict()

    def fresh(self, record_id: str) -> bool:
        """True the first time ``record_id`` comes within the window; it is remembered either way."""
        ids = self._ids
        if record_id in ids:
            return False
        ids[record_id] = None
        if len(ids) > self.window:
            ids.popitem(last=False)
        return True

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
