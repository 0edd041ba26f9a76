"""Alarm definitions, state and history: the interface, and its SQLite backend under ``<data_dir>/rules/``.

A definition and its state are kept apart (``body`` and ``state``) so that
writing a definition (a rules file loaded at start, an API update) never
overwrites a state another server wrote meanwhile. Every state has a
``version``: a writer states the version it read, and ``commit`` refuses
the write when the stored one moved on, so two evaluators of one alarm (a
brief overlap while servers join) can never both record, nor both send, a
transition. The transitions a commit accepts go into a journal in the same
transaction and leave it once the bus holds them: a crash between the two
loses nothing, as the journal is published again (``journal_due``).

SQLite because a single server's writes are few and must survive a restart
with no database server to run; PostgreSQL (``store_pg.py``) when several
servers share them. Calls are blocking; the engine runs them in a worker
thread (``asyncio.to_thread``) so the event loop keeps evaluating.
"""

from __future__ import annotations

import abc
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from telemetry.rules.models import Alarm, AlarmChange
from telemetry.timeutil import utcnow

#: Fields of an alarm that are its state, not its definition.
STATE_FIELDS = ("state", "state_timestamp", "state_reason", "group_states")
#: Seconds a journaled transition waits before any server publishes it again: its writer
#: normally publishes it within milliseconds and then drops it from the journal.
JOURNAL_GRACE = 10.0


class Stored(NamedTuple):
    """A value as stored, with the version of its state."""

    value: Any
    version: int


@dataclass
class Change:
    """A row another server changed: an alarm (None when deleted) or a keyed state."""

    kind: str  # "alarm" or "kv"
    key: str
    version: int
    value: Any  # Alarm, kv value, or None for a deleted alarm


@dataclass
class Commit:
    """What one flush of the engine writes: new states (each with the version read), history, transitions."""

    alarms: list[tuple[Alarm, int]] = field(default_factory=list)
    kv: list[tuple[str, Any, int]] = field(default_factory=list)
    changes: list[AlarmChange] = field(default_factory=list)
    #: (key of the alarm or kv state it belongs to, transition id, the record as bytes)
    records: list[tuple[str, str, bytes]] = field(default_factory=list)


def split_alarm(alarm: Alarm) -> tuple[str, str]:
    """``(definition, state)`` as JSON texts."""
    data = alarm.model_dump(mode="json")
    state = {k: data.pop(k) for k in STATE_FIELDS if k in data}
    return json.dumps(data), json.dumps(state)


def merge_alarm(body: str, state: str | None) -> Alarm:
    data = json.loads(body)
    if state:
        data.update(json.loads(state))
    return Alarm.model_validate(data)


class RulesStore(abc.ABC):
    """The rule engine's durable state; every method blocks (call it from a worker thread)."""

    # -- alarms ----------------------------------------------------------------------------
    @abc.abstractmethod
    def put_alarm(self, alarm: Alarm) -> int:
        """Create or replace a definition through the API: its state is the caller's word; returns its new version."""

    @abc.abstractmethod
    def put_alarms(self, alarms: list[Alarm]) -> None:
        """Definitions from rules files: a new one gets its state, a known one keeps the stored state."""

    @abc.abstractmethod
    def delete_alarm(self, alarm_id: str) -> bool:
        """False when there was no such alarm."""

    @abc.abstractmethod
    def load_alarms(self) -> list[Stored]:
        """Every alarm (definition and state) with its state's version."""

    # -- history ---------------------------------------------------------------------------
    @abc.abstractmethod
    def add_changes(self, changes: list[AlarmChange]) -> None:
        """Append history entries; an entry already there (same event_id) is kept once."""

    @abc.abstractmethod
    def history(self, alarm_id: str, limit: int = 1000, types: list[str] | None = None) -> list[AlarmChange]:
        """Newest first."""

    @abc.abstractmethod
    def expire_history(self, keep_seconds: float, now: datetime | None = None) -> int:
        """Drop changes (and deleted alarms' tombstones) older than the retention; returns how many went."""

    # -- keyed state (trigger values, acknowledgements) -------------------------------------
    @abc.abstractmethod
    def load_kv(self, prefix: str) -> dict[str, Stored]:
        """Values whose key starts with ``prefix``, with their versions."""

    # -- evaluation results ----------------------------------------------------------------
    @abc.abstractmethod
    def commit(self, c: Commit) -> set[str]:
        """Write states whose stored version is still the one read, their history and transitions, atomically.

        Returns the keys refused because another writer moved their version on;
        their history entries and transitions are not written.
        """

    @abc.abstractmethod
    def journal_due(self, limit: int = 500, grace: float = JOURNAL_GRACE) -> list[tuple[str, bytes]]:
        """Transitions journaled ``grace`` seconds ago or earlier and still not published, claimed for a while."""

    @abc.abstractmethod
    def journal_done(self, ids: list[str]) -> None:
        """The bus holds these transitions."""

    # -- what the others changed ------------------------------------------------------------
    @abc.abstractmethod
    def cursor(self) -> Any:
        """A position from which ``changes`` reports later writes; take it before loading."""

    @abc.abstractmethod
    def changes(self, cursor: Any) -> tuple[list[Change], Any]:
        """Alarms and keyed states written since ``cursor`` (some maybe again), and the next cursor."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        return type(self).__name__


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (alarm_id TEXT PRIMARY KEY, name TEXT, project_id TEXT, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alarms_name ON alarms (name);
CREATE TABLE IF NOT EXISTS history (
  event_id TEXT PRIMARY KEY, alarm_id TEXT NOT NULL, ts TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS history_alarm ON history (alarm_id, ts);
CREATE INDEX IF NOT EXISTS history_ts ON history (ts);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (id TEXT PRIMARY KEY, key TEXT NOT NULL, record BLOB NOT NULL, retry_at REAL NOT NULL);
"""
#: Columns added to files written before state and definition were kept apart.
SQLITE_COLUMNS = {
    "alarms": ("state TEXT", "version INTEGER NOT NULL DEFAULT 0", "seq INTEGER NOT NULL DEFAULT 0",
               "deleted INTEGER NOT NULL DEFAULT 0", "deleted_at REAL"),
    "kv": ("version INTEGER NOT NULL DEFAULT 0", "seq INTEGER NOT NULL DEFAULT 0"),
}


