"""The component that owns the opened sample store: retention passes, then closing it last."""

from __future__ import annotations

import asyncio
from typing import Any

from telemetry.component import Component
from telemetry.config.store import StoreConfig
from telemetry.meter.retention import expire, guard_free_space, observe_sizes
from telemetry.meter.store.base import SampleStore


class SampleStoreComponent(Component):
    """Owns the opened sample store: runs expiry and the free-space guard every
    ``store.retention_interval`` and closes the store last, after the stages that write to it."""

    name = "store.samples"

    def __init__(self, cfg: StoreConfig, store: SampleStore) -> None:
        super().__init__()
        self.store = store
        self.cfg = cfg
        self.expired = 0
        self.shed = 0

    async def start(self) -> None:
        self.spawn(self._loop, "retention")

    def pass_once(self) -> None:
        self.store.maintain()  # seal raw rows of series that went quiet, and of days that ended
        self.expired += len(expire(self.store))
        self.shed += len(guard_free_space(self.store, self.cfg.min_free_disk))
        observe_sizes(self.store)

    async def _loop(self) -> None:
        while True:
            await asyncio.to_thread(self.pass_once)
            await asyncio.sleep(self.cfg.retention_interval)

    async def stop(self) -> None:
        await self.cancel_tasks()
        await asyncio.to_thread(self.store.close)

    def details(self) -> dict[str, Any]:
        return {"url": self.store.describe(), "expired_partitions": self.expired, "shed_partitions": self.shed}
