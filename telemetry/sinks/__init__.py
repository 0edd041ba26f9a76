"""Log sinks: events to Elasticsearch and Grafana Loki (docs/outputs.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from telemetry.component import Component


def sink_components(runtime: Any) -> Iterable[Component]:
    """A stage per sink section written (and not ``enabled: false``), on the server."""
    cfg = runtime.settings.sinks
    out: list[Component] = []
    if cfg.elasticsearch is not None and cfg.elasticsearch.enabled:
        from telemetry.sinks.elasticsearch import ElasticsearchStage

        out.append(ElasticsearchStage(runtime.bus, cfg.elasticsearch))
    if cfg.loki is not None and cfg.loki.enabled:
        from telemetry.sinks.loki import LokiStage

        out.append(LokiStage(runtime.bus, cfg.loki))
    return out
