"""The daemon's own metrics, exported on /metrics.

A private registry keeps the exposition to ``telemetry_*`` names only (the
contract), including the process figures, which are re-namespaced.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from telemetry import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(namespace="telemetry", registry=REGISTRY)

BUILD_INFO = Info("telemetry_build", "Version of the running daemon", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

RECORDS_IN = Counter(
    "telemetry_stage_records_in", "Records a stage received", ["stage"], registry=REGISTRY
)
RECORDS_OUT = Counter(
    "telemetry_stage_records_out", "Records a stage emitted or stored", ["stage"], registry=REGISTRY
)
RECORDS_REJECTED = Counter(
    "telemetry_stage_records_rejected",
    "Bad input a stage refused, by reason; good records beside them go on",
    ["stage", "reason"],
    registry=REGISTRY,
)
RECORDS_DEAD_LETTERED = Counter(
    "telemetry_stage_records_dead_lettered",
    "Records a stage published to the dead-letter topic (a subset of the rejected ones)",
    ["stage"],
    registry=REGISTRY,
)
STAGE_BATCH_SECONDS = Histogram(
    "telemetry_stage_batch_seconds",
    "Time a bus stage took to process and durably write one batch (store write, sink request)",
    ["stage"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STAGE_FAILURES = Counter(
    "telemetry_stage_failures",
    "Batches a stage could not write and gave back to the bus to retry (disk, database or bus trouble), by cause",
    ["stage", "reason"],
    registry=REGISTRY,
)
HOST_SAMPLES = Counter(
    "telemetry_host_samples_collected", "Samples of this host's own figures collected", registry=REGISTRY
)
COMPONENT_UP = Gauge(
    "telemetry_component_up", "1 while a component runs, 0 when it failed or stopped", ["component"],
    registry=REGISTRY,
)
COMPONENT_RESTARTS = Counter(
    "telemetry_component_restarts", "Times a component's task crashed and was restarted", ["component"],
    registry=REGISTRY,
)
BUS_PUBLISHED = Counter(
    "telemetry_bus_published_records", "Records the bus acknowledged, by topic", ["topic"], registry=REGISTRY
)
BUS_CONSUMED = Counter(
    "telemetry_bus_consumed_records", "Records taken from the bus, by topic", ["topic"], registry=REGISTRY
)
BUS_REDELIVERED = Counter(
    "telemetry_bus_redelivered_records", "Records the bus delivered again, by topic", ["topic"], registry=REGISTRY
)

BUS_UNCLAIMED_DROPPED = Counter(
    "telemetry_bus_unclaimed_dropped_records",
    "Oldest records the memory bus let go from a topic no consumer group reads (e.g. dead letters)",
    ["topic"], registry=REGISTRY,
)


M = TypeVar("M", bound=MetricWrapperBase)


class Bound(Generic[M]):
    """The children of one labelled metric, each bound once per label set.

    ``labels()`` checks the names, takes the metric's lock and builds a key on
    every call: on a path that runs per record (a log line counted by level,
    a parse outcome by type) that was a visible share of the daemon's CPU. The
    label sets are bounded by the caller, as any Prometheus label must be, and
    so is this cache; the metrics it serves are never cleared.
    """

    __slots__ = ("metric", "children")

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


def exposition(names: Sequence[str] = ()) -> bytes:
    """The text exposition; with ``names`` (sample names, Prometheus's ``name[]``), those alone: a poller
    of one counter (a benchmark's progress, a script) need not have every series rendered."""
    return generate_latest(REGISTRY.restricted_registry(names) if names else REGISTRY)


#: Sample name -> (section, key) of ``pipeline_snapshot``: the figures the console's pipeline page plots.
_STAGE_COUNTERS = {
    "telemetry_stage_records_in_total": "records_in",
    "telemetry_stage_records_out_total": "records_out",
    "telemetry_stage_records_rejected_total": "rejected",
    "telemetry_stage_records_dead_lettered_total": "dead_lettered",
}
_TOPIC_COUNTERS = {
    "telemetry_bus_published_records_total": "published",
    "telemetry_bus_consumed_records_total": "consumed",
    "telemetry_bus_redelivered_records_total": "redelivered",
}
_BUS_GAUGES = {"telemetry_bus_queue_depth": "queue_depth", "telemetry_bus_consumer_lag": "consumer_lag"}
_SPOOL_GAUGES = {"telemetry_agent_spool_bytes": "bytes", "telemetry_agent_spool_batches": "batches"}


def pipeline_snapshot() -> dict[str, Any]:
    """The pipeline's cumulative counters and current gauges, read from this registry.

    Counters, not rates: the server keeps no history for its readers, and two
    readers polling at different paces each get exact rates from their own
    two snapshots (as Prometheus's rate() does).
    """
    stages: dict[str, dict[str, float]] = {}
    topics: dict[str, dict[str, float]] = {}
    bus: dict[str, float] = {}
    spool = dict.fromkeys(_SPOOL_GAUGES.values(), 0.0)
    for family in REGISTRY.collect():
        for s in family.samples:
            if s.name in _STAGE_COUNTERS:
                row = stages.setdefault(s.labels["stage"], dict.fromkeys(_STAGE_COUNTERS.values(), 0.0))
                row[_STAGE_COUNTERS[s.name]] += s.value
            elif s.name in _TOPIC_COUNTERS:
                t = topics.setdefault(s.labels["topic"], dict.fromkeys(_TOPIC_COUNTERS.values(), 0.0))
                t[_TOPIC_COUNTERS[s.name]] += s.value
            elif s.name in _BUS_GAUGES:
                key = f"{_BUS_GAUGES[s.name]}:{s.labels.get('topic', '')}"
                bus[key] = bus.get(key, 0.0) + s.value
            elif s.name in _SPOOL_GAUGES:
                spool[_SPOOL_GAUGES[s.name]] = s.value
    return {"time": time.time(), "stages": stages, "topics": topics, "spool": spool, "bus": bus}
