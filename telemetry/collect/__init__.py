"""Agent sources: host figures, log files, the journal, syslog, notifications, checks."""

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
    journald = sources.journald if sources.journald and sources.journald.enabled else None
    if sources.files or sources.syslog.enabled or journald:
        from telemetry.collect.agent import AgentPipeline

        pipeline = AgentPipeline(sources.agent, runtime.data_dir, runtime.bus, runtime.settings.bus.format)
        comps.append(pipeline)
        runtime.services["agent_pipeline"] = pipeline
        if sources.files:
            from telemetry.collect.files import FilesSource

            comps.append(FilesSource(list(sources.files), sources.agent, runtime.settings.host, pipeline.batcher,
                                     pipeline.checkpoints, pipeline.spooled))
        if journald:
            from telemetry.collect.journald import JournalReader

            comps.append(JournalReader(journald, sources.agent, runtime.settings.host, pipeline.batcher,
                                       pipeline.checkpoints, pipeline.spooled))
        if sources.syslog.enabled:
            from telemetry.collect.syslog import SyslogServer

            comps.append(SyslogServer(runtime, pipeline.batcher))
    if sources.notifications.enabled:
        from telemetry.collect.notifications import NotificationListener

        comps.append(NotificationListener(runtime))
    return comps
