"""The rule store on PostgreSQL, shared by every server of a cluster.

Same tables and rules as the SQLite store (``store.py``). What the others
changed is found without a counter every writer would contend on: each
write stamps its row with its transaction id (``xact``), and a reader asks
for rows stamped at or after the oldest transaction still running when it
last read (``pg_snapshot_xmin``). A transaction that was in flight then
committed later is therefore never skipped; rows already seen may come
again, which is harmless (the reader compares versions).

Polling rather than LISTEN/NOTIFY: a notification is lost while a listener
reconnects, so a poll is needed anyway to catch up; once there is a poll, a
second mechanism only lowers the delay below ``cluster.refresh`` (1 s),
which no alarm definition needs.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from telemetry.cluster.pg import Pg
from telemetry.rules.models import AlarmChange
from telemetry.rules.store import (
    JOURNAL_GRACE, Change, Commit, RulesStore, Stored, merge_alarm, split_alarm,
)
from telemetry.timeutil import utcnow

SCHEMA = """
CREATE TABLE IF NOT EXISTS rules_alarms (alarm_id text PRIMARY KEY, name text, project_id text, body text NOT NULL,
  state text, version bigint NOT NULL DEFAULT 0, deleted_at timestamptz,
  xact xid8 NOT NULL DEFAULT pg_current_xact_id());
CREATE INDEX IF NOT EXISTS rules_alarms_xact ON rules_alarms (xact);
CREATE TABLE IF NOT EXISTS rules_history (event_id text PRIMARY KEY, alarm_id text NOT NULL, ts timestamptz NOT NULL,
  type text NOT NULL, body text NOT NULL);
CREATE INDEX IF NOT EXISTS rules_history_alarm ON rules_history (alarm_id, ts);
CREATE INDEX IF NOT EXISTS rules_history_ts ON rules_history (ts);
CREATE TABLE IF NOT EXISTS rules_kv (key text PRIMARY KEY, body text NOT NULL, version bigint NOT NULL DEFAULT 0,
  xact xid8 NOT NULL DEFAULT pg_current_xact_id());
