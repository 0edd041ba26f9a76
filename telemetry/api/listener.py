"""The API's connections bounded the way its other listeners are: a cap, and a deadline for the request head.

uvicorn closes idle keep-alive connections, but a connection that never
completes its first request line and headers stays open for ever: enough of
them (slowloris, or a port scan left hanging) take every descriptor and the
API stops accepting. This protocol closes a connection beyond
``api.max_connections`` at once, and one whose request head has not arrived
within ``api.header_timeout``, counting both. A connection it closes after
an early answer (a 401 or 413 while the body still arrives) lingers, so the
client reads the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol

from telemetry.api.auth import API_REFUSED


#: How long a connection the server closed early keeps being read (and discarded) before it is closed for good.
LINGER_SECONDS = 2.0


class _LingeringTransport:
    """A transport whose ``close`` half-closes, the way nginx's lingering close does.

    A 401 or 413 is answered while the client is still sending its body.
    Closing the socket with unread data makes the kernel send a reset,
    which can destroy the answer before the client reads it: the client
    then reports a broken connection instead of the 401. Here the answer is
    flushed and the write side shut, the rest of the body is read and
    dropped (never buffered), and the socket is closed when the client
    closes or after LINGER_SECONDS.
    """

    def __init__(self, transport: asyncio.Transport, protocol: Any) -> None:
        self._transport = transport
        self._protocol = protocol
        self._lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._lingering or self._transport.is_closing()

    def close(self) -> None:
        if self._lingering or self._transport.is_closing():
            return
        if not self._transport.can_write_eof():  # TLS: no half-close, close at once
            self._transport.close()
            return
        self._lingering = True
        self._protocol.discarding = True
        try:
            self._transport.write_eof()
            self._transport.resume_reading()
        except (OSError, RuntimeError):
            self._transport.close()
            return
        self._protocol.loop.call_later(LINGER_SECONDS, self._transport.close)

    def abort(self) -> None:
        self._transport.abort()


def bounded_protocol(max_connections: int, header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the two bounds; passed to uvicorn as its ``http`` class."""

    class BoundedH11(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        discarding = False

        def connection_made(self, transport: Any) -> None:
            self.raw = transport
            super().connection_made(cast(asyncio.Transport, _LingeringTransport(transport, self)))
            if len(self.connections) > max_connections:
                API_REFUSED.labels("over_cap").inc()
                transport.close()
                return
            self._head_timer = self.loop.call_later(header_timeout, self._head_overdue)

        def _head_overdue(self) -> None:
            if self.cycle is None and not self.transport.is_closing():  # no request has begun on this connection
                API_REFUSED.labels("header_timeout").inc()
                self.raw.close()

        def data_received(self, data: bytes) -> None:
            if self.discarding:  # the answer went out: the rest of the body is dropped unread
                return
            super().data_received(data)
            if self._head_timer is not None and self.cycle is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def eof_received(self) -> None:
            if self.discarding:  # the client has sent all it will: close now, not after the linger
                self.raw.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return BoundedH11
