"""The daemon: builds the components for a mode, starts them in order, stops them cleanly.

Modes: ``run`` (all-in-one: agent and server over the in-memory bus),
``agent`` (sources only, shipping to the bus) and ``server`` (stages, stores,
rules and the API, reading from the bus). Each pipeline stage contributes a
builder; the daemon only orders, supervises and reports.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from telemetry.bus import Bus, open_bus
from telemetry.component import Component
from telemetry.config import Settings
from telemetry.systemd import notify, watchdog_interval

log = logging.getLogger(__name__)

Mode = Literal["run", "agent", "server"]
STOP_TIMEOUT = 4.0  # the whole stop must fit in 5 s (systemd and the contract)


@dataclass
class Runtime:
    """What components share: settings, the bus, the data folder, services and API routes."""

    settings: Settings
    mode: Mode
    bus: Bus
    data_dir: Path
    #: Shared objects by name (``sample_store``, ``event_store``, ...), set by the components that own them.
    services: dict[str, Any] = field(default_factory=dict)
    #: FastAPI routers components add before the API starts.
    routers: list[Any] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    components: list[Component] = field(default_factory=list)


Builder = Callable[[Runtime], Iterable[Component]]


class StartupError(Exception):
    """A critical component could not start; the daemon stopped what it had started."""


#: Component builders per half, as "module:function". Each pipeline stage adds
#: its own line; a builder returns the components its config enables.
AGENT_BUILDERS = [
    "telemetry.collect:agent_components",
    "telemetry.collect.zabbix.builders:agent_zabbix_components",
]
SERVER_BUILDERS = [
    "telemetry.events:event_components",
    "telemetry.api:api_components",
    "telemetry.collect.ceilometer:ceilometer_components",
    "telemetry.collect.zabbix.builders:server_zabbix_components",
    "telemetry.meter.pipeline:pipeline_components",
    "telemetry.meter.stage:meter_components",
    "telemetry.parse.stage:parse_components",
    "telemetry.actions:action_components",
    "telemetry.rules:rules_components",
]


def _load(ref: str) -> Builder:
    module, _, func = ref.partition(":")
    return getattr(importlib.import_module(module), func)


def builders_for(mode: Mode) -> list[Builder]:
    if mode == "agent":
        # The agent serves /metrics and /healthz too, so it gets the API component.
        refs = AGENT_BUILDERS + ["telemetry.api:api_components"]
    elif mode == "server":
        refs = SERVER_BUILDERS
    else:
        refs = AGENT_BUILDERS + SERVER_BUILDERS
    return [_load(r) for r in refs]


class Daemon:
    def __init__(self, settings: Settings, mode: Mode = "run") -> None:
        self.settings = settings
        self.mode = mode
        self.runtime: Runtime | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> Runtime:
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        bus = open_bus(self.settings.bus)
        await bus.start()
        rt = Runtime(settings=self.settings, mode=self.mode, bus=bus, data_dir=data_dir)
        self.runtime = rt
        comps: list[Component] = []
        for build in builders_for(self.mode):
            comps.extend(build(rt))
        comps.sort(key=lambda c: c.order)
        rt.components = comps
        for c in comps:
            try:
                await c.start()
                c.mark("running")
            except Exception as exc:  # one broken component must not stop the others
                c.error = f"{type(exc).__name__}: {exc}"
                c.mark("failed")
                log.error("%s failed to start: %s", c.name, c.error)
                if c.critical:
                    await self.stop()
                    raise StartupError(f"{c.name} could not start: {exc}") from exc
        return rt

    async def stop(self) -> None:
        rt = self.runtime
        if rt is None:
            return
        notify("STOPPING=1")
        deadline = time.monotonic() + STOP_TIMEOUT
        for c in reversed(rt.components):
            if c.state not in ("running", "failed"):
                continue
            remaining = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.wait_for(c.stop(), timeout=remaining)
            except asyncio.TimeoutError:
                log.warning("%s did not stop in time", c.name)
            except Exception:
                log.exception("%s failed while stopping", c.name)
            c.mark("stopped")
        await rt.bus.close()

    def request_stop(self) -> None:
        self._stopping.set()

    async def serve_forever(self, on_started: Callable[[Runtime], None] | None = None) -> None:
        """Start, report readiness, wait for SIGTERM/SIGINT, stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        rt = await self.start()
        if on_started:
            on_started(rt)
        ping = watchdog_interval()
        ready = False
        try:
            while not self._stopping.is_set():
                # READY and watchdog pings only while every component says it is not stuck,
                # so systemd restarts a daemon that is running but no longer doing its job.
                if all(c.alive() for c in rt.components):
                    notify("WATCHDOG=1" if ready else "READY=1")
                    ready = True
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=(ping or 3600) if ready else 0.5)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.stop()