CREATE INDEX IF NOT EXISTS rules_kv_xact ON rules_kv (xact);
CREATE TABLE IF NOT EXISTS rules_journal (id text PRIMARY KEY, key text NOT NULL, record bytea NOT NULL,
  retry_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS rules_journal_retry ON rules_journal (retry_at);
"""
PUT_ALARM = """
INSERT INTO rules_alarms (alarm_id, name, project_id, body, state, version) VALUES (%s, %s, %s, %s, %s, 1)
ON CONFLICT (alarm_id) DO UPDATE SET name = excluded.name, project_id = excluded.project_id, body = excluded.body,
  state = excluded.state, version = rules_alarms.version + 1, deleted_at = NULL, xact = pg_current_xact_id()
RETURNING version
"""
PUT_FILE_ALARM = """
INSERT INTO rules_alarms (alarm_id, name, project_id, body, state, version) VALUES (%s, %s, %s, %s, %s, 0)
ON CONFLICT (alarm_id) DO UPDATE SET name = excluded.name, project_id = excluded.project_id, body = excluded.body,
  state = CASE WHEN rules_alarms.deleted_at IS NULL THEN COALESCE(rules_alarms.state, excluded.state)
          ELSE excluded.state END,
  deleted_at = NULL, xact = pg_current_xact_id()
WHERE rules_alarms.body IS DISTINCT FROM excluded.body OR rules_alarms.deleted_at IS NOT NULL
"""
KV_FIRST = """
INSERT INTO rules_kv (key, body, version) VALUES (%s, %s, 1)
ON CONFLICT (key) DO UPDATE SET body = excluded.body, version = rules_kv.version + 1, xact = pg_current_xact_id()
WHERE rules_kv.version = 0
"""


class PostgresRulesStore(RulesStore):
    def __init__(self, url: str) -> None:
        self.db = Pg(url, SCHEMA, 727102, "rules")
        self.db.execute("SELECT 1")  # connect now: a wrong URL fails the start, naming it

    def describe(self) -> str:
        return self.db.describe()

    def close(self) -> None:
        self.db.close()

    # -- alarms ----------------------------------------------------------------------------
    def put_alarm(self, alarm: Any) -> int:
        body, state = split_alarm(alarm)
        return int(self.db.execute(PUT_ALARM, (alarm.alarm_id, alarm.name, alarm.project_id, body, state))[0][0])

    def put_alarms(self, alarms: list[Any]) -> None:
        with self.db.tx() as conn, conn.cursor() as cur:
            cur.executemany(PUT_FILE_ALARM, [(a.alarm_id, a.name, a.project_id, *split_alarm(a)) for a in alarms])

    def delete_alarm(self, alarm_id: str) -> bool:
        return self.db.rowcount("UPDATE rules_alarms SET deleted_at = now(), xact = pg_current_xact_id() "
                                "WHERE alarm_id = %s AND deleted_at IS NULL", (alarm_id,)) > 0

    def load_alarms(self) -> list[Stored]:
        rows = self.db.execute("SELECT body, state, version FROM rules_alarms WHERE deleted_at IS NULL")
        return [Stored(merge_alarm(b, s), v) for b, s, v in rows]

    # -- history ---------------------------------------------------------------------------
    def add_changes(self, changes: list[AlarmChange]) -> None:
        with self.db.tx() as conn:
            self._add_changes(conn, changes)

    @staticmethod
    def _add_changes(conn: Any, changes: list[AlarmChange]) -> None:
        if not changes:
            return
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO rules_history VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                            [(c.event_id, c.alarm_id, c.timestamp, c.type, c.model_dump_json()) for c in changes])

    def history(self, alarm_id: str, limit: int = 1000, types: list[str] | None = None) -> list[AlarmChange]:
        sql = "SELECT body FROM rules_history WHERE alarm_id = %s"
        args: list[Any] = [alarm_id]
        if types:
            sql += " AND type = ANY(%s)"
            args.append(types)
        sql += " ORDER BY ts DESC LIMIT %s"
        args.append(limit)
        return [AlarmChange.model_validate_json(r[0]) for r in self.db.execute(sql, args)]

    def expire_history(self, keep_seconds: float, now: datetime | None = None) -> int:
        cutoff = (now or utcnow()) - timedelta(seconds=keep_seconds)
        with self.db.tx() as conn:
            n = conn.execute("DELETE FROM rules_history WHERE ts < %s", (cutoff,)).rowcount
            conn.execute("DELETE FROM rules_alarms WHERE deleted_at < %s", (cutoff,))
        return n

    # -- keyed state -------------------------------------------------------------------------
    def load_kv(self, prefix: str) -> dict[str, Stored]:
        rows = self.db.execute("SELECT key, body, version FROM rules_kv WHERE starts_with(key, %s)", (prefix,))
        return {k: Stored(json.loads(b), v) for k, b, v in rows}

    # -- evaluation results ----------------------------------------------------------------
    def commit(self, c: Commit) -> set[str]:
        refused: set[str] = set()
        with self.db.tx() as conn:
            for alarm, expected in c.alarms:
                _, state = split_alarm(alarm)
                if conn.execute("UPDATE rules_alarms SET state = %s, version = version + 1, xact = pg_current_xact_id() "
                                "WHERE alarm_id = %s AND version = %s", (state, alarm.alarm_id, expected)).rowcount == 0:
                    refused.add(alarm.alarm_id)
            for key, value, expected in c.kv:
                body = json.dumps(value, default=str)
                if expected == 0:
                    cur = conn.execute(KV_FIRST, (key, body))
                else:
                    cur = conn.execute("UPDATE rules_kv SET body = %s, version = version + 1, xact = pg_current_xact_id() "
                                       "WHERE key = %s AND version = %s", (body, key, expected))
                if cur.rowcount == 0:
                    refused.add(key)
            self._add_changes(conn, [ch for ch in c.changes if ch.alarm_id not in refused])
            records = [(tid, key, rec) for key, tid, rec in c.records if key not in refused]
            if records:
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO rules_journal VALUES (%s, %s, %s, now() + make_interval(secs => %s)) "
                                    "ON CONFLICT DO NOTHING", [(*r, JOURNAL_GRACE) for r in records])
        return refused

    def journal_due(self, limit: int = 500, grace: float = JOURNAL_GRACE) -> list[tuple[str, bytes]]:
        rows = self.db.execute(
            "UPDATE rules_journal SET retry_at = now() + make_interval(secs => %s) WHERE id IN ("
            " SELECT id FROM rules_journal WHERE retry_at <= now() ORDER BY retry_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING id, record", (grace, limit))
        return [(r[0], bytes(r[1])) for r in rows]

    def journal_done(self, ids: list[str]) -> None:
        if ids:
            self.db.execute("DELETE FROM rules_journal WHERE id = ANY(%s)", (ids,))

    # -- what changed --------------------------------------------------------------------------
    def cursor(self) -> Any:
        return str(self.db.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())")[0][0])

    def changes(self, cursor: Any) -> tuple[list[Change], Any]:
        with self.db.tx() as conn:
            # The next cursor first: whatever is in flight now has an id at or above it.
            nxt = str(conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())").fetchone()[0])  # type: ignore[index]
            alarms = conn.execute("SELECT alarm_id, body, state, version, deleted_at IS NOT NULL FROM rules_alarms "
                                  "WHERE xact >= %s::xid8", (cursor,)).fetchall()
            kv = conn.execute("SELECT key, body, version FROM rules_kv WHERE xact >= %s::xid8", (cursor,)).fetchall()
        out = [Change("alarm", aid, v, None if d else merge_alarm(b, s)) for aid, b, s, v, d in alarms]
        out += [Change("kv", k, v, json.loads(b)) for k, b, v in kv]
        return out, nxt
