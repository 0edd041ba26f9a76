"""The durable outbox: every (transition x action) is written here before the bus ack.

Once ``add`` committed, the item survives a crash or restart, and delivery
workers pick it up again. Item ids derive from the transition and the
action, so a transition the bus delivers twice is inserted once. The same
database keeps the delivery log, silences, the allow-list entries set
through the API and the small state the noise controls need (last send per
alarm and action, current state of every alarm for inhibition), so all of
it survives restarts.

A worker *claims* the rows it sends: the claim names the worker and lasts
a lease, and its result is written only if the claim is still its own. On
PostgreSQL (``outbox_pg.py``, several servers) rows are claimed with
``FOR UPDATE SKIP LOCKED``, so two servers never send the same row, and a
server that dies mid-delivery leaves its rows to another once the lease
ran out. The embedded backend here is SQLite in WAL mode with
``synchronous=FULL``, used by one server alone.
"""

from __future__ import annotations

import abc
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from telemetry.actions.models import DeliveryRow, Job, Silence, SilenceIn
from telemetry.models import derived_id
from telemetry.timeutil import utcnow

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
  id TEXT PRIMARY KEY, target TEXT NOT NULL, notifier TEXT NOT NULL, transition TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
  group_key TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL, last_status INTEGER, last_error TEXT,
  lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(status, next_at);
