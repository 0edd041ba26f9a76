"""The meter stage: samples from the bus, through the transformer pipeline, into the store.

Delivery: the batch is acknowledged (by BusStage) only after the store
committed it; the pipeline's own state is checkpointed after that commit, so
a crash in between replays the batch into a pipeline that has not yet moved
on. Redelivered samples hit the store's message_id key and count once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from telemetry.bus import Delivery
from telemetry.component import Component
from telemetry.metrics import RECORDS_OUT, RECORDS_REJECTED
from telemetry.models import Record, Sample
from telemetry.stage import BusStage

log = logging.getLogger(__name__)


class MeterStage(BusStage):
    name = "stage.meter"
    group = "meter"
    order = 30
    topics = {"samples": Sample}

    def __init__(self, runtime: Any, store: Any) -> None:
        super().__init__(runtime)
        self.store = store
        self.stored = 0
        self.duplicates = 0

    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        samples = [r for _, r in records if isinstance(r, Sample)]
        pipeline = self.runtime.services.get("sample_pipeline")
        if pipeline is not None:
            samples = pipeline.process(samples)
        result = await self.store.record(samples) if samples else None
        if pipeline is not None and hasattr(pipeline, "checkpoint"):
            await asyncio.to_thread(pipeline.checkpoint)
        if result is None:
            return
        self.stored += result.inserted
        self.duplicates += result.duplicates
        RECORDS_OUT.labels(stage=self.name).inc(result.inserted)
        if result.expired:
            RECORDS_REJECTED.labels(stage=self.name, reason="expired").inc(result.expired)
            log.warning("%s: %d samples older than their TTL were not stored", self.name, result.expired)

    def details(self) -> dict[str, Any]:
        return {**super().details(), "stored": self.stored, "duplicates": self.duplicates}


def meter_components(runtime: Any) -> Iterable[Component]:
    """Open the sample store, share it as ``sample_store``, add the Ceilometer API, run the stage."""
    from telemetry.api.ceilometer import router
    from telemetry.meter.retention import SampleStoreComponent
    from telemetry.meter.store import open_store

    cfg = runtime.settings.store
    store = open_store(cfg.samples.url, runtime.data_dir, cfg)
    runtime.services["sample_store"] = store
    runtime.routers.append(router)
    return [SampleStoreComponent(runtime, store), MeterStage(runtime, store)]
