"""The embedded backend's reads: raw samples from the head and the chunks, partials from the roll-ups.

Rows still in a partition's head (``head.py``) are not in its chunks nor in
its roll-ups yet, so every read adds them: raw reads yield them beside the
decoded chunks, roll-up reads merge their partials. The two sets never
overlap, which keeps the answers exact.
"""

from __future__ import annotations

import heapq
import sqlite3
from datetime import date
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator

import numpy as np

from telemetry.meter.query import OPS, SampleQueryError
from telemetry.meter.statistics import Partial, from_ms
from telemetry.meter.store import chunks
from telemetry.meter.store.base import (
    DAY_MS, GRANULARITY, Kind, SampleRow, SeriesRow, day_start_ms, days_between, derived_sample_id, hash64, series_row,
)
from telemetry.meter.store.head import Head, partials
from telemetry.meter.store.packing import HOUR_MS, Rollup, add_partials, minute_count, minute_rollups
from telemetry.meter.store.sql import SERIES_COLUMNS
from telemetry.meter.store.sqlite_sql import ROLLUP_PARTIAL

RawRow = tuple[int, int, float, int, "str | None", int]  # series, ts, volume, recorded, msgid (None: derived), gid


def _sample_filter(terms: list[tuple[str, str, Any]]) -> tuple[list[tuple[Any, Any]], str | None]:
    """Per-sample terms evaluated in Python over decoded rows: (volume predicates, message id or None)."""
    vol: list[tuple[Any, Any]] = []
    msgid = None
    for f, op, v in terms:
        if f == "counter_volume":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise SampleQueryError(f"counter_volume needs a number, got {v!r}")
            vol.append((OPS[op], float(v)))
        elif f == "message_id":
            if op != "eq":
                raise SampleQueryError("message_id supports only op eq")
            msgid = str(v)
    return vol, msgid


