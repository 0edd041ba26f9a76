"""The first page of a full-text search, without fetching every match.

With a phrase in the query, SQLite drives the search from the FTS5 list of
matching rows: it reads every match by rowid and sorts them all by time
before it takes the newest page. For a phrase on one line in seven of a
million (140,000 matches) that is about 240 ms for 200 rows; a rare phrase
takes 3 ms the same way.

Walking the time index from the newest row and keeping the rows that match
is the opposite: a few milliseconds when matches are common, a walk over the
whole range when they are rare. So the page first walks only the newest
``WINDOW`` rows of the range (their time bound is read from the covering time
index); when those hold a full page, it is exact: every row newer than the
bound was looked at. Otherwise the normal plan answers, having lost a few
milliseconds. Measured by benchmarks/console.py (docs/console.md).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from telemetry.events.rows import SELECT_COLUMNS
from telemetry.events.sql import Compiled

#: Rows of the range walked before giving the search back to the planner's own plan.
WINDOW = 20_000


def recent_page(conn: sqlite3.Connection, cond: str, params: list[Any], compiled: Compiled, want: int,
                newest_first: bool) -> list[tuple[Any, ...]] | None:
    """The first ``want`` matches in time order, or None when the newest ``WINDOW`` rows do not hold them."""
    try:
        return _recent_page(conn, cond, params, compiled, want, newest_first)
    except sqlite3.OperationalError as exc:
        if "no such" in str(exc):  # a partition created a moment ago, its schema not all in yet
            return None
        raise


def _recent_page(conn: sqlite3.Connection, cond: str, params: list[Any], compiled: Compiled, want: int,
                 newest_first: bool) -> list[tuple[Any, ...]] | None:
    order = "DESC" if newest_first else "ASC"
    edge = f"SELECT e.ts FROM events e WHERE {cond} ORDER BY e.ts {order} LIMIT 1 OFFSET ?"
    first = conn.execute(edge, [*params, 0]).fetchone()
    if first is None:
        return []  # nothing in the range at all
    bound = conn.execute(edge, [*params, WINDOW]).fetchone()
    window, window_params = "", []
    if bound is not None:
        # The window's own bounds come first: SQLite walks the time index between the first pair it
        # is given, and the range's (``cond``, still applied) would have it walk the whole partition.
        window = "e.ts >= ? AND e.ts <= ? AND "
        window_params = [bound[0], first[0]] if newest_first else [first[0], bound[0]]
    rows = conn.execute(
        f"SELECT {SELECT_COLUMNS} FROM events e INDEXED BY events_ts WHERE {window}({cond}) AND {compiled.where} "
        f"ORDER BY e.ts {order}, e.seq {order} LIMIT ?",
        [*window_params, *params, *compiled.params, want]).fetchall()
    if len(rows) >= want or bound is None:  # a full page, or the whole range fitted in the window
        return rows
    return None
