"""One PostgreSQL connection for a shared store, opened lazily and opened again after it broke.

The shared stores (rule state, the outbox, membership) each keep one
connection: their statements are short and few, and one connection per
store keeps a slow query of one from delaying the heartbeats of another.
A broken connection is dropped when a call fails with it, so the caller's
retry (a stage's batch, the next heartbeat) connects again instead of
failing forever on a dead socket.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

CONNECT_TIMEOUT = 5  # seconds: a dead database must not hang a stage longer than its retry


def normalise_url(url: str) -> str:
    """psycopg wants ``postgresql://``; operators also write ``postgres://``."""
    return url.replace("postgres://", "postgresql://", 1)


class Pg:
    """A lock-guarded connection; ``tx`` nests (savepoints), ``execute`` outside a ``tx`` commits at once."""

    def __init__(self, url: str, schema: str, lock_key: int, name: str) -> None:
        self.url = normalise_url(url)
        self.schema = schema
        self.lock_key = lock_key  # advisory lock taken while creating the schema: servers start at once
        self.name = name
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._depth = 0  # transactions this thread has open (an outer one and those joining it)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                   application_name=f"telemetry {self.name}")
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
                    conn.execute(self.schema)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _broken(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction on this thread's hold of the connection; commits on exit, rolls back on error.

        Inside another ``tx`` of the same thread it joins that one (no savepoint): the outer one decides.
        """
        with self._lock:
            if self._depth:
                assert self._conn is not None
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            conn = self._connection()
            self._depth = 1
            try:
                with conn.transaction():
                    yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self._broken()
                raise
            finally:
                self._depth = 0

    def execute(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement (empty for statements that return none)."""
        with self.tx() as conn:
            cur = conn.execute(sql, args)
            return cur.fetchall() if cur.description else []

    def rowcount(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> int:
        with self.tx() as conn:
            return conn.execute(sql, args).rowcount

    def close(self) -> None:
        with self._lock:
            self._broken()

    def describe(self) -> str:
        i = psycopg.conninfo.conninfo_to_dict(self.url)
        return f"postgresql://{i.get('user') or ''}@{i.get('host') or ''}:{i.get('port') or 5432}/{i.get('dbname') or ''}"
