"""The API's connections bounded the way its other listeners are: a cap, and a deadline for the request head.

uvicorn closes idle keep-alive connections, but a connection that never
completes its first request line and headers stays open for ever: enough of
them (slowloris, or a port scan left hanging) take every descriptor and the
API stops accepting. This protocol closes a connection beyond
``api.max_connections`` at once, and one whose request head has not arrived
within ``api.header_timeout``, counting both.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from telemetry.api.auth import API_REFUSED


def bounded_protocol(max_connections: int, header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the two bounds; passed to uvicorn as its ``http`` class."""

    class BoundedH11(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                API_REFUSED.labels("over_cap").inc()
                transport.close()
                return
            self._head_timer = self.loop.call_later(header_timeout, self._head_overdue)

        def _head_overdue(self) -> None:
            if self.cycle is None and not self.transport.is_closing():  # no request has begun on this connection
                API_REFUSED.labels("header_timeout").inc()
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_timer is not None and self.cycle is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return BoundedH11
