"""The event store on each backend: embedded SQLite day files and PostgreSQL (a schema per store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_support import BACKENDS, BackendFactory

from telemetry.events.backend import EventBackend, open_event_store


class EventStoreFactory(BackendFactory):
    """Opens event stores of one backend; each call is an empty, independent store."""

    folder = "events"

    def __call__(self, ttl: float, min_free_disk: float = 0.05) -> EventBackend:
        writer = "process" if self.backend == "sqlite-process" else "thread"
        store = open_event_store(self.url(), self.tmp, ttl, min_free_disk, writer=writer)
        self.opened.append(store)
        return store


def event_factory(request: Any, tmp: Path) -> EventStoreFactory:
    pg = request.getfixturevalue("pg_database") if request.param == "postgresql" else None
    return EventStoreFactory(request.param, tmp, pg)


#: The embedded store also with its writes in a child process (``store.events.writer: process``).
EVENT_BACKENDS = [*BACKENDS, "sqlite-process"]


@pytest.fixture(params=EVENT_BACKENDS)
def make_event_store(request: Any, tmp_path: Path) -> Iterator[EventStoreFactory]:
    factory = event_factory(request, tmp_path)
    yield factory
    factory.close()
