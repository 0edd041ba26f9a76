"""A bus stage whose table is a Prometheus collector: shown on /metrics exactly while the stage runs."""

from __future__ import annotations

from prometheus_client.registry import Collector

from telemetry.metrics import REGISTRY
from telemetry.stage import BusStage


class CollectorStage(BusStage):
    """Subclass: set ``self.table`` (a Collector) in ``__init__``."""

    table: Collector
    #: The figures live in memory: publishers need not wait for this stage (see BusStage).
    writes_durably = False

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
