"""The cloud on /metrics: meter values, alarm states, counters from parsed logs (docs/outputs.md)."""

from __future__ import annotations

from telemetry.component import Component
from telemetry.runtime import Runtime


def exporter_components(rt: Runtime) -> list[Component]:
    """The exporters the ``exporter`` section enables (server and all-in-one), after the rule engine.

    Meter and alarm gauges read in a consumer group per server (each server
    shows the whole cloud); log counters in one group shared by all servers
    (each line is counted once across them).
    """
    from telemetry.exporter.alarms import AlarmStateExporter
    from telemetry.exporter.logs import LogCounters
    from telemetry.exporter.meters import MeterExporter

    cfg = rt.settings.exporter
    host = rt.settings.host
    out: list[Component] = []
    if cfg.meters.enabled:
        out.append(MeterExporter(rt, cfg.meters, group=f"exporter.meters.{host}"))
    if cfg.alarm_states:
        out.append(AlarmStateExporter(rt, group=f"exporter.alarms.{host}", rules=rt.rules))
    if cfg.log_counters:
        out.append(LogCounters(rt))
    return out
