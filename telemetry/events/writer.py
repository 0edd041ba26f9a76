"""The embedded event store with its writes in a child process (``store.events.writer: process``).

Why a process: the store's writes are the daemon's largest single cost, and
in a thread they also stall: the sqlite3 module lets go of the GIL for each
row it steps and must win it back from the parsing thread after every one, up
to a switch interval (5 ms) each time, so a batch of 2,000 rows could take
seconds while the parser kept the GIL. The child (``telemetry.workerproc``)
writes with a core and a GIL of its own. Searches and histograms still read
the day files from the daemon (WAL readers never wait for the writer), and the
retention loop still runs there: it asks the child to close a day's writer
before unlinking its file. The expiry floor comes with each write, so the
child needs nothing of the daemon's settings beyond the folder.

Delivery is unchanged: ``insert`` returns once the child committed (the
stage acks after that); a writer lost mid-batch fails it with ``WorkerGone``
and the stage retries it with a new writer, the store's idempotence on ``id``
dropping whatever the lost one had committed.
"""

from __future__ import annotations

import marshal
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from telemetry.events.rows import Row, rows_of
from telemetry.events.store import EventStore, Written
from telemetry.workerproc import ChildProcess, serve_stdio

__all__ = ["ProcessEventStore"]


class ProcessEventStore(EventStore):
    """An EventStore whose ``write_kept`` and ``close_writer`` run in a child process; reads stay here."""

    def __init__(self, root: Path, ttl: float, min_free_disk: float = 0.05, **kwargs: Any) -> None:
        super().__init__(root, ttl, min_free_disk, **kwargs)
        self.child = ChildProcess("event store writer", "telemetry.events.writer", [str(self.root)])

    def describe(self) -> str:
        return f"{self.root} (writes in a child process)"

    def write_kept(self, rows: list[Row], floor: int) -> Written:
        return Written(*self.child.call("write_kept", rows, floor))

    def insert_records(self, records: Sequence[Any], packs: Sequence[bytes] = ()) -> tuple[int, list[tuple[int, str]]]:
        """The records themselves go to the child, which builds their rows: off the daemon's GIL too.

        ``packs`` are more records as the parse workers marshalled them (``packed_batches``), passed on
        as they are; a reason's index counts the records first, then each pack's in order.
        """
        written, bad = self.child.call("write_records", list(records), self.oldest_kept_us(), list(packs))
        return self._account(Written(*written)), bad

    def close_writer(self, day: date) -> None:
        if self.child.running:  # a child that is not running has no writer open
            self.child.call("close_writer", day)

    def close(self) -> None:
        self.child.close()
        super().close()


def main() -> None:
    from telemetry.gctune import tune_for_daemon

    store = EventStore(Path(sys.argv[1]), ttl=float("inf"))  # the floor comes with each write
    tune_for_daemon()  # a long-running process of the daemon's, unpickling thousands of records a batch

    def write_records(records: list[Any], floor: int, packs: Sequence[bytes] = ()) -> tuple[Written, list[tuple[int, str]]]:
        for packed in packs:
            records += marshal.loads(packed)
        rows, bad = rows_of(records)
        return store.write_kept(rows, floor), bad

    serve_stdio({"write_kept": store.write_kept, "write_records": write_records, "close_writer": store.close_writer},
                "telemetry events writer", on_exit=store.close)


if __name__ == "__main__":
    main()
