"""The latest value of each meter as a Prometheus series, so Grafana can chart the cloud itself.

One metric family per meter, named after it with Prometheus conventions
(``hardware.memory.used`` in KB becomes ``telemetry_meter_hardware_memory_used_bytes``,
scaled to bytes), labelled ``resource``, ``project`` and ``host``. Ceilometer's
cumulative meters are counters (``_total``: ``rate()`` handles their resets), gauges
and deltas are gauges. An allow-list of meter globs and a cap on the number of
series keep a large cloud from blowing up the scrape; what does not fit is
counted, never silently dropped.

The values live in memory: redelivery only writes a value again, and a sample
older than the one shown never replaces it, so the stage acknowledges as soon
as it has read a batch.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from telemetry.bus import Delivery
from telemetry.bus.topics import METERED_SAMPLES
from telemetry.config.exporter import MeterGauges
from telemetry.metrics import BUS_CONSUMED, RECORDS_IN, REGISTRY
from telemetry.fastcodec import fast_sample_doc
from telemetry.models import CounterType, Record, Sample
from telemetry.exporter.base import CollectorStage
from telemetry.runtime import Runtime

log = logging.getLogger(__name__)

#: The topic the meter gauges read: samples after the transformer pipeline, raw and derived alike.
SAMPLES_TOPIC = METERED_SAMPLES

SERIES = Gauge("telemetry_exporter_meter_series", "Meter series /metrics shows now", registry=REGISTRY)
SERIES_REFUSED = Counter(
    "telemetry_exporter_series_refused",
    "Meter series not exported because max_series was reached, by meter (each series counted once)",
    ["meter"],
    registry=REGISTRY,
)
SAMPLES_REFUSED = Counter(
    "telemetry_exporter_meter_samples_refused",
    "Samples the meter exporter did not show, by reason (series_limit, stale, name_clash)",
    ["reason"],
    registry=REGISTRY,
)

#: Ceilometer units with a Prometheus base unit: (name suffix, factor to the base unit).
#: Ceilometer's KB/MB/GB are binary (libvirt and SNMP report KiB).
UNITS: dict[str, tuple[str, float]] = {
    "B": ("bytes", 1.0),
    "KB": ("bytes", 1024.0),
    "MB": ("bytes", 1024.0**2),
    "GB": ("bytes", 1024.0**3),
    "KiB": ("bytes", 1024.0),
    "MiB": ("bytes", 1024.0**2),
    "GiB": ("bytes", 1024.0**3),
    "TiB": ("bytes", 1024.0**4),
    "B/s": ("bytes_per_second", 1.0),
    "s": ("seconds", 1.0),
    "ms": ("seconds", 1e-3),
    "ns": ("seconds", 1e-9),
    "%": ("percent", 1.0),
}
#: Suffixes Prometheus reserves for counters, histograms, summaries and info metrics.
_RESERVED = ("_total", "_count", "_sum", "_bucket", "_created", "_info")
#: Refused series remembered so each is counted once; past this many, every refused sample counts.
_REFUSED_MEMORY = 100_000


def family_name(meter: str, unit: str) -> tuple[str, float]:
    """The metric name for a meter and its unit, and the factor that converts values to that unit."""
    base = "telemetry_meter_" + re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", meter.lower())).strip("_")
    suffix, scale = UNITS.get(unit, ("", 1.0))
    if suffix and not base.endswith("_" + suffix):
        base += "_" + suffix
    if base.endswith(_RESERVED):
        base += "_value"
    return base, scale


class MeterFilter:
    """Ceilometer-style meter selection: globs, ``!`` exclusions first; only exclusions means all others."""

    def __init__(self, globs: list[str]) -> None:
        self.allow = [re.compile(fnmatch.translate(g)) for g in globs if not g.startswith("!")]
        self.deny = [re.compile(fnmatch.translate(g[1:])) for g in globs if g.startswith("!")]
        self._cache: dict[str, bool] = {}

    def __call__(self, meter: str) -> bool:
        hit = self._cache.get(meter)
        if hit is None:
            if any(rx.match(meter) for rx in self.deny):
                hit = False
            else:
                hit = not self.allow or any(rx.match(meter) for rx in self.allow)
            if len(self._cache) < 10_000:
                self._cache[meter] = hit
        return hit


SeriesKey = tuple[str, str, str]  # resource, project, host
#: What the table reads of a sample: meter, counter type, unit, volume, resource, project, host, time.
MeterRow = tuple[str, str, str, float, str, str, str, float]
COUNTER_TYPES = frozenset(t.value for t in CounterType)


@dataclass
class Family:
    meter: str
    unit: str
    counter: bool
    scale: float
    #: key -> (value in the family's unit, sample time as epoch seconds)
    series: dict[SeriesKey, tuple[float, float]] = field(default_factory=dict)


def sample_host(meta: dict[str, Any]) -> str:
    """The host a sample is about: a VM's hypervisor (Ceilometer's ``instance_host``) or the node itself."""
    host = meta.get("instance_host") or meta.get("host") or ""
    return host if isinstance(host, str) else str(host)


def sample_row(s: Sample) -> MeterRow:
    return (
        s.counter_name,
        s.counter_type.value,
        s.counter_unit,
        s.counter_volume,
        s.resource_id,
        s.project_id or "",
        sample_host(s.resource_metadata),
        s.timestamp.timestamp(),
    )


def doc_row(d: Mapping[str, Any]) -> MeterRow:
    """The row of a sample doc (``fastcodec.fast_sample_doc``, the one fast decoder beside the model)."""
    return (d["counter_name"], d["counter_type"], d["counter_unit"], d["counter_volume"], d["resource_id"],
            d["project_id"] or "", sample_host(d["resource_metadata"]), d["ts"])


class MeterGaugeTable(Collector):
    """Latest values by family and series, read by /metrics from the API's thread (hence the lock)."""

    def __init__(self, cfg: MeterGauges) -> None:
        self.cfg = cfg
        self.wanted = MeterFilter(cfg.meters)
        self.families: dict[str, Family] = {}
        self.size = 0
        self._refused: set[tuple[str, SeriesKey]] = set()
        self._names: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def update(self, rows: Iterable[MeterRow], now: float | None = None) -> int:
        """Take the newest value of each series; returns how many samples were shown."""
        now = time.time() if now is None else now
        oldest = now - self.cfg.stale_after
        shown = 0
        wanted, family = self.wanted, self._family
        with self._lock:
            for meter, ctype, unit, volume, resource, project, host, ts in rows:
                if not wanted(meter):
                    continue
                if ts < oldest:
                    SAMPLES_REFUSED.labels(reason="stale").inc()
                    continue
                fam = family(meter, unit, ctype == "cumulative")
                if fam is None:
                    continue
                key = (resource, project, host)
                old = fam.series.get(key)
                if old is None:
                    if self.size >= self.cfg.max_series:
                        self._refuse(meter, key)
                        continue
                    self.size += 1
                elif old[1] > ts:
                    continue  # a redelivered or late sample never replaces a newer value
                fam.series[key] = (volume * fam.scale, ts)
                shown += 1
            SERIES.set(self.size)
        return shown

    def _family(self, meter: str, unit: str, counter: bool) -> Family | None:
        name = self._names.get((meter, unit))
        if name is None:
            name, scale = family_name(meter, unit)
            if len(self._names) < 10_000:
                self._names[(meter, unit)] = name
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = Family(meter, unit, counter, family_name(meter, unit)[1])
        elif fam.meter != meter or fam.counter != counter:
            # Two meters that map to one name, or one meter sent as both gauge and cumulative:
            # the first one seen keeps the name, the other is counted, not mixed in.
            SAMPLES_REFUSED.labels(reason="name_clash").inc()
            return None
        return fam

    def _refuse(self, meter: str, key: SeriesKey) -> None:
        SAMPLES_REFUSED.labels(reason="series_limit").inc()
        if (meter, key) in self._refused:
            return
        if len(self._refused) < _REFUSED_MEMORY:
            self._refused.add((meter, key))
        SERIES_REFUSED.labels(meter=meter).inc()

    def expire(self, now: float | None = None) -> int:
        """Drop series whose newest sample is older than ``stale_after``; returns how many went."""
        oldest = (time.time() if now is None else now) - self.cfg.stale_after
        gone = 0
        with self._lock:
            for name, fam in list(self.families.items()):
                for key in [k for k, (_, ts) in fam.series.items() if ts < oldest]:
                    del fam.series[key]
                    gone += 1
                if not fam.series:
                    del self.families[name]
            self.size -= gone
            if gone:
                self._refused.clear()  # room again: a refused series may now get in, and count again if not
            SERIES.set(self.size)
        return gone

    def describe(self) -> list[Metric]:
        return []  # names depend on the meters seen; nothing to check for clashes at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = [
                (name, fam.meter, fam.unit, fam.counter, list(fam.series.items()))
                for name, fam in self.families.items()
            ]
        for name, meter, unit, counter, series in snapshot:
            doc = f"Latest sample of meter {meter}" + (f" (Ceilometer unit: {unit})" if unit else "")
            mf: CounterMetricFamily | GaugeMetricFamily
            if counter:
                mf = CounterMetricFamily(name, doc, labels=("resource", "project", "host"))
            else:
                mf = GaugeMetricFamily(name, doc, labels=("resource", "project", "host"))
            for key, (value, _) in series:
                mf.add_metric(list(key), value)
            yield mf