class SqliteRulesStore(RulesStore):
    """One connection guarded by a lock: sqlite3 objects are not safe to share between threads without it."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "rules.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SQLITE_SCHEMA)
        for table, columns in SQLITE_COLUMNS.items():
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            for col in columns:
                if col.split()[0] not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {col}")
        self._seq = max(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM alarms").fetchone()[0],
                        self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM kv").fetchone()[0])

    def describe(self) -> str:
        return f"sqlite://{self.path}"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    # -- alarms ----------------------------------------------------------------------------
    def put_alarm(self, alarm: Alarm) -> int:
        body, state = split_alarm(alarm)
        with self._tx() as db:
            return db.execute(
                "INSERT INTO alarms (alarm_id, name, project_id, body, state, version, seq, deleted) "
                "VALUES (?,?,?,?,?,1,?,0) ON CONFLICT(alarm_id) DO UPDATE SET name=excluded.name, "
                "project_id=excluded.project_id, body=excluded.body, state=excluded.state, "
                "version=alarms.version+1, seq=excluded.seq, deleted=0 RETURNING version",
                (alarm.alarm_id, alarm.name, alarm.project_id, body, state, self._next())).fetchone()[0]

    def put_alarms(self, alarms: list[Alarm]) -> None:
        with self._tx() as db:
            for a in alarms:
                body, state = split_alarm(a)
                db.execute(
                    "INSERT INTO alarms (alarm_id, name, project_id, body, state, version, seq, deleted) "
                    "VALUES (?,?,?,?,?,0,?,0) ON CONFLICT(alarm_id) DO UPDATE SET name=excluded.name, "
                    "project_id=excluded.project_id, body=excluded.body, seq=excluded.seq, deleted=0, "
                    "state=CASE WHEN alarms.deleted THEN excluded.state ELSE COALESCE(alarms.state, excluded.state) END",
                    (a.alarm_id, a.name, a.project_id, body, state, self._next()))

    def delete_alarm(self, alarm_id: str) -> bool:
        with self._tx() as db:
            return db.execute("UPDATE alarms SET deleted=1, deleted_at=?, seq=? WHERE alarm_id=? AND NOT deleted",
                              (time.time(), self._next(), alarm_id)).rowcount > 0

    def load_alarms(self) -> list[Stored]:
        with self._lock:
            rows = self._db.execute("SELECT body, state, version FROM alarms WHERE NOT deleted").fetchall()
        return [Stored(merge_alarm(b, s), v) for b, s, v in rows]

    # -- history ---------------------------------------------------------------------------
    def add_changes(self, changes: list[AlarmChange]) -> None:
        with self._tx() as db:
            self._add_changes(db, changes)

    @staticmethod
    def _add_changes(db: sqlite3.Connection, changes: list[AlarmChange]) -> None:
        db.executemany("INSERT OR IGNORE INTO history VALUES (?,?,?,?,?)",
                       [(c.event_id, c.alarm_id, c.timestamp.isoformat(), c.type, c.model_dump_json()) for c in changes])

    def history(self, alarm_id: str, limit: int = 1000, types: list[str] | None = None) -> list[AlarmChange]:
        sql = "SELECT body FROM history WHERE alarm_id=?"
        args: list[Any] = [alarm_id]
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            args += types
        sql += " ORDER BY ts DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [AlarmChange.model_validate_json(r[0]) for r in rows]

    def expire_history(self, keep_seconds: float, now: datetime | None = None) -> int:
        now = now or utcnow()
        cutoff = (now - timedelta(seconds=keep_seconds)).isoformat()
        with self._tx() as db:
            n = db.execute("DELETE FROM history WHERE ts < ?", (cutoff,)).rowcount
            db.execute("DELETE FROM alarms WHERE deleted AND deleted_at < ?", (now.timestamp() - keep_seconds,))
        return n

    # -- keyed state -------------------------------------------------------------------------
    def load_kv(self, prefix: str) -> dict[str, Stored]:
        with self._lock:
            rows = self._db.execute("SELECT key, body, version FROM kv WHERE key LIKE ?", (prefix + "%",)).fetchall()
        return {k: Stored(json.loads(b), v) for k, b, v in rows}

    # -- evaluation results ----------------------------------------------------------------
    def commit(self, c: Commit) -> set[str]:
        refused: set[str] = set()
        with self._tx() as db:
            for alarm, expected in c.alarms:
                _, state = split_alarm(alarm)
                if db.execute("UPDATE alarms SET state=?, version=version+1, seq=? WHERE alarm_id=? AND version=?",
                              (state, self._next(), alarm.alarm_id, expected)).rowcount == 0:
                    refused.add(alarm.alarm_id)
            for key, value, expected in c.kv:
                body = json.dumps(value, default=str)
                if expected == 0:
                    cur = db.execute("INSERT INTO kv (key, body, version, seq) VALUES (?,?,1,?) ON CONFLICT(key) "
                                     "DO UPDATE SET body=excluded.body, version=kv.version+1, seq=excluded.seq "
                                     "WHERE kv.version=0", (key, body, self._next()))
                else:
                    cur = db.execute("UPDATE kv SET body=?, version=version+1, seq=? WHERE key=? AND version=?",
                                     (body, self._next(), key, expected))
                if cur.rowcount == 0:
                    refused.add(key)
            self._add_changes(db, [ch for ch in c.changes if ch.alarm_id not in refused])
            retry = time.time() + JOURNAL_GRACE
            db.executemany("INSERT OR IGNORE INTO journal VALUES (?,?,?,?)",
                           [(tid, key, rec, retry) for key, tid, rec in c.records if key not in refused])
        return refused

    def journal_due(self, limit: int = 500, grace: float = JOURNAL_GRACE) -> list[tuple[str, bytes]]:
        now = time.time()
        with self._tx() as db:
            rows = db.execute("SELECT id, record FROM journal WHERE retry_at <= ? ORDER BY retry_at LIMIT ?",
                              (now, limit)).fetchall()
            db.executemany("UPDATE journal SET retry_at=? WHERE id=?", [(now + grace, r[0]) for r in rows])
        return [(r[0], bytes(r[1])) for r in rows]

    def journal_done(self, ids: list[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM journal WHERE id=?", [(i,) for i in ids])

    # -- what changed --------------------------------------------------------------------------
    def cursor(self) -> Any:
        with self._lock:
            return self._seq

    def changes(self, cursor: Any) -> tuple[list[Change], Any]:
        with self._lock:
            top = self._seq
            alarms = self._db.execute("SELECT alarm_id, body, state, version, deleted FROM alarms WHERE seq > ?",
                                      (cursor,)).fetchall()
            kv = self._db.execute("SELECT key, body, version FROM kv WHERE seq > ?", (cursor,)).fetchall()
        out = [Change("alarm", aid, v, None if d else merge_alarm(b, s)) for aid, b, s, v, d in alarms]
        out += [Change("kv", k, v, json.loads(b)) for k, b, v in kv]
        return out, top


def open_rules_store(url: str | None, folder: Path) -> RulesStore:
    """The shared PostgreSQL store when the cluster section names one, else SQLite under ``folder``."""
    if url:
        from telemetry.rules.store_pg import PostgresRulesStore

        return PostgresRulesStore(url)
    return SqliteRulesStore(folder)
