"""A bounded ZBXD server: the shape both the trapper and the passive-check listener share.

Zabbix answers one request per connection and closes it; so do we. Every
connection is bounded three ways: how many may be open at once (the next is
closed at once and counted), how long a request may take to arrive (a peer
that sends half a header and waits is dropped after ``idle_timeout``), and how
big a frame may claim to be (checked on the header, before reading). A refused
request closes only its own connection, with a logged reason and a counted
metric; the listener goes on serving the others.

The listener accepts its own connections (rather than through
``asyncio.start_server``) so it can peek at the first byte, as Zabbix does, and
decide between a plain and a TLS connection before anything is read: each is
then taken or refused by ``accept`` (Zabbix's TLSAccept).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any

from telemetry.collect.zabbix import metrics as m
from telemetry.collect.zabbix.protocol import FrameError, read_request
from telemetry.collect.zabbix.tls import TLS_HANDSHAKE, TlsEnd
from telemetry.component import Component
from telemetry.config.base import split_hostport

log = logging.getLogger(__name__)

__all__ = ["ZabbixListener"]

#: At most this many refusal warnings per listener and minute; the rest are only counted.
WARNINGS_PER_MINUTE = 10


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class ZabbixListener(Component):
    """Subclasses set ``name`` and ``allow_plain`` and implement ``respond``."""

    allow_plain = False

    def __init__(self, listen: str, *, max_connections: int, idle_timeout: float, max_frame_bytes: int,
                 allowed_peers: list[str], accept: Sequence[str] = ("unencrypted",), tls: TlsEnd | None = None) -> None:
        super().__init__()
        if "cert" in accept and tls is None:
            raise ValueError("accepting cert connections needs the listener's TLS context")
        self.listen = listen
        self.accept = list(accept)
        self.tls = tls
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_frame_bytes = max_frame_bytes
        self.allowed = [ipaddress.ip_network(p, strict=False) for p in allowed_peers]
        self.sockets: list[socket.socket] = []
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
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, addr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                sock.listen(128)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        self.address = f"{host}:{self.sockets[0].getsockname()[1]}"
        for i, sock in enumerate(self.sockets):
            self.spawn(functools.partial(self._accept_loop, sock), f"accept-{i}")
        log.info("%s listening on %s (%s)", self.name, self.address, ", ".join(self.accept))

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    async def stop(self) -> None:
        await self.cancel_tasks()
        self._close_sockets()
        for t in list(self._handlers):
            t.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=1.0)

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that peer is gone (or a firewall refused it); the next one may come
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise  # the socket itself is broken: the supervisor counts it and restarts the loop
                # Out of descriptors: wait rather than spin, as asyncio's own server does.
                log.error("%s: cannot accept connections: %s", self.name, exc)
                await asyncio.sleep(1.0)
                continue
            conn.setblocking(False)
            task = asyncio.create_task(self._client(conn, str(addr[0])), name=f"{self.name}-client")
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

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

    async def _first_byte(self, conn: socket.socket) -> bytes:
        """The connection's first byte, left in the socket for whoever reads next; empty when the peer closed."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                return conn.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(conn.fileno(), _wake, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(conn.fileno())

    async def _streams(self, conn: socket.socket, peer: str
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Reader and writer over the plain or TLS connection ``accept`` permits; None (refused, counted) else."""
        first = await self._first_byte(conn)
        if not first:
            return None
        encrypted = first[0] == TLS_HANDSHAKE
        kind = "cert" if encrypted else "unencrypted"
        if kind not in self.accept:
            self.refuse(kind if kind == "unencrypted" else "tls_not_accepted",
                        f"connection of type {kind!r} is not allowed (accept: {', '.join(self.accept)})", peer)
            return None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 << 10, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        ssl_context = self.tls.context if encrypted and self.tls is not None else None
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=ssl_context,
                ssl_handshake_timeout=self.idle_timeout if ssl_context else None)
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError: no certificate, unknown CA, not TLS after all
            if ssl_context is None:
                self.refuse("connection", str(exc) or type(exc).__name__, peer)
            else:
                self.refuse("tls_handshake", f"TLS handshake failed: {exc}", peer)
            return None
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        if encrypted and self.tls is not None:
            why = self.tls.refusal(writer.get_extra_info("peercert"))
            if why is not None:
                self.refuse("tls_peer", why, peer)
                transport.abort()  # closes the socket now: nothing more is said to a peer refused
                return None
        return reader, writer

    async def _client(self, conn: socket.socket, peer: str) -> None:
        if self.open >= self.max_connections:
            m.CONNECTIONS.labels(listener=self.name, result="over_cap").inc()
            conn.close()
            return
        if not self._permitted(peer):
            m.CONNECTIONS.labels(listener=self.name, result="not_allowed").inc()
            self.refuse("not_allowed", "peer is not in allowed_peers", peer)
            conn.close()
            return
        self.open += 1
        m.CONNECTIONS.labels(listener=self.name, result="accepted").inc()
        m.OPEN_CONNECTIONS.labels(listener=self.name).inc()
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                async with asyncio.timeout(self.idle_timeout):  # no task of its own, unlike wait_for
                    streams = await self._streams(conn, peer)
            except TimeoutError:
                self.refuse("idle_timeout", f"no request within {self.idle_timeout:g}s", peer)
                return
            except OSError:  # reset before its first byte
                return
            if streams is None:
                return
            reader, writer = streams
            await self._serve(reader, writer, peer)
        finally:
            self.open -= 1
            m.OPEN_CONNECTIONS.labels(listener=self.name).dec()
            if writer is None:
                conn.close()
            else:
                writer.close()
                try:
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
                except (TimeoutError, OSError):
                    pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        """One request and its answer."""
        try:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    payload = await read_request(reader, self.max_frame_bytes, self.allow_plain)
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

    def details(self) -> dict[str, Any]:
        return {"listen": self.address or self.listen, "accept": self.accept, "open_connections": self.open,
                "requests": self.requests, "rejected": self.rejected}
