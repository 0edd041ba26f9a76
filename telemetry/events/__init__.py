"""The event store: parsed log events and notifications kept, searchable and expiring."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from telemetry.component import Component


def store_root(runtime: Any) -> Path:
    """``sqlite://`` keeps the day files under ``<data_dir>/events``; ``sqlite:///path`` under ``path``."""
    url = runtime.settings.store.events.url
    scheme, _, rest = url.partition("://")
    if scheme != "sqlite":
        raise ValueError(f"store.events.url {url!r}: the event store is embedded SQLite (sqlite://); "
                         "Elasticsearch and Loki come as sinks")
    return Path(rest) if rest else runtime.data_dir / "events"


def event_components(runtime: Any) -> Iterable[Component]:
    """The events stage; its store is shared as ``services["event_store"]`` for the API and the rules."""
    from telemetry.api.events import router
    from telemetry.events.stage import EventStage
    from telemetry.events.store import EventStore

    from telemetry.events.query import set_default_operator

    store_cfg = runtime.settings.store
    set_default_operator(store_cfg.events.default_operator)
    ttl = store_cfg.ttl.events or store_cfg.ttl.default
    store = EventStore(store_root(runtime), ttl=ttl, min_free_disk=store_cfg.min_free_disk)
    runtime.services["event_store"] = store
    runtime.routers.append(router)
    return [EventStage(runtime, store)]
