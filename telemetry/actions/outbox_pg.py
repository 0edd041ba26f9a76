"""The outbox on PostgreSQL, shared by the servers of a cluster (the rules and semantics of ``outbox.py``).

Claims are one statement: the due rows are picked ``FOR UPDATE SKIP
LOCKED`` (two servers claiming at once skip each other's rows instead of
waiting or taking the same ones) and stamped with the claimer and the end
of its lease. A result is written only where the claim is still the
writer's, so a server that was presumed dead (its lease ran out, another
server sent the row again) cannot overwrite the other's outcome.

Times are epoch seconds from the servers' clocks, as in the SQLite file;
servers of one cluster keep their clocks in sync (NTP), and the leases
(``cluster.delivery_lease``, a minute) dwarf any skew NTP leaves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from psycopg.rows import dict_row

from telemetry.actions.models import DeliveryRow, Job, Silence, SilenceIn
from telemetry.actions.outbox import Outbox, _job, new_silence
from telemetry.cluster.pg import Pg
from telemetry.timeutil import utcnow

SCHEMA = """
CREATE TABLE IF NOT EXISTS actions_outbox (
  id text PRIMARY KEY, target text NOT NULL, notifier text NOT NULL, transition text NOT NULL,
  status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0, next_at double precision NOT NULL,
  group_key text, created_at double precision NOT NULL, updated_at double precision NOT NULL, last_status integer,
  last_error text, lease_owner text, lease_until double precision NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS actions_outbox_due ON actions_outbox (status, next_at);
CREATE INDEX IF NOT EXISTS actions_outbox_group ON actions_outbox (group_key, status);
CREATE TABLE IF NOT EXISTS actions_deliveries (
  id bigserial PRIMARY KEY, item_id text, time double precision NOT NULL, alarm_id text, alarm_name text, state text,
  notifier text, target text, status text NOT NULL, http_status integer, attempts integer, error text);
CREATE INDEX IF NOT EXISTS actions_deliveries_time ON actions_deliveries (time);
CREATE TABLE IF NOT EXISTS actions_silences (id text PRIMARY KEY, body text NOT NULL, ends_at double precision NOT NULL);
CREATE TABLE IF NOT EXISTS actions_alarms (alarm_id text PRIMARY KEY, state text, severity text, labels text,
  updated double precision);
CREATE TABLE IF NOT EXISTS actions_sent (key text PRIMARY KEY, at double precision NOT NULL);
CREATE TABLE IF NOT EXISTS actions_settings (key text PRIMARY KEY, value text NOT NULL);
"""
CLAIM = """
WITH due AS (
  SELECT id, group_key FROM actions_outbox WHERE status = 'pending' AND next_at <= %(now)s AND lease_until <= %(now)s
  ORDER BY next_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED),
grouped AS (
  SELECT o.id FROM actions_outbox o JOIN (SELECT DISTINCT group_key FROM due WHERE group_key IS NOT NULL) g
    ON o.group_key = g.group_key
  WHERE o.status = 'pending' AND o.lease_until <= %(now)s FOR UPDATE OF o SKIP LOCKED)
UPDATE actions_outbox SET lease_owner = %(owner)s, lease_until = %(until)s
WHERE id IN (SELECT id FROM due UNION SELECT id FROM grouped) RETURNING *
"""


class PostgresOutbox(Outbox):
    def __init__(self, url: str) -> None:
        self.db = Pg(url, SCHEMA, 727103, "actions")
        self.db.execute("SELECT 1")  # connect now: a wrong URL fails the start, naming it

    def describe(self) -> str:
        return self.db.describe()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[None]:
        with self.db.tx():
            yield

    def _rows(self, sql: str, args: Any = ()) -> list[dict[str, Any]]:
        with self.db.tx() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []

    # -- the queue ---------------------------------------------------------
    def add(self, job: Job, not_before: float, now: float | None = None) -> bool:
        now = now or time.time()
        return self.db.rowcount(
            "INSERT INTO actions_outbox (id, target, notifier, transition, next_at, group_key, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (job.id, job.target, job.notifier, json.dumps(job.transition, default=str), not_before, job.group_key,
             now, now)) == 1

    def due(self, now: float, limit: int) -> list[Job]:
        return [_job(r) for r in self._rows(
            "SELECT * FROM actions_outbox WHERE status = 'pending' AND next_at <= %s AND lease_until <= %s"
            " ORDER BY next_at LIMIT %s", (now, now, limit))]

    def claim(self, now: float, limit: int, owner: str, lease: float) -> list[Job]:
        rows = self._rows(CLAIM, {"now": now, "limit": limit, "owner": owner, "until": now + lease})
        return [_job(r) for r in sorted(rows, key=lambda r: (r["next_at"], r["created_at"]))]

    def release(self, jobs: list[Job], owner: str) -> None:
        self.db.execute("UPDATE actions_outbox SET lease_owner = NULL, lease_until = 0 WHERE id = ANY(%s)"
                        " AND lease_owner = %s", ([j.id for j in jobs], owner))

    def next_due(self) -> float | None:
        row = self.db.execute("SELECT MIN(GREATEST(next_at, lease_until)) FROM actions_outbox WHERE status = 'pending'")
        return row[0][0]

    def pending(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM actions_outbox WHERE status = 'pending'")[0][0])

    def finish(self, jobs: list[Job], status: str, attempts: int, http_status: int | None, error: str,
               next_at: float | None = None, owner: str | None = None) -> int:
        return self.db.rowcount(
            "UPDATE actions_outbox SET status = %s, attempts = %s, last_status = %s, last_error = %s, updated_at = %s,"
            " next_at = COALESCE(%s, next_at), lease_owner = NULL, lease_until = 0"
            " WHERE id = ANY(%s) AND (%s::text IS NULL OR lease_owner = %s)",
            (status, attempts, http_status, error, time.time(), next_at, [j.id for j in jobs], owner, owner))

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT id, target, notifier, transition, attempts, last_status, last_error, updated_at FROM actions_outbox"
            " WHERE status = 'dead' ORDER BY updated_at DESC LIMIT %s", (limit,))
        return [r | {"transition": json.loads(r["transition"])} for r in rows]

    def requeue(self, item: str) -> bool:
        return self.db.rowcount(
            "UPDATE actions_outbox SET status = 'pending', attempts = 0, next_at = %s, updated_at = %s"
            " WHERE id = %s AND status = 'dead'", (time.time(), time.time(), item)) == 1

    # -- the delivery log --------------------------------------------------
    def log(self, *, item: str | None, transition: dict[str, Any], notifier: str, target: str, status: str,
            http_status: int | None = None, attempts: int = 0, error: str = "", at: float | None = None) -> None:
        self.db.execute(
            "INSERT INTO actions_deliveries (item_id, time, alarm_id, alarm_name, state, notifier, target, status,"
            " http_status, attempts, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (item, at or time.time(), transition.get("alarm_id"), transition.get("alarm_name"),
             transition.get("current"), notifier, target, status, http_status, attempts, error[:2000]))

    def deliveries(self, limit: int = 100, status: str | None = None, alarm_id: str | None = None) -> list[DeliveryRow]:
        sql, args = "SELECT * FROM actions_deliveries WHERE true", list[str | int]()
        if status:
            sql += " AND status LIKE %s"
            args.append(status + "%")
        if alarm_id:
            sql += " AND alarm_id = %s"
            args.append(alarm_id)
        sql += " ORDER BY id DESC LIMIT %s"
        args.append(limit)
        return [DeliveryRow(**(r | {"time": datetime.fromtimestamp(r["time"], timezone.utc),
                                    "attempts": r["attempts"] or 0, "error": r["error"] or ""}))
                for r in self._rows(sql, args)]

    def prune(self, before: float) -> int:
        with self.db.tx() as conn:
            n = conn.execute("DELETE FROM actions_outbox WHERE status IN ('delivered', 'skipped') AND updated_at < %s",
                             (before,)).rowcount
            n += conn.execute("DELETE FROM actions_deliveries WHERE time < %s", (before,)).rowcount
            conn.execute("DELETE FROM actions_silences WHERE ends_at < %s", (before,))
            conn.execute("DELETE FROM actions_sent WHERE at < %s", (before,))
        return n

    # -- noise-control state ----------------------------------------------
    def last_sent(self, key: str) -> float | None:
        with self.db.tx() as conn:
            # Held to the end of the caller's transaction: the check and the set_sent after it are one decision.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 727104))", (key,))
            row = conn.execute("SELECT at FROM actions_sent WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None

    def set_sent(self, key: str, at: float) -> None:
        self.db.execute("INSERT INTO actions_sent (key, at) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET"
                        " at = excluded.at", (key, at))

    def set_alarm(self, alarm_id: str, state: str, severity: str, labels: dict[str, str]) -> None:
        self.db.execute(
            "INSERT INTO actions_alarms (alarm_id, state, severity, labels, updated) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (alarm_id) DO UPDATE SET state = excluded.state, severity = excluded.severity,"
            " labels = excluded.labels, updated = excluded.updated",
            (alarm_id, state, severity, json.dumps(labels), time.time()))

    def firing(self, severities: list[str]) -> list[tuple[str, dict[str, str]]]:
        rows = self.db.execute("SELECT alarm_id, labels FROM actions_alarms WHERE state = 'alarm' AND"
                               " severity = ANY(%s)", (severities,))
        return [(r[0], json.loads(r[1])) for r in rows]

    # -- silences ------------------------------------------------------------
    def add_silence(self, spec: SilenceIn) -> Silence:
        s = new_silence(spec)
        self.db.execute("INSERT INTO actions_silences (id, body, ends_at) VALUES (%s, %s, %s)",
                        (s.id, s.model_dump_json(), s.ends_at.timestamp()))
        return s

    def silences(self, active_only: bool = False) -> list[Silence]:
        out = [Silence.model_validate_json(r[0])
               for r in self.db.execute("SELECT body FROM actions_silences ORDER BY ends_at")]
        if active_only:
            now = utcnow()
            out = [s for s in out if s.active(now)]
        return out

    def get_silence(self, sid: str) -> Silence | None:
        rows = self.db.execute("SELECT body FROM actions_silences WHERE id = %s", (sid,))
        return Silence.model_validate_json(rows[0][0]) if rows else None

    def delete_silence(self, sid: str) -> bool:
        return self.db.rowcount("DELETE FROM actions_silences WHERE id = %s", (sid,)) == 1

    # -- settings --------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self.db.execute("SELECT value FROM actions_settings WHERE key = %s", (key,))
        return json.loads(rows[0][0]) if rows else default

    def put_setting(self, key: str, value: Any) -> None:
        self.db.execute("INSERT INTO actions_settings (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET"
                        " value = excluded.value", (key, json.dumps(value)))
