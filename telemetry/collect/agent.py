"""The agent's shipping pipeline: checkpoints, batcher, spool and shipper, shared by its sources.

It starts before the sources and stops after them, so on SIGTERM the last
batches still get a chance to reach the bus; whatever does not make it is
re-read on the next start, because its checkpoints never moved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from telemetry.bus import Bus
from telemetry.collect.batcher import Batcher, Mark
from telemetry.collect.checkpoints import SYNC_EVERY, Checkpoints
from telemetry.collect.ship import BusTarget, FileTarget, Shipper, Target
from telemetry.collect.spool import Spool
from telemetry.component import Component
from telemetry.config.sources import AgentConfig

log = logging.getLogger(__name__)

__all__ = ["AgentPipeline"]

DRAIN_ON_STOP = 2.0  # seconds the last batches get on shutdown (the whole stop fits in 5 s)


class AgentPipeline(Component):
    name = "agent.shipper"

    def __init__(self, cfg: AgentConfig, data_dir: Path, bus: Bus, fmt: str = "json", objects: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.checkpoints = Checkpoints(data_dir / "agent", cfg.checkpoint_ttl)
        self.spool = Spool(data_dir / "spool", cfg.spool.max_bytes, cfg.spool.compression)
        #: What the spool holds per source, so readers resume after it on restart.
        self.spooled: dict[str, Mark] = self.spool.positions()
        target: Target = FileTarget(cfg.output_file) if cfg.output_file else BusTarget(bus, fmt)
        self.batcher = Batcher(cfg.batch_records, cfg.batch_bytes, cfg.batch_wait,
                               objects=objects and isinstance(target, BusTarget) and bus.in_process)
        self.target_name = cfg.output_file or bus.describe()
        self.shipper = Shipper(target, self.batcher, self.spool, self.checkpoints, cfg.publish_timeout)

    async def start(self) -> None:
        # Collector tuning is the daemon's decision for its whole process (telemetry.gctune).
        self.spawn(self.shipper.run, "ship")
        self.spawn(self.shipper.settle, "settle")
        self.spawn(self.batcher.run_timer, "batch-timer")
        self.spawn(self._sync_checkpoints, "checkpoint-sync")

    async def _sync_checkpoints(self) -> None:
        """Flush the last checkpoints to the disk even when no batch follows them."""
        while True:
            await asyncio.sleep(SYNC_EVERY)
            await asyncio.to_thread(self.checkpoints.save)

    def alive(self) -> bool:
        """Healthy while shipping works; an outage the spool absorbs is still healthy."""
        return self.state == "running" and not (self.shipper.down and self.spool.full())

    async def stop(self) -> None:
        await self.batcher.flush()
        deadline = time.monotonic() + DRAIN_ON_STOP
        while (not self.batcher.out.empty() or self.shipper.inflight) and not self.shipper.down \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.cancel_tasks()
        self.checkpoints.save(force_sync=True)
        self.checkpoints.close()

    def details(self) -> dict[str, Any]:
        return {
            "target": self.target_name,
            "records_shipped": self.shipper.shipped,
            "spool_batches": len(self.spool),
            "bus_down": self.shipper.down,
        }
