"""The sample store: one interface, an embedded SQLite backend and a PostgreSQL backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from telemetry.meter.store.base import Partition, SampleStore, TtlPolicy, WriteResult

__all__ = ["Partition", "SampleStore", "TtlPolicy", "WriteResult", "open_store"]


def open_store(url: str, data_dir: Path, store_cfg: Any = None) -> SampleStore:
    """``sqlite://`` -> files under ``<data_dir>/samples/``; ``sqlite:///abs/folder`` elsewhere;
    ``postgresql://...`` -> PostgreSQL."""
    ttl = TtlPolicy(store_cfg.ttl.default, store_cfg.ttl.meters) if store_cfg else TtlPolicy(7 * 86400)
    rollup_ttl = {"m1": store_cfg.rollups.minute, "h1": store_cfg.rollups.hour} if store_cfg else None
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        from telemetry.meter.store.sqlite import SqliteSampleStore

        folder = Path(rest) if rest else Path(data_dir) / "samples"
        return SqliteSampleStore(folder, ttl, rollup_ttl)
    if scheme in ("postgresql", "postgres"):
        from telemetry.meter.store.postgres import PostgresSampleStore

        return PostgresSampleStore(url, ttl, rollup_ttl)
    raise ValueError(f"unsupported sample store URL {url!r} (sqlite:// or postgresql://)")
