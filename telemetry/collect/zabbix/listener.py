"""A bounded ZBXD server: the shape both the trapper and the passive-check listener share.

Zabbix answers one request per connection and closes it; so do we. Every
connection is bounded three ways: how many may be open at once (the next is
closed at once and counted), how long a request may take to arrive (a peer
that sends half a header and waits is dropped after ``idle_timeout``), and how
big a frame may claim to be (checked on the header, before reading). A refused
request closes only its own connection, with a logged reason and a counted
metric; the listener goes on serving the others.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any

from telemetry.collect.zabbix import metrics as m
from telemetry.collect.zabbix.protocol import FrameError, read_request
from telemetry.component import Component
from telemetry.config.base import split_hostport

log = logging.getLogger(__name__)

__all__ = ["ZabbixListener"]

#: At most this many refusal warnings per listener and minute; the rest are only counted.
WARNINGS_PER_MINUTE = 10


class ZabbixListener(Component):
    """Subclasses set ``name`` and ``allow_plain`` and implement ``respond``."""

    allow_plain = False

    def __init__(self, listen: str, *, max_connections: int, idle_timeout: float, max_frame_bytes: int,
                 allowed_peers: list[str]) -> None:
        super().__init__()
        self.listen = listen
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_frame_bytes = max_frame_bytes
        self.allowed = [ipaddress.ip_network(p, strict=False) for p in allowed_peers]
        self.server: asyncio.Server | None = None
        self.address = ""
        self.open = 0
        self.requests = 0
        self.rejected = 0
        self._warned: list[float] = []
        self._handlers: set[asyncio.Task[Any]] = set()

    async def respond(self, payload: bytes, peer: str) -> bytes:
        """The complete reply (a ZBXD frame) to one request."""
        raise NotImplementedError

    async def start(self) -> None:
        host, port = split_hostport(self.listen)
        self.server = await asyncio.start_server(self._client, host, port, limit=64 << 10)
        sock = self.server.sockets[0].getsockname()
        self.address = f"{host}:{sock[1]}"
        log.info("%s listening on %s", self.name, self.address)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for t in list(self._handlers):
                t.cancel()
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=1.0)
            await self.server.wait_closed()
            self.server = None
        await self.cancel_tasks()

    def _permitted(self, peer: str) -> bool:
        if not self.allowed:
            return True
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allowed)

    def refuse(self, reason: str, message: str, peer: str) -> None:
        """Count and (rate-limited) log a refused request."""
        self.rejected += 1
        m.FRAMES_REJECTED.labels(listener=self.name, reason=reason).inc()
        now = time.monotonic()
        self._warned = [t for t in self._warned if now - t < 60]
        if len(self._warned) < WARNINGS_PER_MINUTE:
            self._warned.append(now)
            log.warning("%s: refused a request from %s (%s): %s", self.name, peer, reason, message)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else "?"
        if self.open >= self.max_connections:
            m.CONNECTIONS.labels(listener=self.name, result="over_cap").inc()
            writer.close()
            return
        if not self._permitted(peer):
            m.CONNECTIONS.labels(listener=self.name, result="not_allowed").inc()
            self.refuse("not_allowed", "peer is not in allowed_peers", peer)
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self.open += 1
        m.CONNECTIONS.labels(listener=self.name, result="accepted").inc()
        m.OPEN_CONNECTIONS.labels(listener=self.name).inc()
        try:
            try:
                payload = await asyncio.wait_for(
                    read_request(reader, self.max_frame_bytes, self.allow_plain), self.idle_timeout)
            except FrameError as exc:
                self.refuse(exc.reason, str(exc), peer)
                return
            except TimeoutError:
                self.refuse("idle_timeout", f"no complete request within {self.idle_timeout:g}s", peer)
                return
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    self.refuse("truncated", f"connection closed after {len(exc.partial)} bytes of a frame", peer)
                return
            except (ConnectionError, asyncio.LimitOverrunError) as exc:
                self.refuse("connection", str(exc) or type(exc).__name__, peer)
                return
            self.requests += 1
            try:
                reply = await self.respond(payload, peer)
            except FrameError as exc:  # valid frame, unusable content (broken JSON, unknown request)
                self.refuse(exc.reason, str(exc), peer)
                return
            writer.write(reply)
            await asyncio.wait_for(writer.drain(), self.idle_timeout)
        except (TimeoutError, ConnectionError):
            pass  # the peer left before reading its answer
        finally:
            self.open -= 1
            m.OPEN_CONNECTIONS.labels(listener=self.name).dec()
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (TimeoutError, ConnectionError):
                pass

    def details(self) -> dict[str, Any]:
        return {"listen": self.address or self.listen, "open_connections": self.open,
                "requests": self.requests, "rejected": self.rejected}
