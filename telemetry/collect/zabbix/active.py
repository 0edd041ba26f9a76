"""Active checks, agent side: fetch the item list from the server, evaluate, push ``agent data``.

This is what a Zabbix agent in active mode does (``ServerActive``): the
agent opens every connection, so it works through NAT and firewalls that
forbid the server from polling. Item list refreshed every ``refresh``
seconds; values buffered (bounded, oldest dropped and counted) and pushed
every ``send_interval``; a failed push keeps them for the next one, each with
its ``id`` so the server can tell a retry from a new value.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from typing import Any

from telemetry.collect.checks.items import ItemCollector, NotSupported, format_value
from telemetry.collect.zabbix import metrics as m
from telemetry.collect.zabbix.client import request_json
from telemetry.collect.zabbix.protocol import FrameError
from telemetry.component import Component
from telemetry.collect.zabbix.tls import TlsEnd
from telemetry.config.zabbix import ZabbixActive
from telemetry.timeutil import parse_duration

log = logging.getLogger(__name__)

__all__ = ["ActiveChecksClient"]


def _delay(value: Any) -> float:
    """A Zabbix delay (``30``, ``30s``, ``5m``; flexible intervals after ``;`` are not used) in seconds."""
    text = str(value).split(";", 1)[0].strip()
    return max(1.0, parse_duration(int(text) if text.isdigit() else text))


class ActiveChecksClient(Component):
    name = "source.zabbix_active"

    def __init__(self, cfg: ZabbixActive, items: ItemCollector, host: str, host_metadata: str,
                 tls: TlsEnd | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.tls = tls
        self.items = items
        self.host = host
        self.host_metadata = cfg.host_metadata if cfg.host_metadata is not None else host_metadata
        self.session = uuid.uuid4().hex
        self.checks: dict[str, float] = {}  # key -> delay
        self._next: dict[str, float] = {}
        self.buffer: deque[dict[str, Any]] = deque()
        self._ids = itertools.count(1)
        self.sent = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        self.spawn(self._refresh_loop, "refresh")
        self.spawn(self._collect_loop, "collect")
        self.spawn(self._send_loop, "send")

    async def refresh(self) -> None:
        """Fetch the item list; on failure the previous list is kept."""
        doc = await request_json(self.cfg.server, {"request": "active checks", "host": self.host,
                                                   "host_metadata": self.host_metadata, "version": "6.0"},
                                 self.cfg.timeout, self.tls)
        if doc.get("response") != "success":
            raise ValueError(f"server refused active checks: {doc.get('info', doc)}")
        checks: dict[str, float] = {}
        for entry in doc.get("data") or []:
            try:
                checks[str(entry["key"])] = _delay(entry.get("delay", 60))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("%s: ignoring active check %r: %s", self.name, entry, exc)
        self.checks = checks
        log.info("%s: %d active checks from %s", self.name, len(checks), self.cfg.server)

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh()
                self.last_error = None
                wait = self.cfg.refresh
            except (TimeoutError, OSError, asyncio.IncompleteReadError, FrameError, ValueError) as exc:
                self.last_error = f"active checks from {self.cfg.server}: {type(exc).__name__}: {exc}"
                log.warning("%s: %s", self.name, self.last_error)
                wait = min(self.cfg.refresh, 60.0)  # Zabbix retries sooner than a full refresh
            await asyncio.sleep(wait)

    async def collect_due(self) -> int:
        """Evaluate the checks that are due; returns how many values were buffered."""
        now = time.monotonic()
        n = 0
        for key, delay in list(self.checks.items()):
            if self._next.get(key, 0.0) > now:
                continue
            self._next[key] = now + delay
            clock = time.time()
            try:
                value = format_value(await asyncio.to_thread(self.items.get, key))
                state = 0
            except NotSupported as exc:
                value, state = str(exc), 1  # state 1: not supported, as Zabbix agents report it
                m.VALUES.labels(component=self.name, result="notsupported").inc()
            entry = {"host": self.host, "key": key, "value": value, "id": next(self._ids),
                     "clock": int(clock), "ns": int((clock % 1) * 1e9)}
            if state:
                entry["state"] = state
            self.buffer.append(entry)
            n += 1
            while len(self.buffer) > self.cfg.buffer_size:
                self.buffer.popleft()
                m.VALUES.labels(component=self.name, result="dropped").inc()
        return n

    async def _collect_loop(self) -> None:
        while True:
            await self.collect_due()
            await asyncio.sleep(1.0)

    async def send(self) -> int:
        """Push the buffered values; they leave the buffer only when the server said success."""
        if not self.buffer:
            return 0
        batch = list(self.buffer)
        clock = time.time()
        doc = await request_json(self.cfg.server, {"request": "agent data", "session": self.session, "data": batch,
                                                   "clock": int(clock), "ns": int((clock % 1) * 1e9)},
                                 self.cfg.timeout, self.tls)
        if doc.get("response") != "success":
            raise ValueError(f"server refused agent data: {doc.get('info', doc)}")
        sent_ids = {e["id"] for e in batch}
        self.buffer = deque(e for e in self.buffer if e["id"] not in sent_ids)
        self.sent += len(batch)
        m.VALUES.labels(component=self.name, result="processed").inc(len(batch))
        return len(batch)

    async def _send_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.send_interval)
            try:
                await self.send()
            except (TimeoutError, OSError, asyncio.IncompleteReadError, FrameError, ValueError) as exc:
                self.last_error = f"agent data to {self.cfg.server}: {type(exc).__name__}: {exc}"
                log.warning("%s: %s (%d values kept)", self.name, self.last_error, len(self.buffer))

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"server": self.cfg.server, "tls": self.tls is not None, "checks": len(self.checks),
                               "buffered": len(self.buffer),
                               "sent": self.sent}
        if self.last_error:
            out["last_error"] = self.last_error
        return out