CREATE INDEX IF NOT EXISTS outbox_group ON outbox(group_key, status);
CREATE TABLE IF NOT EXISTS deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT, time REAL NOT NULL, alarm_id TEXT, alarm_name TEXT,
  state TEXT, notifier TEXT, target TEXT, status TEXT NOT NULL, http_status INTEGER, attempts INTEGER, error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_time ON deliveries(time);
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, body TEXT NOT NULL, ends_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS alarms (alarm_id TEXT PRIMARY KEY, state TEXT, severity TEXT, labels TEXT, updated REAL);
CREATE TABLE IF NOT EXISTS sent (key TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def item_id(transition: dict[str, Any], target: str) -> str:
    """Stable across redelivery of the same transition: the dedup key of the outbox.

    The rule engine's transition id when there is one (a transition published
    again from its journal is the same transition), else its natural key.
    """
    t = transition
    if t.get("transition_id"):
        return derived_id("action", t["transition_id"], target)
    return derived_id("action", t.get("alarm_id"), t.get("timestamp"), t.get("previous"), t.get("current"), target)


def _job(row: Any) -> Job:
    return Job(id=row["id"], target=row["target"], notifier=row["notifier"], transition=json.loads(row["transition"]),
               attempts=row["attempts"], group_key=row["group_key"], created_at=row["created_at"])


class Outbox(abc.ABC):
    """The queue, the delivery log and the noise-control state; every call blocks (it is short)."""

    @abc.abstractmethod
    def tx(self) -> Any:
        """A context manager: one durable transaction (calls inside join it)."""

    @abc.abstractmethod
    def add(self, job: Job, not_before: float, now: float | None = None) -> bool: ...

    @abc.abstractmethod
    def due(self, now: float, limit: int) -> list[Job]:
        """Pending rows due now and claimed by no one (a look, not a claim)."""

    @abc.abstractmethod
    def claim(self, now: float, limit: int, owner: str, lease: float) -> list[Job]:
        """Take up to ``limit`` due, unclaimed rows (and the pending rows grouped with them) for ``lease`` s."""

    @abc.abstractmethod
    def release(self, jobs: list[Job], owner: str) -> None:
        """Give claimed rows back unsent (a stop): they are due again at once."""

    @abc.abstractmethod
    def next_due(self) -> float | None: ...

    @abc.abstractmethod
    def pending(self) -> int: ...

    @abc.abstractmethod
    def finish(self, jobs: list[Job], status: str, attempts: int, http_status: int | None, error: str,
               next_at: float | None = None, owner: str | None = None) -> int:
        """Record an attempt's outcome on rows still claimed by ``owner``; returns how many were."""

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def requeue(self, item: str) -> bool: ...

    @abc.abstractmethod
    def log(self, *, item: str | None, transition: dict[str, Any], notifier: str, target: str, status: str,
            http_status: int | None = None, attempts: int = 0, error: str = "", at: float | None = None) -> None:
        """``target`` and ``error`` must already be redacted."""

    @abc.abstractmethod
    def deliveries(self, limit: int = 100, status: str | None = None, alarm_id: str | None = None) -> list[DeliveryRow]: ...

    @abc.abstractmethod
    def prune(self, before: float) -> int: ...

    @abc.abstractmethod
    def last_sent(self, key: str) -> float | None:
        """Inside a ``tx``, also holds ``key`` until it ends, so two servers cannot both decide to send."""

    @abc.abstractmethod
    def set_sent(self, key: str, at: float) -> None: ...

    @abc.abstractmethod
    def set_alarm(self, alarm_id: str, state: str, severity: str, labels: dict[str, str]) -> None: ...

    @abc.abstractmethod
    def firing(self, severities: list[str]) -> list[tuple[str, dict[str, str]]]: ...

    @abc.abstractmethod
    def add_silence(self, spec: SilenceIn) -> Silence: ...

    @abc.abstractmethod
    def silences(self, active_only: bool = False) -> list[Silence]: ...

    @abc.abstractmethod
    def get_silence(self, sid: str) -> Silence | None: ...

    @abc.abstractmethod
    def delete_silence(self, sid: str) -> bool: ...

    @abc.abstractmethod
    def get_setting(self, key: str, default: Any = None) -> Any: ...

    @abc.abstractmethod
    def put_setting(self, key: str, value: Any) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def describe(self) -> str: ...


def new_silence(spec: SilenceIn) -> Silence:
    return Silence(id=derived_id("silence", time.time_ns(), os.getpid(), spec.model_dump_json()), **spec.model_dump())


class SqliteOutbox(Outbox):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        os.chmod(path, 0o600)  # targets hold secrets (pre-signed URLs, routing keys)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        have = {r[1] for r in self.db.execute("PRAGMA table_info(outbox)")}
        for col in ("lease_owner TEXT", "lease_until REAL NOT NULL DEFAULT 0"):
            if col.split()[0] not in have:  # a file from before claims
                self.db.execute(f"ALTER TABLE outbox ADD COLUMN {col}")
        # This file has one user, this process: claims left by a previous run are void.
        self.db.execute("UPDATE outbox SET lease_owner=NULL, lease_until=0 WHERE lease_owner IS NOT NULL")
        self._in_tx = False

    def close(self) -> None:
        self.db.close()

    def describe(self) -> str:
        return f"sqlite://{self.path}"

    @contextmanager
    def tx(self) -> Iterator[None]:
        """One durable transaction: the dispatcher's whole batch commits or none of it does."""
        if self._in_tx:
            yield
            return
        self._in_tx = True
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._in_tx = False

    # -- the queue ---------------------------------------------------------
    def add(self, job: Job, not_before: float, now: float | None = None) -> bool:
        """Insert unless already there (redelivered transition); True when new."""
        now = now or time.time()
        cur = self.db.execute(
            "INSERT OR IGNORE INTO outbox(id, target, notifier, transition, next_at, group_key, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (job.id, job.target, job.notifier, json.dumps(job.transition, default=str), not_before, job.group_key,
             now, now),
        )
        return cur.rowcount == 1

    def due(self, now: float, limit: int) -> list[Job]:
        rows = self.db.execute(
            "SELECT * FROM outbox WHERE status='pending' AND next_at<=? AND lease_until<=? ORDER BY next_at LIMIT ?",
            (now, now, limit),
        ).fetchall()
        return [_job(r) for r in rows]

    def claim(self, now: float, limit: int, owner: str, lease: float) -> list[Job]:
        with self.tx():
            jobs = self.due(now, limit)
            groups = {j.group_key for j in jobs if j.group_key}
            for g in groups:  # a grouped row brings every pending row of its group along
                jobs += [_job(r) for r in self.db.execute(
                    "SELECT * FROM outbox WHERE status='pending' AND group_key=? AND lease_until<=? ORDER BY created_at",
                    (g, now))]
            jobs = list({j.id: j for j in jobs}.values())
            self.db.executemany("UPDATE outbox SET lease_owner=?, lease_until=? WHERE id=?",
                                [(owner, now + lease, j.id) for j in jobs])
        return jobs

    def release(self, jobs: list[Job], owner: str) -> None:
        with self.tx():
            self.db.executemany("UPDATE outbox SET lease_owner=NULL, lease_until=0 WHERE id=? AND lease_owner=?",
                                [(j.id, owner) for j in jobs])

    def next_due(self) -> float | None:
        row = self.db.execute("SELECT MIN(MAX(next_at, lease_until)) FROM outbox WHERE status='pending'").fetchone()
        return row[0]

    def pending(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM outbox WHERE status='pending'").fetchone()[0]

    def finish(self, jobs: list[Job], status: str, attempts: int, http_status: int | None, error: str,
               next_at: float | None = None, owner: str | None = None) -> int:
        now = time.time()
        n = 0
        for j in jobs:
            n += self.db.execute(
                "UPDATE outbox SET status=?, attempts=?, last_status=?, last_error=?, updated_at=?,"
                " next_at=COALESCE(?, next_at), lease_owner=NULL, lease_until=0 WHERE id=? AND"
                " (? IS NULL OR lease_owner=?)",
                (status, attempts, http_status, error, now, next_at, j.id, owner, owner),
            ).rowcount
        return n

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, target, notifier, transition, attempts, last_status, last_error, updated_at FROM outbox"
            " WHERE status='dead' ORDER BY updated_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [dict(r) | {"transition": json.loads(r["transition"])} for r in rows]

    def requeue(self, item: str) -> bool:
        cur = self.db.execute(
            "UPDATE outbox SET status='pending', attempts=0, next_at=?, updated_at=? WHERE id=? AND status='dead'",
            (time.time(), time.time(), item),
        )
        return cur.rowcount == 1

    # -- the delivery log --------------------------------------------------
    def log(self, *, item: str | None, transition: dict[str, Any], notifier: str, target: str, status: str,
            http_status: int | None = None, attempts: int = 0, error: str = "", at: float | None = None) -> None:
        """``target`` and ``error`` must already be redacted."""
        self.db.execute(
            "INSERT INTO deliveries(item_id, time, alarm_id, alarm_name, state, notifier, target, status, http_status,"
            " attempts, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (item, at or time.time(), transition.get("alarm_id"), transition.get("alarm_name"), transition.get("current"),
             notifier, target, status, http_status, attempts, error[:2000]),
        )

    def deliveries(self, limit: int = 100, status: str | None = None, alarm_id: str | None = None) -> list[DeliveryRow]:
        sql, args = "SELECT * FROM deliveries WHERE 1=1", list[str | int]()
        if status:
            sql += " AND status LIKE ?"
            args.append(status + "%")
        if alarm_id:
            sql += " AND alarm_id=?"
            args.append(alarm_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        from datetime import datetime, timezone

        return [
            DeliveryRow(**(dict(r) | {"time": datetime.fromtimestamp(r["time"], timezone.utc),
                                      "attempts": r["attempts"] or 0, "error": r["error"] or ""}))
            for r in self.db.execute(sql, args)
        ]

    def prune(self, before: float) -> int:
        n = self.db.execute("DELETE FROM outbox WHERE status IN ('delivered','skipped') AND updated_at<?",
                            (before,)).rowcount
        n += self.db.execute("DELETE FROM deliveries WHERE time<?", (before,)).rowcount
        self.db.execute("DELETE FROM silences WHERE ends_at<?", (before,))
        self.db.execute("DELETE FROM sent WHERE at<?", (before,))
        return n

    # -- noise-control state ----------------------------------------------
    def last_sent(self, key: str) -> float | None:
        row = self.db.execute("SELECT at FROM sent WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_sent(self, key: str, at: float) -> None:
        self.db.execute("INSERT INTO sent(key, at) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET at=excluded.at",
                        (key, at))

    def set_alarm(self, alarm_id: str, state: str, severity: str, labels: dict[str, str]) -> None:
        self.db.execute(
            "INSERT INTO alarms(alarm_id, state, severity, labels, updated) VALUES (?,?,?,?,?) ON CONFLICT(alarm_id)"
            " DO UPDATE SET state=excluded.state, severity=excluded.severity, labels=excluded.labels,"
            " updated=excluded.updated",
            (alarm_id, state, severity, json.dumps(labels), time.time()),
        )

    def firing(self, severities: list[str]) -> list[tuple[str, dict[str, str]]]:
        marks = ",".join("?" * len(severities)) or "''"
        rows = self.db.execute(
            f"SELECT alarm_id, labels FROM alarms WHERE state='alarm' AND severity IN ({marks})", severities
        ).fetchall()
        return [(r[0], json.loads(r[1])) for r in rows]

    # -- silences ------------------------------------------------------------
    def add_silence(self, spec: SilenceIn) -> Silence:
        s = new_silence(spec)
        self.db.execute("INSERT INTO silences(id, body, ends_at) VALUES (?,?,?)",
                        (s.id, s.model_dump_json(), s.ends_at.timestamp()))
        return s

    def silences(self, active_only: bool = False) -> list[Silence]:
        out = [Silence.model_validate_json(r[0]) for r in self.db.execute("SELECT body FROM silences ORDER BY ends_at")]
        if active_only:
            now = utcnow()
            out = [s for s in out if s.active(now)]
        return out

    def get_silence(self, sid: str) -> Silence | None:
        row = self.db.execute("SELECT body FROM silences WHERE id=?", (sid,)).fetchone()
        return Silence.model_validate_json(row[0]) if row else None

    def delete_silence(self, sid: str) -> bool:
        return self.db.execute("DELETE FROM silences WHERE id=?", (sid,)).rowcount == 1

    # -- settings --------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put_setting(self, key: str, value: Any) -> None:
        self.db.execute("INSERT INTO settings(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET"
                        " value=excluded.value", (key, json.dumps(value)))
