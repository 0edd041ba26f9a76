"""Alarm definitions, state and history in SQLite under ``<data_dir>/rules/``.

SQLite because the rule engine's writes are few (definitions, transitions)
and must survive a restart with no server to run. Calls are blocking; the
engine runs them in a worker thread (``asyncio.to_thread``) so the event
loop keeps evaluating. One connection guarded by a lock: sqlite3 objects are
not safe to share between threads without it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from telemetry.rules.models import Alarm, AlarmChange
from telemetry.timeutil import utcnow

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (alarm_id TEXT PRIMARY KEY, name TEXT, project_id TEXT, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alarms_name ON alarms (name);
CREATE TABLE IF NOT EXISTS history (
  event_id TEXT PRIMARY KEY, alarm_id TEXT NOT NULL, ts TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS history_alarm ON history (alarm_id, ts);
CREATE INDEX IF NOT EXISTS history_ts ON history (ts);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


class RulesStore:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "rules.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- alarms ----------------------------------------------------------
    def put_alarm(self, alarm: Alarm) -> None:
        body = json.dumps(alarm.model_dump(mode="json"))
        with self._lock:
            self._db.execute(
                "INSERT INTO alarms VALUES (?,?,?,?) ON CONFLICT(alarm_id) DO UPDATE SET "
                "name=excluded.name, project_id=excluded.project_id, body=excluded.body",
                (alarm.alarm_id, alarm.name, alarm.project_id, body),
            )

    def put_alarms(self, alarms: list[Alarm]) -> None:
        rows = [(a.alarm_id, a.name, a.project_id, json.dumps(a.model_dump(mode="json"))) for a in alarms]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO alarms VALUES (?,?,?,?) ON CONFLICT(alarm_id) DO UPDATE SET "
                "name=excluded.name, project_id=excluded.project_id, body=excluded.body", rows)
            self._db.execute("COMMIT")

    def delete_alarm(self, alarm_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM alarms WHERE alarm_id=?", (alarm_id,)).rowcount > 0

    def load_alarms(self) -> list[Alarm]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM alarms").fetchall()
        return [Alarm.model_validate(json.loads(r[0])) for r in rows]

    # -- history ---------------------------------------------------------
    def add_changes(self, changes: list[AlarmChange]) -> None:
        rows = [(c.event_id, c.alarm_id, c.timestamp.isoformat(), c.type, c.model_dump_json()) for c in changes]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO history VALUES (?,?,?,?,?)", rows)
            self._db.execute("COMMIT")

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
        """Drop changes older than the history's own retention; returns how many went."""
        cutoff = ((now or utcnow()) - timedelta(seconds=keep_seconds)).isoformat()
        with self._lock:
            return self._db.execute("DELETE FROM history WHERE ts < ?", (cutoff,)).rowcount

    # -- small keyed state (trigger values, acknowledgements) --------------
    def put_kv(self, items: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO kv VALUES (?,?) ON CONFLICT(key) DO UPDATE SET body=excluded.body",
                [(k, json.dumps(v, default=str)) for k, v in items.items()])
            self._db.execute("COMMIT")

    def load_kv(self, prefix: str) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, body FROM kv WHERE key LIKE ?", (prefix + "%",)).fetchall()
        return {k: json.loads(b) for k, b in rows}


def persist(store: RulesStore, changes: list[AlarmChange], alarms: list[Alarm], kv: dict[str, Any]) -> None:
    """History entries, definitions and trigger state in one call (run in a worker thread)."""
    if changes:
        store.add_changes(changes)
    if alarms:
        store.put_alarms(alarms)
    if kv:
        store.put_kv(kv)
