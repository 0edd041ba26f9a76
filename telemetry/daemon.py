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
from telemetry.bus import Bus, BusError, open_bus
from telemetry.component import StartupError
from telemetry.config import Settings
from telemetry.runtime import Mode, Runtime
from telemetry.systemd import notify, watchdog_interval

__all__ = ["Daemon", "Mode", "Runtime", "StartupError", "StopRequested"]

log = logging.getLogger(__name__)

STOP_TIMEOUT = 4.0  # the whole stop must fit in 5 s (systemd and the contract)
#: Longest wait between two attempts to reach the bus at start.
BUS_RETRY_MAX = 30.0


def raise_fd_limit() -> int:
    """Lift the soft file-descriptor limit to the hard one, as nginx and systemd's own services do.

    The soft default (1,024) is what an idle-connection flood exhausted: the
    API could no longer accept. Listeners cap their own connections; this
    leaves the rest of the process room. The units set LimitNOFILE; outside
    systemd the hard limit is what the administrator allows.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


class StopRequested(Exception):
    """SIGTERM or Ctrl-C arrived before the daemon had started: nothing to stop, exit quietly."""


class Daemon:
    def __init__(self, settings: Settings, mode: Mode = "run") -> None:
        self.settings = settings
        self.mode = mode
        self.runtime: Runtime | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> Runtime:
        raise_fd_limit()
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        bus = open_bus(self.settings.bus)
        await self._reach_bus(bus)
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

    async def _reach_bus(self, bus: Bus) -> None:
        """Connect to the bus; a bus that is down is not a reason to crash.

        The agent starts anyway: its shipper finds the bus down, spools to
        disk and ships when the bus returns. A server has nothing to do
        without the bus, so it retries with one line per attempt until the
        bus answers or SIGTERM arrives, which is honoured at once.
        """
        attempt = 0
        while True:
            attempt += 1
            started = asyncio.ensure_future(bus.start())
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({started, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not started.done():  # SIGTERM during an attempt: do not wait for the attempt
                started.cancel()
                raise StopRequested()
            exc = started.exception()
            if exc is None:
                if attempt > 1:
                    log.info("bus %s reached (attempt %d)", bus.describe(), attempt)
                return
            if not isinstance(exc, (BusError, OSError)):
                raise exc
            reason = " ".join(str(exc).split())  # one line, whatever the client library wrote
            if self.mode == "agent":
                log.warning("bus %s is down (%s): the agent starts anyway, spools to %s and ships when it returns",
                            bus.describe(), reason, self.settings.data_dir / "spool")
                return
            delay = min(2.0 ** (attempt - 1), BUS_RETRY_MAX)
            log.warning("bus %s is down (%s); attempt %d, retrying in %gs (SIGTERM stops)",
                        bus.describe(), reason, attempt, delay)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            except TimeoutError:
                continue
            raise StopRequested()

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
        try:
            rt = await self.start()
        except StopRequested:
            log.info("stopped before the start completed")
            return
        if on_started:
            on_started(rt)
        ping = watchdog_interval()
        # READY as soon as every component started: a downstream that is already down (a full
        # spool) must not hold the start until systemd's start timeout kills and restarts us.
        notify("READY=1")
        try:
            while not self._stopping.is_set():
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=ping or 3600)
                except TimeoutError:
                    pass
                # Watchdog pings only while every component says it is not stuck, so systemd
                # restarts a daemon that is running but no longer doing its job.
                if ping and not self._stopping.is_set() and all(c.alive() for c in rt.components):
                    notify("WATCHDOG=1")
        finally:
            await self.stop()
