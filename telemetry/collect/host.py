"""This host's own figures as Ceilometer samples, every ``interval`` seconds.

Meter names follow Ceilometer's ``hardware.*`` meters (its SNMP pollsters),
so dashboards and alarms written for Ceilometer work on them unchanged.
Counters the kernel keeps (network bytes, disk blocks) are ``cumulative``;
rates come from the ``rate_of_change`` transformer, as in Ceilometer.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime
from typing import Any

import psutil

from telemetry.bus.records import publish_records
from telemetry.component import Component
from telemetry.metrics import HOST_SAMPLES, RECORDS_OUT
from telemetry.models import CounterType, Sample
from telemetry.timeutil import utcnow
from telemetry.runtime import Runtime

log = logging.getLogger(__name__)

GAUGE, CUMULATIVE = CounterType.gauge, CounterType.cumulative


def collect_host_samples(host: str, now: datetime | None = None) -> list[Sample]:
    """One round of figures; psutil calls are cheap and non-blocking."""
    ts = now or utcnow()
    meta: dict[str, Any] = {"host": host}
    out: list[Sample] = []

    def add(name: str, ctype: CounterType, unit: str, volume: float, rid: str = host, **extra: Any) -> None:
        out.append(
            Sample(
                counter_name=name, counter_type=ctype, counter_unit=unit, counter_volume=float(volume),
                resource_id=rid, source="host", timestamp=ts, resource_metadata={**meta, **extra},
            )
        )

    cpu = psutil.cpu_times_percent(interval=None)
    add("hardware.cpu.util", GAUGE, "%", round(100.0 - cpu.idle, 3))
    add("hardware.system_stats.cpu.idle", GAUGE, "%", cpu.idle)
    load1, load5, load15 = os.getloadavg()
    add("hardware.cpu.load.1min", GAUGE, "process", load1)
    add("hardware.cpu.load.5min", GAUGE, "process", load5)
    add("hardware.cpu.load.15min", GAUGE, "process", load15)

    mem = psutil.virtual_memory()
    add("hardware.memory.total", GAUGE, "KB", mem.total // 1024)
    add("hardware.memory.used", GAUGE, "KB", (mem.total - mem.available) // 1024)
    add("hardware.memory.avail", GAUGE, "KB", mem.available // 1024)
    add("hardware.memory.buffer", GAUGE, "KB", getattr(mem, "buffers", 0) // 1024)
    add("hardware.memory.cached", GAUGE, "KB", getattr(mem, "cached", 0) // 1024)
    swap = psutil.swap_memory()
    add("hardware.memory.swap.total", GAUGE, "KB", swap.total // 1024)
    add("hardware.memory.swap.avail", GAUGE, "KB", swap.free // 1024)

    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        rid = f"{host}.{part.mountpoint}"
        extra = {"path": part.mountpoint, "device": part.device, "fstype": part.fstype}
        add("hardware.disk.size.total", GAUGE, "KB", usage.total // 1024, rid, **extra)
        add("hardware.disk.size.used", GAUGE, "KB", usage.used // 1024, rid, **extra)

    io = psutil.disk_io_counters()
    if io is not None:
        add("hardware.system_stats.io.outgoing.blocks", CUMULATIVE, "blocks", io.write_count)
        add("hardware.system_stats.io.incoming.blocks", CUMULATIVE, "blocks", io.read_count)

    for nic, c in psutil.net_io_counters(pernic=True).items():
        if nic == "lo":
            continue
        rid = f"{host}.{nic}"
        add("hardware.network.incoming.bytes", CUMULATIVE, "B", c.bytes_recv, rid, interface=nic)
        add("hardware.network.outgoing.bytes", CUMULATIVE, "B", c.bytes_sent, rid, interface=nic)
        add("hardware.network.outgoing.errors", CUMULATIVE, "packet", c.errout, rid, interface=nic)
    return out


class HostMetricsSource(Component):
    name = "source.host_metrics"

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.interval = runtime.settings.sources.host_metrics.interval
        self.collected = 0

    async def start(self) -> None:
        psutil.cpu_times_percent(interval=None)  # prime: the first call has no reference point
        self.spawn(self._loop, "collect")

    async def _loop(self) -> None:
        await asyncio.sleep(min(1.0, self.interval))
        while True:
            samples = collect_host_samples(self.runtime.settings.host)
            await publish_records(self.runtime.bus, samples, self.runtime.settings.bus.format)
            self.collected += len(samples)
            HOST_SAMPLES.inc(len(samples))
            RECORDS_OUT.labels(stage=self.name).inc(len(samples))
            await asyncio.sleep(self.interval)

    def details(self) -> dict[str, Any]:
        return {"interval_seconds": self.interval, "samples_collected": self.collected}
