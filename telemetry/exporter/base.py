"""Stages that only keep figures in memory for /metrics: observers of the bus, not writers."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prometheus_client.registry import Collector

from telemetry.bus import DURABLE, Delivery, Receipt
from telemetry.metrics import RECORDS_REJECTED, REGISTRY
from telemetry.stage import BusStage

log = logging.getLogger(__name__)


class ObserverStage(BusStage):
    """Publishers' receipts do not wait for it, and it leaves dead letters to the stages that write.

    A record an observer cannot decode is refused by the writing stages reading the same topic too;
    they dead-letter it (and a replay reaches them), so the observer only counts and skips it.
    """

    writes_durably = False

    async def _dead_letter(self, bad: list[tuple[Delivery, str]], errors: Sequence[str] | None = None) -> Receipt:
        self.rejected += len(bad)
        for d, reason in bad:
            RECORDS_REJECTED.labels(stage=self.name, reason=reason).inc()
            log.debug("%s: skipped a record from %s: %s", self.name, d.topic, reason)
        return DURABLE


class CollectorStage(ObserverStage):
    """An observer whose table is a Prometheus collector, on /metrics exactly while the stage runs.

    Subclass: set ``self.table`` (a Collector) in ``__init__``.
    """

    table: Collector

    async def start(self) -> None:
        REGISTRY.register(self.table)
        try:
            await super().start()
        except BaseException:
            REGISTRY.unregister(self.table)
            raise

    async def stop(self) -> None:
        await super().stop()
        REGISTRY.unregister(self.table)
