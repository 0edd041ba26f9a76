"""The unit the daemon runs: a source, a stage, a store or the API.

Components follow Vector's model: each is small, owns its tasks, and reports
its own health. A crashing task is restarted with backoff and counted instead
of taking the daemon down, because one bad input must never stop the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from telemetry.metrics import COMPONENT_RESTARTS, COMPONENT_UP

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A critical component could not start; the daemon stopped what it had started."""


class Component:
    """Base class: override ``start``/``stop``; use ``spawn`` for loops."""

    #: Unique name shown on /healthz and in metrics labels. (Start order is telemetry.wiring's list.)
    name: str = "component"
    #: A critical component that fails to start stops the daemon (a taken API
    #: port, an unreachable store); others are reported on /healthz and retried.
    critical: bool = False

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self.state = "created"
        self.error: str | None = None
        self.restarts = 0

    async def start(self) -> None:
        """Bring the component up; long work goes into ``spawn``ed tasks."""

    async def stop(self) -> None:
        """Flush and release; the default cancels spawned tasks."""
        await self.cancel_tasks()

    def alive(self) -> bool:
        """False when the component is up but stuck; the daemon then withholds systemd's watchdog ping."""
        return True

    def details(self) -> dict[str, Any]:
        """Extra facts for /healthz and the start banner (listen address, files, ...)."""
        return {}

    def problem(self) -> str | None:
        """Why the component, though running, is not doing its job (writes failing, a full disk,
        a listener refusing work); /healthz then says ``degraded``, naming it."""
        return None

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state}
        problem = self.problem() if self.state == "running" else None
        if problem:
            out["problem"] = problem
        if self.error:
            out["error"] = self.error
        if self.restarts:
            out["restarts"] = self.restarts
        out.update(self.details())
        return out

    def spawn(self, loop: Callable[[], Awaitable[None]], name: str | None = None, max_backoff: float = 30.0) -> None:
        """Run ``loop`` until stopped, restarting it with backoff if it raises."""

        async def supervised() -> None:
            delay = 0.5
            while True:
                try:
                    await loop()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a crash is contained and counted, never fatal
                    self.restarts += 1
                    self.error = f"{type(exc).__name__}: {exc}"
                    COMPONENT_RESTARTS.labels(component=self.name).inc()
                    log.exception("%s: task %s crashed; restarting in %.1fs", self.name, name or "", delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, max_backoff)

        self._tasks.append(asyncio.create_task(supervised(), name=f"{self.name}:{name or 'loop'}"))

    async def cancel_tasks(self, timeout: float = 3.0) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        self._tasks.clear()

    def mark(self, state: str) -> None:
        self.state = state
        COMPONENT_UP.labels(component=self.name).set(1 if state == "running" else 0)
