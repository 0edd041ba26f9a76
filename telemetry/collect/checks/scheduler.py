"""Runs a node's role templates: each item and check at its own interval, values onto the bus.

One loop keeps the next due time of every job; a due job runs in a worker
thread (a check may block on a socket or a CLI for seconds) with its timeout,
at most ``CONCURRENCY`` at once, and never overlaps itself. Discovery
prototypes are expanded from their rule's rows, re-discovered every
``REDISCOVER`` seconds, so a new file system or interface is covered without a
restart. Every check also yields ``check.status[<name>]`` (1 ok, 0 failed, -1
skipped) with the status text in its metadata: an absent service is reported
as such, never as a traceback.

If the bus refuses a publish, the samples wait (up to ``MAX_PENDING``) and go
with the next one; past that the oldest are dropped and counted.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter

from telemetry.bus import Bus
from telemetry.bus.records import publish_records
from telemetry.collect.checks.health import CheckResult, HealthCheck
from telemetry.collect.checks.items import ItemCollector, NotSupported
from telemetry.collect.checks.keys import quote_param
from telemetry.collect.checks.samples import item_sample, numeric
from telemetry.collect.checks.templates import ItemCheck, RoleTemplate
from telemetry.component import Component
from telemetry.metrics import REGISTRY
from telemetry.models import Sample
from telemetry.timeutil import utcnow

log = logging.getLogger(__name__)

__all__ = ["CheckScheduler"]

CHECK_RUNS = Counter("telemetry_checks_runs", "Checks and items run, by check and state (ok, failed, skipped)",
                     ["check", "state"], registry=REGISTRY)
CHECK_SAMPLES = Counter("telemetry_checks_samples", "Samples the check scheduler published", registry=REGISTRY)
CHECK_DROPPED = Counter("telemetry_checks_dropped_samples",
                        "Samples dropped because the bus stayed down past the pending limit", registry=REGISTRY)

CONCURRENCY = 4
REDISCOVER = 300.0
MAX_PENDING = 10_000
STATUS_VALUE = {"ok": 1.0, "failed": 0.0, "skipped": -1.0}
_MACRO = re.compile(r"\{#[A-Z0-9_.]+\}")


def _fill(prototype: str, row: dict[str, str]) -> str:
    """A prototype key with each ``{#MACRO}`` replaced by the discovered row's value, quoted as needed."""
    return _MACRO.sub(lambda m: quote_param(str(row.get(m.group(0), ""))), prototype)


@dataclass
class _Job:
    label: str
    interval: float
    run: Callable[[], Awaitable[None]]
    busy: bool = False


class CheckScheduler(Component):
    name = "source.checks"

    def __init__(self, templates: list[RoleTemplate], items: ItemCollector, bus: Bus, host: str, *,
                 interval: float, timeout: float, bus_format: str = "json") -> None:
        super().__init__()
        self.templates = templates
        self.items = items
        self.bus = bus
        self.host = host
        self.interval = interval
        self.timeout = timeout
        self.bus_format = bus_format
        names = [t.name for t in templates]
        self.role: str | list[str] = names[0] if len(names) == 1 else names
        #: Last status of every item and check by label: "ok", "failed: ...", "skipped: ...", "ZBX_NOTSUPPORTED: ...".
        self.status: dict[str, str] = {}
        self.pending: deque[Sample] = deque()
        self.published = 0
        self._discovered: dict[str, tuple[float, list[dict[str, str]]]] = {}
        self._sem = asyncio.Semaphore(CONCURRENCY)
        self._jobs: list[_Job] = []
        for t in templates:
            for item in t.items:
                self._jobs.append(_Job(item.key, item.interval or interval, self._item_runner(item, t.name)))
            for check in t.health:
                self._jobs.append(_Job(check.label, check.interval or interval, self._check_runner(check, t.name)))

    async def start(self) -> None:
        self.spawn(self._loop, "schedule")

    async def stop(self) -> None:
        await self.cancel_tasks()
        if self.pending:
            try:
                await asyncio.wait_for(self._flush(), 1.0)
            except (TimeoutError, Exception):  # stopping: what cannot go now is counted
                CHECK_DROPPED.inc(len(self.pending))

    async def run_once(self) -> None:
        """Every job once, now (tests, and the first round after start)."""
        await asyncio.gather(*(self._guarded(j) for j in self._jobs))
        await self._flush()

    async def _loop(self) -> None:
        seq = itertools.count()
        now = time.monotonic()
        # Spread first runs over a second so a big template does not start in one burst.
        due = [(now + i * min(1.0, 1.0 / max(1, len(self._jobs))), next(seq), j) for i, j in enumerate(self._jobs)]
        heapq.heapify(due)
        running: set[asyncio.Task[None]] = set()
        while True:
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, _, job = heapq.heappop(due)
                heapq.heappush(due, (now + job.interval, next(seq), job))
                if not job.busy:
                    t = asyncio.create_task(self._guarded(job))
                    running.add(t)
                    t.add_done_callback(running.discard)
            try:
                await self._flush()
            except Exception as exc:  # the bus is down: keep the samples for the next round
                log.warning("checks: publishing %d samples failed (%s); retrying", len(self.pending), exc)
            await asyncio.sleep(min(1.0, max(0.05, (due[0][0] - time.monotonic()) if due else 1.0)))

    async def _guarded(self, job: _Job) -> None:
        job.busy = True
        try:
            async with self._sem:
                await job.run()
        except Exception as exc:  # one broken check never stops the others
            self._set_status(job.label, f"failed: {type(exc).__name__}: {exc}", "failed")
            log.exception("checks: %s crashed", job.label)
        finally:
            job.busy = False

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.wait_for(asyncio.to_thread(fn, *args), self.timeout + 1)

    def _set_status(self, label: str, status: str, state: str) -> None:
        CHECK_RUNS.labels(check=label, state=state).inc()
        if self.status.get(label) != status:
            level = logging.INFO if state in ("ok", "skipped") else logging.WARNING
            log.log(level, "checks: %s: %s", label, status)
        self.status[label] = status

    # -- items -------------------------------------------------------------------
    def _item_runner(self, item: ItemCheck, template: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            keys = [item.key] if item.discovery is None else await self._expand(item)
            for key in keys:
                await self._run_key(key, template)
        return run

    async def _run_key(self, key: str, template: str) -> None:
        when = utcnow()
        try:
            value = await self._call(self.items.get, key)
        except NotSupported as exc:
            self._set_status(key, f"ZBX_NOTSUPPORTED: {exc}", "failed")
            return
        except TimeoutError:
            self._set_status(key, f"failed: no value within {self.timeout:g}s", "failed")
            return
        volume = numeric(value)
        if volume is None:
            self._set_status(key, f"failed: text value {str(value)[:60]!r} cannot be a sample", "failed")
            return
        self.pending.append(item_sample(self.host, key, volume, when, "zabbix-agent", self.role, template=template))
        self._set_status(key, "ok", "ok")

    async def _expand(self, item: ItemCheck) -> list[str]:
        assert item.discovery is not None
        cached = self._discovered.get(item.discovery)
        if cached is None or time.monotonic() - cached[0] > REDISCOVER:
            try:
                rows = orjson.loads(await self._call(self.items.get, item.discovery))
            except (TimeoutError, NotSupported, orjson.JSONDecodeError) as exc:
                self._set_status(item.discovery, f"failed: discovery: {exc}", "failed")
                rows = cached[1] if cached else []
            cached = (time.monotonic(), [r for r in rows if isinstance(r, dict)])
            self._discovered[item.discovery] = cached
        out: list[str] = []
        for row in cached[1]:
            if all(re.search(rx, str(row.get(m, ""))) for m, rx in item.filter.items()):
                key = _fill(item.key, row)
                if key not in out:
                    out.append(key)
        return out

    # -- health checks -----------------------------------------------------------
    def _check_runner(self, check: HealthCheck, template: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            when = utcnow()
            try:
                result: CheckResult = await self._call(check.run, self.timeout)
            except TimeoutError:
                result = CheckResult.failed(f"no answer within {self.timeout:g}s")
            meta = {"template": template, "check": check.label}
            for key, volume, extra in result.values:
                self.pending.append(item_sample(self.host, key, volume, when, "telemetry-checks", self.role,
                                                **meta, **extra))
            self.pending.append(item_sample(self.host, f"check.status[{quote_param(check.label)}]",
                                            STATUS_VALUE[result.state], when, "telemetry-checks", self.role,
                                            unit="", status=result.status, **meta))
            self._set_status(check.label, result.status, result.state)
        return run

    # -- output ------------------------------------------------------------------
    async def _flush(self) -> None:
        while len(self.pending) > MAX_PENDING:
            self.pending.popleft()
            CHECK_DROPPED.inc()
        if not self.pending:
            return
        batch = list(self.pending)
        await publish_records(self.bus, batch, self.bus_format)
        for _ in batch:
            self.pending.popleft()
        self.published += len(batch)
        CHECK_SAMPLES.inc(len(batch))

    def details(self) -> dict[str, Any]:
        return {"templates": [t.name for t in self.templates], "jobs": len(self._jobs),
                "samples_published": self.published, "status": dict(sorted(self.status.items()))}
