"""Agent sources: host figures, log files, syslog, notifications, checks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from telemetry.component import Component


def agent_components(runtime: Any) -> Iterable[Component]:
    sources = runtime.settings.sources
    comps: list[Component] = []
    if sources.host_metrics.enabled:
        from telemetry.collect.host import HostMetricsSource

        comps.append(HostMetricsSource(runtime))
    return comps
