"""The event store on each backend: embedded SQLite day files and PostgreSQL (a schema per store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_support import BACKENDS, drop_schemas, pg_schema_url

from telemetry.events.backend import EventBackend, open_event_store


class EventStoreFactory:
    """Opens event stores of one backend; each call is an empty, independent store."""

    def __init__(self, backend: str, tmp: Path, pg_url: str | None) -> None:
        self.backend, self.tmp, self.pg_url = backend, tmp, pg_url
        self.opened: list[EventBackend] = []
        self.schemas: list[str] = []

    def url(self) -> str:
        """The ``store.events.url`` of a new, empty store."""
        if self.backend == "sqlite":
            return f"sqlite://{self.tmp / f'events{len(self.opened) + len(self.schemas)}'}"
        assert self.pg_url
        url, schema = pg_schema_url(self.pg_url)
        self.schemas.append(schema)
        return url

    def __call__(self, ttl: float, min_free_disk: float = 0.05) -> EventBackend:
        store = open_event_store(self.url(), self.tmp, ttl, min_free_disk)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for s in self.opened:
            try:
                s.close()
            except Exception:
                pass
        if self.schemas:
            drop_schemas(self.pg_url, self.schemas)  # type: ignore[arg-type]


def event_factory(request: Any, tmp: Path) -> EventStoreFactory:
    pg = request.getfixturevalue("pg_database") if request.param == "postgresql" else None
    return EventStoreFactory(request.param, tmp, pg)


@pytest.fixture(params=BACKENDS)
def make_event_store(request: Any, tmp_path: Path) -> Iterator[EventStoreFactory]:
    factory = event_factory(request, tmp_path)
    yield factory
    factory.close()
