"""Log sinks: events to Elasticsearch and Grafana Loki (docs/outputs.md)."""

from __future__ import annotations

from telemetry.component import Component
from telemetry.runtime import Runtime


def sink_components(rt: Runtime) -> list[Component]:
    """A stage per sink section written (and not ``enabled: false``), on the server."""
    cfg = rt.settings.sinks
    out: list[Component] = []
    if cfg.elasticsearch is not None and cfg.elasticsearch.enabled:
        from telemetry.sinks.elasticsearch import ElasticsearchStage

        out.append(ElasticsearchStage(rt, cfg.elasticsearch))
    if cfg.loki is not None and cfg.loki.enabled:
        from telemetry.sinks.loki import LokiStage

        out.append(LokiStage(rt, cfg.loki))
    return out
