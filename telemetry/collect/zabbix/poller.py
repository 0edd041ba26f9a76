"""Polls real Zabbix agents with passive checks, so a site keeps its agents and uses this server.

Each target's keys are asked at the target's interval, at most
``concurrency`` at once over all targets; every numeric answer becomes a
sample (meter = key, resource = the target's host, role stamped when set).
An agent that is down, slow, or answers ``ZBX_NOTSUPPORTED`` costs a counted
metric and a status on /healthz, never the other targets' polls.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from telemetry.bus import Bus
from telemetry.bus.records import publish_records
from telemetry.collect.checks.samples import item_sample, numeric
from telemetry.collect.zabbix import metrics as m
from telemetry.collect.zabbix.client import get_value
from telemetry.collect.zabbix.protocol import FrameError
from telemetry.component import Component
from telemetry.collect.zabbix.tls import TlsEnd, client_tls
from telemetry.config.zabbix import ZabbixPoller, ZabbixPollTarget
from telemetry.models import Sample
from telemetry.timeutil import utcnow

log = logging.getLogger(__name__)

__all__ = ["PollerSource"]


class PollerSource(Component):
    name = "source.zabbix_poller"

    def __init__(self, cfg: ZabbixPoller, bus: Bus, bus_format: str = "json") -> None:
        super().__init__()
        self.cfg = cfg
        self.bus = bus
        self.bus_format = bus_format
        self._sem = asyncio.Semaphore(cfg.concurrency)
        #: Last outcome per "host:key": the value, or the error.
        self.status: dict[str, str] = {}
        self.polled = 0
        #: Each configured target's TLS (None: unencrypted), by id(); one client context shared by all.
        self.tls: dict[int, TlsEnd | None] = {}
        shared = None
        for t in cfg.targets:
            end = client_tls(cfg.tls, t.tls_connect or cfg.tls.connect, t.tls_peer_cert_issuer,
                             t.tls_peer_cert_subject, shared)
            shared = end.context if end is not None else shared
            self.tls[id(t)] = end

    async def start(self) -> None:
        for i, target in enumerate(self.cfg.targets):
            self.spawn(functools.partial(self._target_loop, target), f"poll-{i}-{target.host}")

    async def _target_loop(self, target: ZabbixPollTarget) -> None:
        interval = target.interval or self.cfg.interval
        while True:
            started = time.monotonic()
            await self.poll(target)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _one(self, address: str, target: ZabbixPollTarget, key: str) -> Sample | None:
        label = f"{target.host}:{key}"
        async with self._sem:
            when = utcnow()
            try:
                value, error = await get_value(address, key, self.cfg.timeout, self.tls[id(target)])
            except (TimeoutError, OSError, asyncio.IncompleteReadError, FrameError) as exc:
                m.POLLS.labels(result="error").inc()
                hint = ""
                if isinstance(exc, asyncio.IncompleteReadError) and not exc.partial:
                    hint = (" (closed unanswered: this server is not in the agent's Server= list, or the agent takes "
                            f"{'plain' if self.tls[id(target)] else 'TLS'} connections only: tls_connect)")
                self._note(label, f"error: {type(exc).__name__}: {exc}{hint}")
                return None
        if error is not None or value is None:
            m.POLLS.labels(result="notsupported").inc()
            self._note(label, f"ZBX_NOTSUPPORTED: {error}")
            return None
        m.POLLS.labels(result="ok").inc()
        volume = numeric(value)
        if volume is None:
            self._note(label, f"text value {value[:40]!r} cannot be a sample")
            return None
        self._note(label, "ok")
        return item_sample(target.host, key, volume, when, "zabbix-poller", target.role, agent=address)

    def _note(self, label: str, status: str) -> None:
        if self.status.get(label) != status and status != "ok":
            log.warning("%s: %s: %s", self.name, label, status)
        self.status[label] = status

    async def poll(self, target: ZabbixPollTarget) -> list[Sample]:
        """Every key of ``target`` (one of ``cfg.targets``) once; the samples are on the bus when this returns."""
        address = target.address or f"{target.host}:10050"
        got = await asyncio.gather(*(self._one(address, target, k) for k in target.keys))
        samples = [s for s in got if s is not None]
        if samples:
            await publish_records(self.bus, samples, self.bus_format)
            self.polled += len(samples)
            m.VALUES.labels(component=self.name, result="processed").inc(len(samples))
        return samples

    def details(self) -> dict[str, Any]:
        return {"targets": len(self.cfg.targets), "samples": self.polled,
                "problems": {k: v for k, v in self.status.items() if v != "ok"}}
