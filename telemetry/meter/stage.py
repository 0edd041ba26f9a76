"""The meter stage: samples after the pipeline (``metered_samples``) into the sample store.

Delivery: the batch is acknowledged (by BusStage) only after the store
committed it. Redelivered samples hit the store's message_id key and count
once. Transformers do not run here: the pipeline stage ran them once, before
the fan-out, so what is stored is what the rules and exporters saw.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from telemetry.bus import Delivery
from telemetry.bus.topics import METERED_SAMPLES
from telemetry.meter.store.base import SampleStore
from telemetry.metrics import RECORDS_OUT, RECORDS_REJECTED
from telemetry.models import Record, Sample
from telemetry.runtime import Runtime
from telemetry.stage import BusStage

log = logging.getLogger(__name__)


class MeterStage(BusStage):
    name = "stage.meter"
    group = "meter"
    #: One store transaction (one commit and its fsync) per batch: a burst such as a Gnocchi batch of
    #: 6,000 measures costs one commit rather than twelve. Fetching never waits for a batch to fill.
    batch_size = 5000
    topics: ClassVar[dict[str, type[Record]]] = {METERED_SAMPLES: Sample}

    def __init__(self, runtime: Runtime, store: SampleStore) -> None:
        super().__init__(runtime)
        self.store = store
        self.stored = 0
        self.duplicates = 0

    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        samples = [r for _, r in records if isinstance(r, Sample)]
        if not samples:
            return
        result = await self.store.record(samples)
        self.stored += result.inserted
        self.duplicates += result.duplicates
        RECORDS_OUT.labels(stage=self.name).inc(result.inserted)
        if result.expired:
            RECORDS_REJECTED.labels(stage=self.name, reason="expired").inc(result.expired)
            log.warning("%s: %d samples older than their TTL were not stored", self.name, result.expired)

    def details(self) -> dict[str, Any]:
        return {**super().details(), "stored": self.stored, "duplicates": self.duplicates}
