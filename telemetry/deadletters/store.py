"""The dead-letter store: SQLite under ``<data_dir>/dead_letters/``, kept for ``store.dead_letters.ttl``.

A refused record is kept as it arrived (bytes, cut at 1 MiB by the stage
that refused it) with its reason, the topic it came from and the stage that
refused it. Its id derives from the topic, the reason and the bytes, so a
dead letter delivered twice is kept once, and a record that several stages
refused (the events stage and the rules both read ``events``) is one letter
naming them all: replaying it sends it to each again. One connection behind a
lock: calls come from worker threads.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
  id TEXT PRIMARY KEY, time REAL NOT NULL, stage TEXT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
  error TEXT NOT NULL DEFAULT '', key BLOB, value BLOB NOT NULL, size INTEGER NOT NULL, replays INTEGER NOT NULL DEFAULT 0,
  replayed_at REAL);
CREATE INDEX IF NOT EXISTS dead_letters_time ON dead_letters (time);
"""


@dataclass(frozen=True)
class DeadLetter:
    id: str
    time: float
    stage: str
    topic: str
    reason: str
    error: str
    key: bytes | None
    value: bytes
    size: int
    replays: int
    replayed_at: float | None


def letter_id(topic: str, reason: str, value: bytes) -> str:
    return hashlib.sha1(b"\x1f".join((topic.encode(), reason.encode(), value))).hexdigest()[:20]


class DeadLetterStore:
    def __init__(self, folder: Path, ttl: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "dead_letters.sqlite"
        self.ttl = ttl
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def add(self, letters: list[tuple[str, str, str, str, bytes | None, bytes]], now: float | None = None) -> int:
        """(stage, topic, reason, error, key, value) rows; returns how many were new."""
        at = time.time() if now is None else now
        rows = [(letter_id(tp, rs, v), at, st, tp, rs, er, k, v, len(v)) for st, tp, rs, er, k, v in letters]
        with self._lock:
            before = self.count_locked()
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO dead_letters (id, time, stage, topic, reason, error, key, value, size) "
                "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET stage = stage || ',' || excluded.stage "
                "WHERE instr(',' || stage || ',', ',' || excluded.stage || ',') = 0", rows)
            self._db.execute("COMMIT")
            return self.count_locked() - before

    def list(self, limit: int = 100, stage: str | None = None, topic: str | None = None,
             reason: str | None = None) -> list[DeadLetter]:
        """Newest first; ``reason`` matches a prefix (``invalid:`` finds every validation error)."""
        sql, args = "SELECT * FROM dead_letters WHERE 1=1", list[Any]()
        if stage:
            sql += " AND instr(',' || stage || ',', ?) > 0"
            args.append(f",{stage},")
        if topic:
            sql += " AND topic = ?"
            args.append(topic)
        if reason:
            sql += " AND reason LIKE ? ESCAPE '\\'"
            args.append(reason.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        sql += " ORDER BY time DESC, id LIMIT ?"
        args.append(limit)
        with self._lock:
            return [DeadLetter(*r) for r in self._db.execute(sql, args)]

    def get(self, letter: str) -> DeadLetter | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM dead_letters WHERE id = ?", (letter,)).fetchone()
        return DeadLetter(*row) if row else None

    def mark_replayed(self, letter: str, now: float | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE dead_letters SET replays = replays + 1, replayed_at = ? WHERE id = ?",
                             (time.time() if now is None else now, letter))

    def delete(self, letter: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM dead_letters WHERE id = ?", (letter,)).rowcount > 0

    def count(self) -> int:
        with self._lock:
            return self.count_locked()

    def count_locked(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

    def expire(self, now: float | None = None) -> int:
        """Drop dead letters older than the ttl; returns how many."""
        cutoff = (time.time() if now is None else now) - self.ttl
        with self._lock:
            return self._db.execute("DELETE FROM dead_letters WHERE time < ?", (cutoff,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