class MeterExporter(CollectorStage):
    """Reads samples in a consumer group of its own and keeps the gauge table current."""

    name = "exporter.meters"
    topics: ClassVar[dict[str, type[Record]]] = {SAMPLES_TOPIC: Sample}
    #: Seconds between passes that drop stale series.
    expire_interval: float = 60.0

    def __init__(self, rt: Runtime, cfg: MeterGauges, group: str) -> None:
        super().__init__(rt)
        self.group = group
        self.table: MeterGaugeTable = MeterGaugeTable(cfg)

    async def start(self) -> None:
        await super().start()
        self.spawn(self._expire, "expire")

    def _decode(
        self, deliveries: Sequence[Delivery]
    ) -> tuple[list[tuple[Delivery, Any]], list[tuple[Delivery, str]]]:
        good: list[tuple[Delivery, Any]] = []
        bad: list[tuple[Delivery, str]] = []
        fast = 0
        for d in deliveries:
            if isinstance(d.record, Sample):  # handed over in this process
                fast += 1
                good.append((d, sample_row(d.record)))
                continue
            doc = fast_sample_doc(d.value)
            if doc is None:
                g, b = super()._decode([d])
                good += [(dv, sample_row(r)) for dv, r in g if isinstance(r, Sample)]
                bad += b
            else:
                fast += 1
                good.append((d, doc_row(doc)))
        if fast:
            BUS_CONSUMED.labels(topic=SAMPLES_TOPIC).inc(fast)
            RECORDS_IN.labels(stage=self.name).inc(fast)
        return good, bad

    async def handle(self, records: list[tuple[Delivery, Any]]) -> None:
        self.table.update(row for _, row in records)

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(self.expire_interval)
            self.table.expire()

    def details(self) -> dict[str, Any]:
        return {**super().details(), "series": self.table.size, "families": len(self.table.families)}
