"""The pipeline stage: samples from sources, through the transformers once, onto ``metered_samples``.

It runs before the fan-out, so the store, the rule engine, the exporters and
the sinks read the same raw and derived samples (``cpu`` and the ``cpu_util``
derived from it alike). Delivery: the output is published (durable on the
bus) before the transformer state is checkpointed, and only then is the
input batch acknowledged; if publishing fails the state rolls back to the
last checkpoint and the batch comes again. A crash between publish and
checkpoint re-derives the same samples with the same ids, which every
consumer deduplicates on ``message_id``.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from telemetry.bus import Delivery, Receipt
from telemetry.bus.records import out_message
from telemetry.bus.topics import METERED_SAMPLES, SAMPLES
from telemetry.meter.pipeline import SamplePipeline
from telemetry.metrics import BUS_PUBLISHED, RECORDS_OUT
from telemetry.models import Record, Sample
from telemetry.runtime import Runtime
from telemetry.stage import BusStage


class PipelineStage(BusStage):
    name = "stage.pipeline"
    group = "pipeline"
    #: Its transformer state is saved (fsync) once per batch: larger batches, fewer saves (see MeterStage).
    batch_size = 5000
    topics: ClassVar[dict[str, type[Record]]] = {SAMPLES: Sample}

    def __init__(self, runtime: Runtime, pipeline: SamplePipeline | None) -> None:
        """``pipeline`` None (``pipeline.enabled: false``) forwards every sample unchanged."""
        super().__init__(runtime)
        self.pipeline = pipeline
        self._fmt = runtime.settings.bus.format
        self.published = 0

    async def handle(self, records: list[tuple[Delivery, Record]]) -> list[Receipt]:
        samples = [r for _, r in records if isinstance(r, Sample)]
        pipeline = self.pipeline
        receipts: list[Receipt] = []
        try:
            out = pipeline.process(samples) if pipeline is not None else samples
            if out:
                bus, fmt = self.runtime.bus, self._fmt
                receipts.append(await bus.publish(METERED_SAMPLES, [
                    out_message(bus, s, fmt, s.resource_id.encode()) for s in out
                ]))
        except BaseException:
            if pipeline is not None:
                pipeline.rollback()
            raise
        if pipeline is not None:
            await asyncio.to_thread(pipeline.checkpoint)
        if out:
            BUS_PUBLISHED.labels(topic=METERED_SAMPLES).inc(len(out))
            RECORDS_OUT.labels(stage=self.name).inc(len(out))
            self.published += len(out)
        return receipts

    def details(self) -> dict[str, Any]:
        return {**super().details(), "published": self.published,
                "pipeline": "on" if self.pipeline is not None else "off (samples forwarded unchanged)"}