class SqliteReads:
    """Mixed into ``SqliteSampleStore``: it provides ``index``, ``_conn``, ``_head``, ``_files``, ``_by_id``."""

    index: sqlite3.Connection
    _by_id: dict[int, SeriesRow]
    if TYPE_CHECKING:
        def _conn(self, kind: Kind, d: date, ttl: int | None = None) -> sqlite3.Connection: ...
        def _head(self, d: date, ttl: int | None) -> Head: ...
        def _files(self) -> list[tuple[Kind, int | None, date, Path]]: ...
        def _flush_ranges(self) -> None: ...

    def _series_by_id(self, sid: int) -> SeriesRow:
        s = self._by_id.get(sid)
        if s is None:
            if len(self._by_id) > 200_000:
                self._by_id.clear()
            cur = self.index.execute(f"SELECT {', '.join(SERIES_COLUMNS)} FROM series WHERE id = ?", (sid,))
            r = cur.fetchone()
            s = self._by_id[sid] = series_row(r)
        return s

    def _series(self, equalities: dict[str, str]) -> list[SeriesRow]:
        self._flush_ranges()
        where = " AND ".join(f"{k} = ?" for k in equalities)
        cur = self.index.execute(f"SELECT {', '.join(SERIES_COLUMNS)} FROM series" + (f" WHERE {where}" if where else ""),
                                 list(equalities.values()))
        return [series_row(r) for r in cur]

    def _load_sel(self, conn: sqlite3.Connection, sel: dict[int, int]) -> None:
        conn.execute("DELETE FROM temp.sel")
        conn.executemany("INSERT INTO temp.sel VALUES (?, ?)", sel.items())

    def _raw(self, conn: sqlite3.Connection, head: Head, sel: dict[int, int], lo: int | None, hi: int | None,
             terms: list[tuple[str, str, Any]], newest: int | None = None) -> Iterator[RawRow]:
        """Rows of the selected series (``sel``, also loaded in ``temp.sel``) in range, from the head and
        decoded chunks alike, filtered by the per-sample terms.

        ``newest=N``: the caller keeps only the N newest rows, so chunks are read newest first and no
        chunk is decoded once N rows newer than its end have been found."""
        vol_terms, want_id = _sample_filter(terms)
        lo_, hi_ = (lo if lo is not None else -(2**63)), (hi if hi is not None else 2**63 - 1)
        packed = conn.execute("SELECT c.series_id, c.data, sel.gid, c.t1 FROM temp.sel CROSS JOIN main.chunks c "
                              "ON c.series_id = sel.sid WHERE c.t0 < ? AND c.t1 >= ?"
                              + (" ORDER BY c.t1 DESC" if newest else ""), (hi_, lo_))
        top: list[int] = []  # min-heap of the ``newest`` latest times yielded so far

        def open_rows() -> Iterator[RawRow]:
            c = head.select(np.fromiter(sel, np.int64, len(sel)), lo, hi)
            for sid, t, v, r, m in zip(c.sid.tolist(), c.ts.tolist(), c.vol.tolist(), c.rec.tolist(), c.ids):
                yield sid, t, v, r, m, sel[sid]

        def unpacked() -> Iterator[RawRow]:
            for sid, blob, gid, t1 in packed:
                if newest and len(top) >= newest and top[0] > t1:
                    return
                ts, vols, recs, msgids = chunks.decode(blob)
                for t, v, r, m in zip(ts, vols, recs, msgids):
                    if lo_ <= t < hi_:
                        yield sid, t, v, r, m, gid

        for sid, t, v, r, m, gid in chain(open_rows(), unpacked()):  # lazily: unpacked() stops early on ``top``
            if vol_terms and not all(op(v, x) for op, x in vol_terms):
                continue
            if want_id is not None:
                if m is None:
                    s = self._series_by_id(sid)
                    m_full = derived_sample_id(s.meter, s.resource_id, from_ms(t).isoformat(), s.source)
                else:
                    m_full = m
                if m_full != want_id:
                    continue
            if newest:
                if len(top) < newest:
                    heapq.heappush(top, t)
                elif t > top[0]:
                    heapq.heapreplace(top, t)
            yield sid, t, v, r, m, gid

    def _aggregate(self, kind: Kind, sel: dict[int, int], origin: int, period: int | None,
                   lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]],
                   meter: str | None = None) -> dict[tuple[int, int], Partial]:
        out: dict[tuple[int, int], Partial] = {}
        if kind == "raw":
            for _, ttl, d, _ in self._select_files("raw", lo, hi):
                conn = self._conn("raw", d, ttl)
                self._load_sel(conn, sel)
                for _, t, v, _, _, gid in self._raw(conn, self._head(d, ttl), sel, lo, hi, terms):
                    key = ((t - origin) // period if period else 0, gid)
                    p = out.get(key)
                    if p is None:
                        out[key] = Partial(1, v, v * v, v, v, t, t)
                    else:
                        p.count += 1
                        p.sum += v
                        p.sumsq += v * v
                        if v < p.min:
                            p.min = v
                        if v > p.max:
                            p.max = v
                        if t < p.tmin:
                            p.tmin = t
                        if t > p.tmax:
                            p.tmax = t
            return out
        g = GRANULARITY[kind]
        cols = ROLLUP_PARTIAL
        single = len(set(sel.values())) == 1
        gid0 = next(iter(sel.values()))
        group = "r.bucket" if single else "r.bucket, sel.gid"
        for kind_, ttl, d, _ in self._select_files(kind, lo, hi):
            conn = self._conn(kind_, d, ttl)
            first = max(lo if lo is not None else 0, day_start_ms(d))
            first -= first % g
            last = min(hi if hi is not None else 2**62, day_start_ms(d) + DAY_MS)
            if meter is not None:
                sql = (f"SELECT r.bucket, {cols}, 0 FROM main.meter_rollup r WHERE r.bucket >= ? AND r.bucket < ? "
                       "AND r.meter = ? GROUP BY r.bucket")
                rows = conn.execute(sql, (first, last, meter))
            else:
                self._load_sel(conn, sel)
                rows = conn.execute(f"SELECT r.bucket, {cols}, sel.gid FROM temp.sel CROSS JOIN main.rollup r "
                                    f"ON r.series_id = sel.sid WHERE r.bucket >= ? AND r.bucket < ? GROUP BY {group}",
                                    (first, last))
            for bucket, n, s, sq, mn, mx, tmin, tmax, gid in rows:
                key = ((bucket - origin) // period if period else 0, gid if not single else gid0)
                p = out.get(key)
                if p is None:
                    out[key] = Partial(n, s, sq, mn, mx, tmin, tmax)
                else:
                    p.merge(Partial(n, s, sq, mn, mx, tmin, tmax))
            if kind == "m1" and meter is None:
                self._minutes(conn, first, last, origin, period, None if single else sel, gid0, out)
        # Rows still in the heads are in no roll-up yet: add theirs.
        mapping = {sid: gid0 for sid in sel} if single else sel
        ids = np.fromiter(mapping, np.int64, len(mapping))
        for _, ttl, d, _ in self._select_files("raw", lo, hi):
            head = self._head(d, ttl)
            if len(head):
                partials(head.select(ids, lo, hi), mapping, origin, period, out)
        return out

    def _minutes(self, conn: sqlite3.Connection, first: int, last: int, origin: int, period: int | None,
                 sel: dict[int, int] | None, gid0: int, out: dict[tuple[int, int], Partial]) -> None:
        """Add the minute partials in [first, last) of the series in ``temp.sel`` (all in group ``gid0``
        when ``sel`` is None) from their per-hour blobs."""
        found = conn.execute("SELECT m.series_id, m.hour, m.data FROM temp.sel CROSS JOIN main.minutes m "
                             "ON m.series_id = sel.sid WHERE m.hour >= ? AND m.hour < ?",
                             (first - first % HOUR_MS, last)).fetchall()
        if not found:
            return
        r = minute_rollups([(hour, blob) for _, hour, blob in found])
        if sel is None:
            gid = np.full(len(r.bucket), gid0, np.int64)
        else:
            gid = np.repeat(np.array([sel[sid] for sid, _, _ in found], np.int64),
                            [minute_count(blob) for _, _, blob in found])
        keep = (r.bucket >= first) & (r.bucket < last)
        if not keep.all():
            r = Rollup(*(getattr(r, f)[keep] for f in Rollup.__slots__))
            gid = gid[keep]
        bucket = (r.bucket - origin) // period if period else np.zeros(len(r.bucket), np.int64)
        add_partials(out, bucket, gid, r)

    def _select_files(self, kind: Kind, lo: int | None, hi: int | None) -> list[tuple[Kind, int | None, date, Path]]:
        files = [f for f in self._files() if f[0] == kind]
        days = set(days_between(lo, hi, sorted({f[2] for f in files})))
        return sorted((f for f in files if f[2] in days), key=lambda f: f[2], reverse=True)

    def _fetch(self, sids: list[int], lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]],
               limit: int | None) -> list[SampleRow]:
        out: list[SampleRow] = []
        by_day: dict[date, list[tuple[Kind, int | None, date, Path]]] = {}
        for f in self._select_files("raw", lo, hi):
            by_day.setdefault(f[2], []).append(f)
        sel = {sid: 0 for sid in sids}
        for d in sorted(by_day, reverse=True):
            day_rows: list[SampleRow] = []
            for _, ttl, _, _ in by_day[d]:
                conn = self._conn("raw", d, ttl)
                self._load_sel(conn, sel)
                for sid, t, v, r, m, _ in self._raw(conn, self._head(d, ttl), sel, lo, hi, terms, newest=limit):
                    if m is None:
                        s = self._series_by_id(sid)
                        mid = hash64(derived_sample_id(s.meter, s.resource_id, from_ms(t).isoformat(),
                                                       s.source).encode())
                    else:
                        mid = hash64(m.encode())
                    day_rows.append(SampleRow(sid, t, mid, v, r, m))
            day_rows.sort(key=lambda r: r.ts, reverse=True)
            out.extend(day_rows)
            if limit and len(out) >= limit:
                return out[:limit]
        return out
