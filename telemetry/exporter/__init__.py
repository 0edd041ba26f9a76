"""The cloud on /metrics: meter values, alarm states, counters from parsed logs (docs/outputs.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from telemetry.component import Component


def exporter_components(runtime: Any) -> Iterable[Component]:
    """The exporters the ``exporter`` section enables (server and all-in-one).

    Meter and alarm gauges read in a consumer group per server (each server
    shows the whole cloud); log counters in one group shared by all servers
    (each line is counted once across them).
    """
    from telemetry.exporter.alarms import AlarmStateExporter
    from telemetry.exporter.logs import LogCounters
    from telemetry.exporter.meters import MeterExporter

    cfg = runtime.settings.exporter
    host = runtime.settings.host
    out: list[Component] = []
    if cfg.meters.enabled:
        out.append(MeterExporter(runtime.bus, cfg.meters, group=f"exporter.meters.{host}"))
    if cfg.alarm_states:
        out.append(
            AlarmStateExporter(
                runtime.bus, group=f"exporter.alarms.{host}", rules=lambda: runtime.services.get("rules")
            )
        )
    if cfg.log_counters:
        out.append(LogCounters(runtime.bus))
    return out
