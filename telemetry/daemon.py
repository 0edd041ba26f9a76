"""The daemon: builds the components for a mode, starts them in order, stops them cleanly.

Modes: ``run`` (all-in-one: agent and server over the in-memory bus),
``agent`` (sources only, shipping to the bus) and ``server`` (stages, stores,
rules and the API, reading from the bus). What runs, and in which order, is
``telemetry.wiring``'s list; the daemon only starts, supervises and reports.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from telemetry import wiring
from telemetry.bus import open_bus
from telemetry.component import StartupError
from telemetry.config import Settings
from telemetry.runtime import Mode, Runtime
from telemetry.systemd import notify, watchdog_interval

__all__ = ["Daemon", "Mode", "Runtime", "StartupError"]

log = logging.getLogger(__name__)

STOP_TIMEOUT = 4.0  # the whole stop must fit in 5 s (systemd and the contract)


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
        try:
            rt.components = wiring.build(rt)
        except Exception:
            await bus.close()
            raise
        for c in rt.components:
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
            except TimeoutError:
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
                except TimeoutError:
                    pass
        finally:
            await self.stop()
