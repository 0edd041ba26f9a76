"""The Gnocchi catalogue: archive policies, rules, resource types, resources and metrics, kept for good.

Measures live in the sample store; what they belong to lives here, in the
same database as the samples (a ``gnocchi.db`` file beside the embedded
store's files, or ``gnocchi_catalog`` in the store's PostgreSQL). Each object
is one JSON document keyed by (kind, id): the catalogue is small next to the
measures (one row per resource and per metric), so it is read whole at start
and answered from memory, which keeps searches and the batch endpoint's
lookups off the database; every change is written through before it is
acknowledged.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from telemetry.gnocchi.models import ArchivePolicy, ArchivePolicyRule, Metric, Resource, ResourceType

Kind = Literal["policy", "rule", "type", "resource", "metric"]
_MODELS: dict[str, type[Any]] = {"policy": ArchivePolicy, "rule": ArchivePolicyRule, "type": ResourceType,
                                 "resource": Resource, "metric": Metric}

#: What ``gnocchi-upgrade`` creates in an empty Gnocchi: its four default policies and the catch-all rule.
DEFAULT_POLICIES = [
    {"name": "bool", "back_window": 3600, "aggregation_methods": ["last"],
     "definition": [{"granularity": 1, "timespan": 365 * 86400}]},
    {"name": "low", "definition": [{"granularity": 300, "timespan": 30 * 86400}]},
    {"name": "medium", "definition": [{"granularity": 60, "timespan": 7 * 86400},
                                      {"granularity": 3600, "timespan": 365 * 86400}]},
    {"name": "high", "definition": [{"granularity": 1, "timespan": 3600}, {"granularity": 60, "timespan": 7 * 86400},
                                    {"granularity": 3600, "timespan": 365 * 86400}]},
]
DEFAULT_RULE = {"name": "default", "metric_pattern": "*", "archive_policy_name": "low"}


def builtin_types() -> list[ResourceType]:
    """``generic`` and the types Ceilometer's publisher writes to (``resource_types.yaml``)."""
    data = yaml.safe_load((Path(__file__).parent / "resource_types.yaml").read_text())
    return [ResourceType(name="generic")] + [ResourceType(name=n, attributes=a or {}) for n, a in data.items()]


class _Backend:
    """One table ``gnocchi_catalog(kind, id, body)`` in SQLite or PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        scheme, _, rest = url.partition("://")
        self.pg = scheme in ("postgresql", "postgres")
        if self.pg:
            import psycopg

            self.conn: Any = psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)
            self.conn.execute("CREATE TABLE IF NOT EXISTS gnocchi_catalog (kind text NOT NULL, id text NOT NULL, "
                              "body text NOT NULL, PRIMARY KEY (kind, id))")
            self._put = ("INSERT INTO gnocchi_catalog (kind, id, body) VALUES (%s, %s, %s) "
                         "ON CONFLICT (kind, id) DO UPDATE SET body = EXCLUDED.body")
            self._del = "DELETE FROM gnocchi_catalog WHERE kind = %s AND id = %s"
        else:
            Path(rest).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(rest, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("CREATE TABLE IF NOT EXISTS gnocchi_catalog (kind TEXT NOT NULL, id TEXT NOT NULL, "
                              "body TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID")
            self._put = "INSERT OR REPLACE INTO gnocchi_catalog (kind, id, body) VALUES (?, ?, ?)"
            self._del = "DELETE FROM gnocchi_catalog WHERE kind = ? AND id = ?"

    def rows(self) -> Iterator[tuple[str, str, str]]:
        yield from self.conn.execute("SELECT kind, id, body FROM gnocchi_catalog").fetchall()

    def write(self, puts: list[tuple[str, str, str]], deletes: list[tuple[str, str]]) -> None:
        """One transaction: a resource and the metrics created with it land together or not at all."""
        if self.pg:
            with self.conn.transaction(), self.conn.cursor() as cur:
                if puts:
                    cur.executemany(self._put, puts)
                if deletes:
                    cur.executemany(self._del, deletes)
            return
        self.conn.execute("BEGIN")
        try:
            if puts:
                self.conn.executemany(self._put, puts)
            if deletes:
                self.conn.executemany(self._del, deletes)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()


class Catalog:
    """The documents in memory, written through to the backend under one lock."""

    def __init__(self, url: str) -> None:
        self.lock = threading.RLock()
        self.db = _Backend(url)
        self.policies: dict[str, ArchivePolicy] = {}
        self.rules: dict[str, ArchivePolicyRule] = {}
        self.types: dict[str, ResourceType] = {}
        self.resources: dict[str, Resource] = {}
        self.metrics: dict[str, Metric] = {}
        #: original resource id -> resource id (Ceilometer names resources by their OpenStack id)
        self.by_original: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        found = False
        for kind, _, body in self.db.rows():
            found = True
            self._remember(kind, _MODELS[kind].model_validate(orjson.loads(body)))
        if not found:  # a new database: what gnocchi-upgrade would have created
            self.save([*(ArchivePolicy.model_validate(p) for p in DEFAULT_POLICIES),
                       ArchivePolicyRule.model_validate(DEFAULT_RULE), *builtin_types()])

    def _table(self, kind: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {"policy": self.policies, "rule": self.rules, "type": self.types,
                                             "resource": self.resources,
                "metric": self.metrics}
        return tables[kind]

    @staticmethod
    def kind_of(doc: Any) -> Kind:
        for kind, model in _MODELS.items():
            if isinstance(doc, model):
                return kind  # type: ignore[return-value]
        raise TypeError(f"not a catalogue document: {type(doc).__name__}")

    @staticmethod
    def key_of(doc: Any) -> str:
        return str(getattr(doc, "id", None) or doc.name)

    def _remember(self, kind: str, doc: Any) -> None:
        self._table(kind)[self.key_of(doc)] = doc
        if kind == "resource":
            self.by_original[doc.original_resource_id] = doc.id

    def save(self, docs: list[Any], deletes: list[Any] = ()) -> None:  # type: ignore[assignment]
        """Write ``docs`` and remove ``deletes`` in one transaction, then update memory."""
        puts: list[tuple[str, str, str]] = [(self.kind_of(d), self.key_of(d), d.model_dump_json()) for d in docs]
        dels: list[tuple[str, str]] = [(self.kind_of(d), self.key_of(d)) for d in deletes]
        with self.lock:
            self.db.write(puts, dels)
            for d in docs:
                self._remember(self.kind_of(d), d)
            for d in deletes:
                self._table(self.kind_of(d)).pop(self.key_of(d), None)
                if isinstance(d, Resource) and self.by_original.get(d.original_resource_id) == d.id:
                    del self.by_original[d.original_resource_id]

    def close(self) -> None:
        with self.lock:
            self.db.close()
