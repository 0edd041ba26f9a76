"""Fixtures shared by the store tests: the same store on SQLite and on PostgreSQL.

PostgreSQL: one uniquely named database per test session (dropped after), a
schema per test (selected through the connection's search_path).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from telemetry.meter.store.base import SampleStore, TtlPolicy
from telemetry.meter.store.postgres import PostgresSampleStore
from telemetry.meter.store.sqlite import SqliteSampleStore
from telemetry.models import Sample

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"store_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_schema_url(pg_url: str) -> tuple[str, str]:
    """A new, empty schema in the test database: (a URL whose connections use it, its name)."""
    schema = f"t_{secrets.token_hex(4)}"
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    return f"{pg_url}?options=-csearch_path%3D{schema}", schema


def drop_schemas(pg_url: str, schemas: list[str]) -> None:
    with psycopg.connect(pg_url, autocommit=True) as c:
        for schema in schemas:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


class BackendFactory:
    """Empty, independent stores of one backend: a folder each on SQLite, a schema each on PostgreSQL."""

    #: The SQLite folder's name, numbered per store.
    folder = "store"

    def __init__(self, backend: str, tmp: Path, pg_url: str | None) -> None:
        self.backend, self.tmp, self.pg_url = backend, tmp, pg_url
        self.opened: list[Any] = []
        self.schemas: list[str] = []
        self.made = 0

    def url(self) -> str:
        """The URL of a new, empty store."""
        self.made += 1
        if self.backend.startswith("sqlite"):
            return f"sqlite://{self.tmp / f'{self.folder}{self.made}'}"
        assert self.pg_url
        url, schema = pg_schema_url(self.pg_url)
        self.schemas.append(schema)
        return url

    def close(self) -> None:
        for s in self.opened:
            try:
                s.close()
            except Exception:
                pass
        if self.schemas:
            drop_schemas(self.pg_url, self.schemas)  # type: ignore[arg-type]


class StoreFactory(BackendFactory):
    """Opens sample stores of one backend; each call is an empty, independent store."""

    folder = "samples"

    def __call__(self, ttl: float = 7 * 86400, meters: dict[str, float] | None = None,
                 rollups: dict[str, float] | None = None) -> SampleStore:
        policy = TtlPolicy(ttl, meters)
        url = self.url()
        store: SampleStore
        if self.backend == "sqlite":
            store = SqliteSampleStore(Path(url[len("sqlite://"):]), policy, rollups)
        else:
            store = PostgresSampleStore(url, policy, rollups)
        self.opened.append(store)
        return store


@pytest.fixture(params=BACKENDS)
def make_store(request: Any, tmp_path: Path) -> Iterator[StoreFactory]:
    pg = request.getfixturevalue("pg_database") if request.param == "postgresql" else None
    factory = StoreFactory(request.param, tmp_path, pg)
    yield factory
    factory.close()


@pytest.fixture
def store(make_store: StoreFactory) -> SampleStore:
    return make_store()


def hour_start(now: datetime | None = None) -> datetime:
    return (now or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)


def gauge(name: str, volume: float, resource: str, ts: datetime, **kw: Any) -> Sample:
    return Sample(counter_name=name, counter_type="gauge", counter_unit=kw.pop("unit", "%"),
                  counter_volume=volume, resource_id=resource, timestamp=ts, **kw)


def series_samples(name: str, resources: int, start: datetime, step: timedelta, count: int,
                   **kw: Any) -> list[Sample]:
    """``count`` samples per resource from ``start`` every ``step``; volumes vary per resource and time."""
    return [gauge(name, float((i * 7 + r * 13) % 101), f"res-{r}", start + i * step,
                  project_id=f"proj-{r % 3}", user_id=f"user-{r % 2}",
                  resource_metadata={"flavor": {"name": f"m1.{'small' if r % 2 else 'large'}"}, "vcpus": r % 4},
                  **kw)
            for r in range(resources) for i in range(count)]
